//! `[[downloader]]` and `[bandwidth.downloaders]`, parsed: the torrent clients that seed beside
//! Jellyfin, and how they share the link with the remote streams (the rule is in
//! `src/core/plan.rs`, step 3; the clients in `src/adapters/downloader.rs`).

use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use secrecy::SecretString;
use serde::Deserialize;

use super::{ConfigError, Secret, invalid, mbps_to_bps, resolve};

/// Which torrent client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DownloaderKind {
    /// qBittorrent's WebUI API v2.
    Qbittorrent,
    /// Transmission's RPC (`/transmission/rpc`).
    Transmission,
}

impl DownloaderKind {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            DownloaderKind::Qbittorrent => "qbittorrent",
            DownloaderKind::Transmission => "transmission",
        }
    }
}

/// One `[[downloader]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloaderSettings {
    /// `qbittorrent` or `transmission`.
    pub kind: DownloaderKind,
    /// A name of its own, for logs, the page, metrics and the state file (default: the kind,
    /// numbered when there are several).
    #[serde(default)]
    pub name: Option<String>,
    /// The WebUI (`http://127.0.0.1:8080`) or the RPC endpoint's server
    /// (`http://127.0.0.1:9091`; `/transmission/rpc` is added unless the path ends in `/rpc`).
    pub url: String,
    /// The WebUI or RPC user. Absent: no login (qBittorrent's "bypass authentication for
    /// clients on localhost", Transmission without `rpc-authentication-required`).
    #[serde(default)]
    pub username: Option<String>,
    /// Its password (a secret): given inline, or read from `password_file` at load.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding the password.
    #[serde(default)]
    pub password_file: Option<RelativePathBuf>,
    /// Upper bound for one request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// How the torrent clients share the link with the remote streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DownloaderPriority {
    /// The streams first: the clients get what the remote streams leave, never below
    /// `min_mbps`.
    #[default]
    Streams,
    /// The clients together are one weighted claimant beside the remote users.
    Share,
}

impl DownloaderPriority {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            DownloaderPriority::Streams => "streams",
            DownloaderPriority::Share => "share",
        }
    }
}

/// `[bandwidth.downloaders]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadersPolicy {
    /// `streams` (default) or `share`.
    #[serde(default)]
    pub priority: DownloaderPriority,
    /// What the clients keep together whatever the streams need, in Mbps (peers and trackers
    /// keep going).
    #[serde(default = "default_min")]
    pub min_mbps: f64,
    /// Their weight as one claimant with `priority = "share"` (a user's is 1, or the one
    /// `[bandwidth.priority]` gives).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// How often each client is read (its limit, mode and upload rate).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// A client's limit changes only by at least this much, in Mbps, or when lowered below
    /// what it sends now.
    #[serde(default = "default_step")]
    pub step_mbps: f64,
    /// At most one write per client this often (a lowering waits for nothing but the
    /// burst of 4).
    #[serde(default = "default_write_every", with = "humantime_serde")]
    pub write_every: Duration,
}

impl Default for DownloadersPolicy {
    fn default() -> Self {
        DownloadersPolicy {
            priority: DownloaderPriority::default(),
            min_mbps: default_min(),
            weight: default_weight(),
            interval: default_interval(),
            step_mbps: default_step(),
            write_every: default_write_every(),
        }
    }
}

fn default_min() -> f64 {
    1.0
}
fn default_weight() -> f64 {
    1.0
}
fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_step() -> f64 {
    1.0
}
fn default_write_every() -> Duration {
    Duration::from_secs(2)
}

impl DownloadersPolicy {
    /// `min_mbps` in bits/s.
    pub fn min_bps(&self) -> u64 {
        mbps_to_bps(self.min_mbps)
    }
    /// `step_mbps` in bits/s.
    pub fn step_bps(&self) -> u64 {
        mbps_to_bps(self.step_mbps)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let finite = |key, v: f64, positive: bool| {
            if !v.is_finite() || v < 0.0 || (positive && v == 0.0) {
                Err(invalid(
                    key,
                    if positive {
                        "must be a positive number"
                    } else {
                        "must be a number >= 0"
                    },
                ))
            } else {
                Ok(())
            }
        };
        finite("bandwidth.downloaders.min_mbps", self.min_mbps, false)?;
        finite("bandwidth.downloaders.weight", self.weight, true)?;
        finite("bandwidth.downloaders.step_mbps", self.step_mbps, false)?;
        if self.interval < Duration::from_millis(500) {
            return Err(invalid(
                "bandwidth.downloaders.interval",
                "must be at least 500ms",
            ));
        }
        Ok(())
    }
}

impl DownloaderSettings {
    /// An entry for a client `jellydemon init` was told about, its password given as is.
    pub fn for_init(
        kind: DownloaderKind,
        url: &str,
        username: Option<String>,
        password: Option<SecretString>,
    ) -> DownloaderSettings {
        DownloaderSettings {
            kind,
            name: None,
            url: url.to_string(),
            username,
            password: password.map(Secret::from),
            password_file: None,
            timeout: default_timeout(),
        }
    }

    /// The password (from `password`, or its file read at load), if any.
    pub fn password(&self) -> Result<Option<&SecretString>, ConfigError> {
        self.password.as_ref().map(Secret::get).transpose()
    }

    pub(super) fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        resolve(
            &mut self.password,
            &self.password_file,
            "downloader.password_file",
        )
    }

    fn validate(&self, i: usize) -> Result<(), ConfigError> {
        let url = url::Url::parse(&self.url).map_err(|e| {
            invalid(
                "downloader.url",
                format!("downloader {i}: {e} (e.g. \"http://127.0.0.1:8080\")"),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(
                "downloader.url",
                format!("downloader {i}: must be an http:// or https:// URL"),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "downloader.url",
                format!("downloader {i}: put the login in username and password_file, not the URL"),
            ));
        }
        if self.password.is_some() && self.password_file.is_some() {
            return Err(invalid(
                "downloader.password",
                format!("downloader {i}: set either password or password_file, not both"),
            ));
        }
        if self.username.is_none() && (self.password.is_some() || self.password_file.is_some()) {
            return Err(invalid(
                "downloader.username",
                format!("downloader {i}: a password needs its username"),
            ));
        }
        if let Some(name) = &self.name
            && (name.trim().is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return Err(invalid(
                "downloader.name",
                format!("downloader {i}: {name:?} must be 1-64 letters, digits, '-', '_' or '.'"),
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid(
                "downloader.timeout",
                format!("downloader {i}: must be more than 0"),
            ));
        }
        Ok(())
    }
}

/// The names of the downloaders, in order: each one's `name`, else its kind, numbered from
/// the second of a kind on ("qbittorrent", "qbittorrent-2").
pub fn names(list: &[DownloaderSettings]) -> Vec<String> {
    let mut seen: std::collections::BTreeMap<&str, usize> = Default::default();
    list.iter()
        .map(|d| match &d.name {
            Some(n) => n.clone(),
            None => {
                let k = seen.entry(d.kind.as_str()).or_default();
                *k += 1;
                if *k == 1 {
                    d.kind.as_str().to_string()
                } else {
                    format!("{}-{k}", d.kind.as_str())
                }
            }
        })
        .collect()
}

/// Every entry is valid and the names are distinct.
pub(super) fn validate_all(list: &[DownloaderSettings]) -> Result<(), ConfigError> {
    for (i, d) in list.iter().enumerate() {
        d.validate(i)?;
    }
    let names = names(list);
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(invalid(
                "downloader.name",
                format!("two downloaders are named {n:?}: give each a name of its own"),
            ));
        }
    }
    Ok(())
}
