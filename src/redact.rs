//! What a secret is, and how it is taken out of anything shown: error messages, logs, the
//! page, `jellydemon report`. Two views of the same rule: a configuration key by its path
//! (`jellyfin.api_key`, `notify.0.url`: [`is_secret_path`], for the loader's error messages)
//! and a key in any section of a text that is not read against the schema
//! ([`is_secret_key`], for `report`'s copy of `config.toml` and of the environment). URLs keep
//! their host but lose their user information ([`redact_userinfo`], [`without_credentials`]);
//! GUIDs in logs written without anonymization become aliases ([`redact_guids`]).

/// What replaces a secret.
pub const REMOVED: &str = "(removed)";

/// A key whose value is a secret: one of [`SECRET_KEYS`], or a notification target's URL,
/// topic, token, password, Apprise URLs or webhook headers (`notify.0.topic`).
pub fn is_secret_path(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
        || key.strip_prefix("notify.").is_some_and(|rest| {
            rest.split('.')
                .any(|seg| ["url", "topic", "token", "password", "urls", "headers"].contains(&seg))
        })
        || key
            .strip_prefix("downloader.")
            .is_some_and(|rest| rest.split('.').any(|seg| seg == "password"))
        || key
            .strip_prefix("server.")
            .is_some_and(|rest| rest.split('.').any(|seg| seg == "token"))
}

/// The keys whose values are secrets: no error message quotes them.
pub const SECRET_KEYS: [&str; 5] = [
    "jellyfin.api_key",
    "daemon.webhook_token",
    "daemon.status_token",
    "bandwidth.meter.community",
    "bandwidth.meter.password",
];

/// A key that holds a secret, whatever section it is in: `api_key`, `webhook_token`,
/// `password`, `community`, … but not the `…_file` keys that only name where one is.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    if k.ends_with("_file") {
        return false;
    }
    ["key", "token", "password", "secret", "community", "topic"]
        .iter()
        .any(|s| k.contains(s))
}

/// `scheme://user:password@host...` with the user information replaced by `***`, for messages.
pub fn redact_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// `url` with any user name and password taken out.
pub fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.as_str().trim_end_matches('/').to_string()
        }
        _ => url.to_string(),
    }
}

/// `config.toml`'s text with every secret's value replaced, and the user information of any
/// URL. Comments are not kept (they may quote a key). Text that is not TOML is not shown.
pub fn redact_config(text: &str) -> String {
    match text.parse::<toml::Table>() {
        Ok(mut table) => {
            redact_table(&mut table);
            toml::to_string(&table).unwrap_or_else(|e| format!("(cannot be shown: {e})\n"))
        }
        Err(e) => format!(
            "(not shown: not valid TOML, so its secrets cannot be told apart: {})\n",
            e.message()
        ),
    }
}

fn redact_table(table: &mut toml::Table) {
    // A notification target's URL (a Discord or webhook URL is a secret), Apprise URLs and
    // webhook headers.
    let notify = table
        .get("kind")
        .and_then(toml::Value::as_str)
        .is_some_and(|k| ["ntfy", "gotify", "discord", "apprise", "webhook"].contains(&k));
    for (k, v) in table.iter_mut() {
        if notify && ["url", "urls", "headers"].contains(&k.as_str()) {
            *v = toml::Value::String(REMOVED.into());
        } else {
            redact_value(k, v);
        }
    }
}

fn redact_value(key: &str, v: &mut toml::Value) {
    match v {
        toml::Value::String(s) if is_secret_key(key) => *s = REMOVED.into(),
        toml::Value::String(s) => *s = redact_userinfo(s),
        toml::Value::Table(t) => redact_table(t),
        toml::Value::Array(items) => items.iter_mut().for_each(|i| redact_value(key, i)),
        _ => {}
    }
}

/// The `JELLYDEMON_*` variables as `NAME=value` lines, secrets removed.
pub fn redact_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let mut lines: Vec<String> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with("JELLYDEMON_"))
        .map(|(k, v)| {
            let last = k.rsplit("__").next().unwrap_or(&k).to_string();
            if is_secret_key(&last) {
                format!("{k}={REMOVED}")
            } else {
                format!("{k}={}", redact_userinfo(&v))
            }
        })
        .collect();
    lines.sort();
    lines
}

/// Every GUID-shaped token (32 hex digits, or 8-4-4-4-12 with dashes) replaced by its alias
/// when it has one (in either spelling), else by `(id)`: user, session and item ids in logs
/// that were written without anonymization.
pub fn redact_guids(text: &str, alias_of: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let b = text.as_bytes();
    while i < b.len() {
        let glued = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-');
        if !glued && let Some(len) = guid_at(&b[i..]) {
            let token = &text[i..i + len];
            let plain: String = token.chars().filter(|c| *c != '-').collect();
            let plain = plain.to_ascii_lowercase();
            out.push_str(&alias_of(&plain).unwrap_or_else(|| "(id)".into()));
            i += len;
            continue;
        }
        let c = text[i..].chars().next().expect("char boundary");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// The length of a GUID at the start of `b`, not followed by a word character.
fn guid_at(b: &[u8]) -> Option<usize> {
    let hex = |s: &[u8]| s.iter().all(u8::is_ascii_hexdigit);
    let free = |len: usize| {
        b.get(len)
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'-'))
    };
    if b.len() >= 36
        && [8, 13, 18, 23].iter().all(|&d| b[d] == b'-')
        && [&b[0..8], &b[9..13], &b[14..18], &b[19..23], &b[24..36]]
            .iter()
            .all(|s| hex(s))
        && free(36)
    {
        return Some(36);
    }
    (b.len() >= 32 && hex(&b[..32]) && free(32)).then_some(32)
}

#[cfg(test)]
mod tests;
