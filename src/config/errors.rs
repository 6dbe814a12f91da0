//! What the figment layers' errors say to someone editing the file: the key, where its value
//! came from (the file, or which `JELLYDEMON_…` variable), what was expected in a config
//! editor's words, a "did you mean" for a misspelt key, and never a secret's value (neither
//! quoted from a wrong type nor from a line of a TOML syntax error).

use figment::Figment;

use super::{ConfigError, invalid};
use crate::redact::is_secret_path;

/// A secret is given inline or as a file, not both; when both are there, say where each one
/// came from (a file, or an environment variable such as the systemd unit's
/// `JELLYDEMON_JELLYFIN__API_KEY_FILE`).
pub(super) fn one_of_each_pair(figment: &Figment) -> Result<(), ConfigError> {
    const PAIRS: [(&str, &str); 3] = [
        ("jellyfin.api_key", "jellyfin.api_key_file"),
        ("daemon.webhook_token", "daemon.webhook_token_file"),
        ("daemon.status_token", "daemon.status_token_file"),
    ];
    for (inline, file) in PAIRS {
        if figment.contains(inline) && figment.contains(file) {
            let name = |key: &str| key.split_once('.').map_or(key, |(_, k)| k).to_string();
            return Err(invalid(
                inline,
                format!(
                    "set either {} ({}) or {} ({}), not both",
                    name(inline),
                    source_of(figment, inline),
                    name(file),
                    source_of(figment, file)
                ),
            ));
        }
    }
    Ok(())
}

/// Where `key`'s value came from: "in <file>" or "from the environment variable JELLYDEMON_…".
fn source_of(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(m) => match &m.source {
            Some(figment::Source::File(path)) => format!("in {}", path.display()),
            Some(_) => "in the configuration".to_string(),
            None if m.name.contains("environment") => format!(
                "from the environment variable JELLYDEMON_{}",
                key.replace('.', "__").to_uppercase()
            ),
            None => "in the configuration".to_string(),
        },
        None => "in the configuration".to_string(),
    }
}

/// Turn figment's error into one line that names the key (`bandwidth.algorithm`) and the
/// source (file or environment variable), never the value of a secret.
pub(super) fn describe_figment_error(err: figment::Error) -> ConfigError {
    let mut lines = Vec::new();
    for e in err {
        let key = e.path.join(".");
        // Where the bad value came from: the file, or the environment variable's name.
        let source = e
            .metadata
            .as_ref()
            .map(|m| match &m.source {
                Some(src) => format!(" (in {src})"),
                None if m.name.contains("environment") && !e.path.is_empty() => format!(
                    " (from environment variable JELLYDEMON_{})",
                    e.path.join("__").to_uppercase()
                ),
                None if m.name.contains("source string") => " (in the configuration)".into(),
                None => format!(" (from {})", m.name),
            })
            .unwrap_or_default();
        let what = match &e.kind {
            // figment's path already ends with the unknown field.
            figment::error::Kind::UnknownField(field, expected) => format!(
                "unknown key `{key}`{source}; {}expected one of: {}",
                did_you_mean(field, expected)
                    .map(|k| format!("did you mean `{k}`? "))
                    .unwrap_or_default(),
                expected.join(", ")
            ),
            figment::error::Kind::MissingField(field) => {
                let full = if key.is_empty() {
                    field.to_string()
                } else {
                    format!("{key}.{field}")
                };
                format!("missing key `{full}`{source}")
            }
            // A wrong type on a secret's key: the message would quote the secret.
            figment::error::Kind::InvalidType(_, expected) if is_secret_path(&key) => {
                format!(
                    "invalid value for `{key}`{source}: expected {} (the value is not shown: it \
                     is a secret)",
                    expected_in_words(expected)
                )
            }
            figment::error::Kind::InvalidType(actual, expected)
            | figment::error::Kind::InvalidValue(actual, expected) => format!(
                "invalid value for `{key}`{source}: expected {}, found {}{}",
                expected_in_words(expected),
                found_in_words(actual),
                hint(actual, expected)
            ),
            figment::error::Kind::UnknownVariant(found, expected) => format!(
                "invalid value for `{key}`{source}: \"{}\" is not one of {}",
                found.escape_debug(),
                expected
                    .iter()
                    .map(|v| format!("\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            kind if !key.is_empty() => format!("invalid value for `{key}`{source}: {kind}"),
            kind => format!(
                "config{source}: {}",
                without_source_lines(&kind.to_string())
            ),
        };
        lines.push(what);
    }
    ConfigError::Parse(lines.join("; "))
}

/// What serde expected, in the words of someone editing a TOML file ("f64" is "a number").
fn expected_in_words(expected: &str) -> String {
    match expected {
        "f64" | "f32" => "a number".into(),
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number >= 0".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a string" | "string" => "a text in quotes".into(),
        "a sequence" => "a list in brackets, [ ... ]".into(),
        "a duration" => "a duration in quotes, such as \"300ms\", \"10s\" or \"5m\"".into(),
        "socket address" => "an address and port in quotes, such as \"127.0.0.1:8098\"".into(),
        e if e.starts_with("struct ") || e.starts_with("a map") => "a table (section)".into(),
        e => e.to_string(),
    }
}

/// What was found instead, in the same words.
fn found_in_words(actual: &figment::error::Actual) -> String {
    use figment::error::Actual;
    match actual {
        Actual::Bool(b) => format!("{b}"),
        Actual::Unsigned(n) => format!("the number {n}"),
        Actual::Signed(n) => format!("the number {n}"),
        Actual::Float(n) => format!("the number {n}"),
        Actual::Char(c) => format!("the text \"{}\"", c.escape_debug()),
        Actual::Str(s) => format!("the text \"{}\"", s.escape_debug()),
        Actual::Seq => "a list".into(),
        Actual::Map => "a table".into(),
        other => other.to_string(),
    }
}

/// One more sentence for the two usual slips: a number in quotes, a duration without them.
fn hint(actual: &figment::error::Actual, expected: &str) -> &'static str {
    use figment::error::Actual;
    let numeric = expected_in_words(expected).contains("number");
    match actual {
        Actual::Str(s) if numeric && s.trim().parse::<f64>().is_ok() => {
            " (write the number without quotes)"
        }
        Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) if expected == "a duration" => {
            " (a duration needs its unit and quotes)"
        }
        _ => "",
    }
}

/// The expected key closest to a misspelt one, if it is close (at most two edits).
fn did_you_mean(unknown: &str, expected: &[&'static str]) -> Option<&'static str> {
    let unknown = unknown.to_ascii_lowercase();
    expected
        .iter()
        .map(|e| (edit_distance(&unknown, e), *e))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A TOML syntax error without the lines of the file it quotes (`3 | api_key = ...`): the line
/// may hold a secret. What stays: where ("at line 3, column 11") and what was wrong.
fn without_source_lines(message: &str) -> String {
    message
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            let t = t
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !t.starts_with('|')
        })
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
