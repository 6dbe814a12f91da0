//! `[[server]]`, parsed: the other media servers on the same upload.
//!
//! * `plex`: its remote streams are read (`src/adapters/budget/feed.rs`), and it is one claimant
//!   beside the users whose share becomes its `WanTotalMaxUploadRate` (`src/core/plan/servers.rs`,
//!   written by `src/daemon/servers.rs`); with `manage_wan_total = false` what it streams is
//!   only taken off the budget. The client is in `src/adapters/plex.rs`.
//! * `jellyfin` and `emby`: managed like the `[jellyfin]` server, each remote user one more
//!   claimant in the same water-filling, through `src/adapters/jellyfin/fleet.rs`.
//!
//! What Emby and Plex really do is in `docs/media-servers.md`.

use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use secrecy::SecretString;
use serde::Deserialize;

use super::{ConfigError, Secret, invalid, take};

/// Which media server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// Plex Media Server: one claimant, its WAN total set to its share.
    Plex,
    /// Another Jellyfin server: its users managed like the `[jellyfin]` server's.
    Jellyfin,
    /// Emby Server: its users managed like Jellyfin's (`docs/media-servers.md`).
    Emby,
}

impl ServerKind {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::Plex => "plex",
            ServerKind::Jellyfin => "jellyfin",
            ServerKind::Emby => "emby",
        }
    }
}

/// One `[[server]]`, parsed.
#[derive(Debug)]
pub struct ServerSettings {
    /// A name of its own, for logs, the page and `/api/state` (default: the kind, numbered
    /// when there are several: [`names`]).
    pub name: Option<String>,
    /// Where it answers (`http://127.0.0.1:32400`).
    pub url: String,
    /// The kind, with how jellydemon signs in and what it manages there.
    pub access: ServerAccess,
    /// How often its sessions are read (Jellyfin and Emby: how often a change in what plays
    /// there is looked for between the daemon's passes).
    pub interval: Duration,
    /// Upper bound for one request.
    pub timeout: Duration,
}

/// What kind of server, with what that kind needs.
#[derive(Debug)]
pub enum ServerAccess {
    /// Plex Media Server: one claimant.
    Plex {
        /// Its `X-Plex-Token`.
        token: Secret,
        /// Its total upload limit outside the house (`WanTotalMaxUploadRate`) is set to its
        /// share of the budget, its original kept in the state file and put back at the stop;
        /// `false` (`manage_wan_total = false`): what it streams is only taken off the budget.
        manage_wan_total: bool,
    },
    /// Another Jellyfin server, or an Emby server: its users managed like `[jellyfin]`'s.
    Users {
        /// `Jellyfin` or `Emby`.
        kind: ServerKind,
        /// An administrator's API key.
        api_key: Secret,
        /// A user whose name is a `[jellyfin]` server user's (in any case) is the same
        /// person, one claimant whose limit is written on both servers.
        match_users_by_name: bool,
    },
}

/// One `[[server]]` as the file gives it: the keys of every kind, parsed by
/// [`ServerFile::parse`] at load.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerFile {
    kind: ServerKind,
    #[serde(default)]
    name: Option<String>,
    url: String,
    #[serde(default)]
    token: Option<Secret>,
    #[serde(default)]
    token_file: Option<RelativePathBuf>,
    #[serde(default)]
    api_key: Option<Secret>,
    #[serde(default)]
    api_key_file: Option<RelativePathBuf>,
    #[serde(default = "default_interval", with = "humantime_serde")]
    interval: Duration,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default)]
    manage_wan_total: Option<bool>,
    #[serde(default)]
    match_users_by_name: bool,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl ServerSettings {
    /// A Plex entry for a server `jellydemon init` was told about, its token given as is.
    pub fn plex_for_init(url: &str, token: SecretString) -> ServerSettings {
        ServerSettings {
            name: None,
            url: url.to_string(),
            access: ServerAccess::Plex {
                token: Secret::from(token),
                manage_wan_total: true,
            },
            interval: default_interval(),
            timeout: default_timeout(),
        }
    }

    /// Which kind.
    pub fn kind(&self) -> ServerKind {
        match self.access {
            ServerAccess::Plex { .. } => ServerKind::Plex,
            ServerAccess::Users { kind, .. } => kind,
        }
    }

    /// Plex, its WAN total set to its share (`manage_wan_total`, on unless turned off).
    pub fn manages_wan_total(&self) -> bool {
        matches!(
            self.access,
            ServerAccess::Plex {
                manage_wan_total: true,
                ..
            }
        )
    }

    /// A Plex server (read for its streams, one claimant).
    pub fn is_plex(&self) -> bool {
        matches!(self.access, ServerAccess::Plex { .. })
    }

    /// A Jellyfin or Emby server whose users are managed.
    pub fn manages_users(&self) -> bool {
        matches!(self.access, ServerAccess::Users { .. })
    }

    /// A Jellyfin or Emby server whose users match `[jellyfin]`'s by name.
    pub fn match_users_by_name(&self) -> bool {
        matches!(
            self.access,
            ServerAccess::Users {
                match_users_by_name: true,
                ..
            }
        )
    }

    /// The API key of a Jellyfin or Emby server (from `api_key`, or its file read at load).
    pub fn api_key(&self) -> Result<&SecretString, ConfigError> {
        match &self.access {
            ServerAccess::Users { api_key, .. } => api_key.get(),
            ServerAccess::Plex { .. } => Err(invalid(
                "server.api_key",
                "Plex takes token_file (or token), not api_key",
            )),
        }
    }

    /// Plex's token (from `token`, or its file read at load).
    pub fn token(&self) -> Result<&SecretString, ConfigError> {
        match &self.access {
            ServerAccess::Plex { token, .. } => token.get(),
            ServerAccess::Users { kind, .. } => Err(invalid(
                "server.token",
                format!(
                    "{} takes api_key_file (or api_key), not token",
                    kind.as_str()
                ),
            )),
        }
    }
}

impl ServerFile {
    /// The entry: a URL without a login, what its kind needs and nothing of another kind's,
    /// its secret read (once, here). `i`: its place (from 1), for messages.
    fn parse(mut self, i: usize) -> Result<ServerSettings, ConfigError> {
        self.validate(i)?;
        let access = match self.kind {
            ServerKind::Plex => ServerAccess::Plex {
                token: take(&mut self.token, &self.token_file, "server.token_file")?
                    .ok_or_else(|| invalid("server.token", "set token or token_file"))?,
                manage_wan_total: self.manage_wan_total.unwrap_or(true),
            },
            kind @ (ServerKind::Jellyfin | ServerKind::Emby) => ServerAccess::Users {
                kind,
                api_key: take(&mut self.api_key, &self.api_key_file, "server.api_key_file")?
                    .ok_or_else(|| invalid("server.api_key", "set api_key or api_key_file"))?,
                match_users_by_name: self.match_users_by_name,
            },
        };
        Ok(ServerSettings {
            name: self.name,
            url: self.url,
            access,
            interval: self.interval,
            timeout: self.timeout,
        })
    }

    fn validate(&self, i: usize) -> Result<(), ConfigError> {
        let url = url::Url::parse(&self.url).map_err(|e| {
            invalid(
                "server.url",
                format!("server {i}: {e} (e.g. \"http://127.0.0.1:32400\")"),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(
                "server.url",
                format!("server {i}: must be an http:// or https:// URL"),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
            return Err(invalid(
                "server.url",
                format!("server {i}: put the token in token_file, not the URL"),
            ));
        }
        if self.kind == ServerKind::Plex {
            self.validate_plex(i)?;
        } else {
            self.validate_users_server(i)?;
        }
        if let Some(name) = &self.name
            && (name.trim().is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return Err(invalid(
                "server.name",
                format!("server {i}: {name:?} must be 1-64 letters, digits, '-', '_' or '.'"),
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid(
                "server.timeout",
                format!("server {i}: must be more than 0"),
            ));
        }
        if self.interval < Duration::from_secs(1) {
            return Err(invalid(
                "server.interval",
                format!("server {i}: must be at least 1s"),
            ));
        }
        Ok(())
    }

    fn validate_plex(&self, i: usize) -> Result<(), ConfigError> {
        if self.match_users_by_name {
            return Err(invalid(
                "server.match_users_by_name",
                format!(
                    "server {i}: a setting of Jellyfin and Emby servers; Plex is one claimant \
                     whatever its users"
                ),
            ));
        }
        for (set, key) in [
            (self.api_key.is_some(), "server.api_key"),
            (self.api_key_file.is_some(), "server.api_key_file"),
        ] {
            if set {
                let key = key.trim_start_matches("server.");
                return Err(invalid(
                    "server.token",
                    format!("server {i}: Plex takes token_file (or token), not {key}"),
                ));
            }
        }
        match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => Err(invalid(
                "server.token",
                format!("server {i}: set either token or token_file, not both"),
            )),
            (None, None) => Err(invalid(
                "server.token",
                format!("server {i}: set token_file (or token) to the server's X-Plex-Token"),
            )),
            _ => Ok(()),
        }
    }

    fn validate_users_server(&self, i: usize) -> Result<(), ConfigError> {
        let kind = self.kind.as_str();
        for (set, key) in [
            (self.token.is_some(), "token"),
            (self.token_file.is_some(), "token_file"),
        ] {
            if set {
                return Err(invalid(
                    "server.api_key",
                    format!("server {i}: {kind} takes api_key_file (or api_key), not {key}"),
                ));
            }
        }
        if self.manage_wan_total.is_some() {
            return Err(invalid(
                "server.manage_wan_total",
                format!(
                    "server {i}: a setting of Plex only; {kind}'s users are managed one by one"
                ),
            ));
        }
        match (&self.api_key, &self.api_key_file) {
            (Some(_), Some(_)) => Err(invalid(
                "server.api_key",
                format!("server {i}: set either api_key or api_key_file, not both"),
            )),
            (None, None) => Err(invalid(
                "server.api_key",
                format!(
                    "server {i}: set api_key_file (or api_key) to an administrator's API key \
                     of this {kind} server"
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Every entry parsed, and the names unique, also beside the torrent clients' (the state file
/// keeps both servers' and clients' originals by name).
pub(super) fn parse_all(
    files: Vec<ServerFile>,
    downloaders: &[String],
) -> Result<Vec<ServerSettings>, ConfigError> {
    let servers = files
        .into_iter()
        .enumerate()
        .map(|(i, f)| f.parse(i + 1))
        .collect::<Result<Vec<_>, _>>()?;
    let names = names(&servers);
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(invalid(
                "server.name",
                format!("two servers are named {n:?}: give each its own name"),
            ));
        }
        if downloaders.contains(n) {
            return Err(invalid(
                "server.name",
                format!(
                    "a server and a [[downloader]] are both named {n:?}: give each its own name"
                ),
            ));
        }
    }
    Ok(servers)
}

/// Each entry's name: its own, or its kind (numbered from the second of a kind on).
pub fn names(servers: &[ServerSettings]) -> Vec<String> {
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    servers
        .iter()
        .map(|s| match &s.name {
            Some(n) => n.clone(),
            None => {
                let kind = s.kind().as_str();
                let n = seen.entry(kind).or_insert(0);
                *n += 1;
                if *n == 1 {
                    kind.to_string()
                } else {
                    format!("{kind}-{n}")
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;

    const MINIMAL: &str = r#"
        [jellyfin]
        url = "http://127.0.0.1:8096"
        api_key = "0123456789abcdef0123456789abcdef"
        [bandwidth]
        total_upload_mbps = 100
    "#;

    fn load(server: &str) -> Result<Settings, String> {
        Settings::from_toml_str(&format!("{MINIMAL}\n[[server]]\n{server}\n"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_plex_entry_gets_its_defaults_and_hides_its_token() {
        let s =
            load("kind = \"plex\"\nurl = \"http://127.0.0.1:32400\"\ntoken = \"plex-secret-42\"")
                .unwrap();
        let p = &s.server[0];
        assert_eq!(p.interval, std::time::Duration::from_secs(10));
        assert_eq!(p.timeout, std::time::Duration::from_secs(5));
        assert_eq!(super::names(&s.server), vec!["plex".to_string()]);
        assert!(
            p.manages_wan_total(),
            "Plex's WAN total is managed unless said otherwise"
        );
        assert!(!format!("{s:?}").contains("plex-secret-42"));
    }

    #[test]
    fn bad_entries_get_clear_errors_that_quote_no_token() {
        for (entry, expected) in [
            (
                "kind = \"kodi\"\nurl = \"http://h\"\ntoken = \"t\"",
                "\"kodi\" is not one of \"plex\", \"jellyfin\", \"emby\"",
            ),
            (
                "kind = \"emby\"\nurl = \"http://h\"\ntoken = \"plex-secret-42\"",
                "emby takes api_key_file (or api_key), not token",
            ),
            (
                "kind = \"jellyfin\"\nurl = \"http://h\"",
                "set api_key_file (or api_key)",
            ),
            (
                "kind = \"jellyfin\"\nurl = \"http://h\"\napi_key = \"k\"\nmanage_wan_total = false",
                "a setting of Plex only",
            ),
            (
                "kind = \"plex\"\nurl = \"http://h\"\napi_key = \"plex-secret-42\"",
                "Plex takes token_file (or token), not api_key",
            ),
            (
                "kind = \"plex\"\nurl = \"http://h:32400\"",
                "set token_file (or token)",
            ),
            (
                "kind = \"plex\"\nurl = \"http://h\"\ntoken = \"t\"\nmatch_users_by_name = true",
                "a setting of Jellyfin and Emby servers",
            ),
            (
                "kind = \"plex\"\nurl = \"http://h\"\ntoken = \"t\"\ntoken_file = \"f\"",
                "not both",
            ),
            (
                "kind = \"plex\"\nurl = \"http://h/?X-Plex-Token=plex-secret-42\"\ntoken = \"t\"",
                "not the URL",
            ),
            (
                "kind = \"plex\"\nurl = \"ftp://h\"\ntoken = \"t\"",
                "http:// or https://",
            ),
            (
                "kind = \"plex\"\nurl = \"http://h\"\ntoken = \"t\"\ninterval = \"100ms\"",
                "at least 1s",
            ),
            ("kind = \"plex\"\nurl = \"http://h\"\ntoken = 42", "server"),
        ] {
            let err = load(entry).unwrap_err();
            assert!(err.contains(expected), "{entry}: {err}");
            assert!(!err.contains("plex-secret-42"), "{entry}: {err}");
        }
        let two = Settings::from_toml_str(&format!(
            "{MINIMAL}\n[[server]]\nkind = \"plex\"\nurl = \"http://a\"\ntoken = \"t\"\nname = \"x\"\n\
             [[server]]\nkind = \"plex\"\nurl = \"http://b\"\ntoken = \"t\"\nname = \"x\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(two.contains("two servers are named \"x\""), "{two}");
        // The state file keeps servers' and torrent clients' originals by name.
        let beside = Settings::from_toml_str(&format!(
            "{MINIMAL}\n[[server]]\nkind = \"plex\"\nurl = \"http://a\"\ntoken = \"t\"\n\
             [[downloader]]\nkind = \"qbittorrent\"\nname = \"plex\"\nurl = \"http://b\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            beside.contains("a server and a [[downloader]] are both named \"plex\""),
            "{beside}"
        );
    }
}
