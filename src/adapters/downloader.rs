//! The torrent clients that seed beside Jellyfin (`[[downloader]]`): read each one's upload
//! limit, the mode in force and what it sends now, and set the limit that bites.
//!
//! What jellydemon may change in a client is a few named settings ([`Field`]s), kept in the
//! client's own units so that an original is put back exactly as it was:
//! * qBittorrent: `up_limit` and `alt_up_limit` (bytes/s, 0 = unlimited); the alternative one
//!   bites while `speedLimitsMode` is 1;
//! * Transmission: `speed-limit-up` (kB/s of `units.speed-bytes`, 1000 bytes),
//!   `speed-limit-up-enabled` (0 or 1) and `alt-speed-up` (kB/s); the alternative one bites
//!   while `alt-speed-enabled` is true.
//!
//! A limit is only ever written to the setting that bites now ([`Reading::writes_for`]); the
//! mode itself (the alternative-speed switch, often driven by the client's own scheduler) is
//! never touched. The ledger (`src/adapters/ledger.rs`) records each setting's original before the
//! first write.

pub mod qbittorrent;
pub mod split;
pub mod transmission;

use std::time::Duration;

use secrecy::SecretString;

use crate::config::{ConfigError, DownloaderKind, DownloaderSettings};

/// A setting jellydemon may change, by the client's own name for it.
pub type Field = &'static str;

/// Which of a client's limits bites now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The normal upload limit.
    Normal,
    /// The alternative ("turtle") limit.
    Alternative,
}

/// One read of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The kind, for [`Reading::writes_for`].
    pub kind: DownloaderKind,
    /// The settings jellydemon may change, as the client holds them now (its units).
    pub values: Vec<(Field, i64)>,
    /// Which limit bites.
    pub mode: Mode,
    /// The upload limit in force, bits/s; `None`: unlimited.
    pub limit_bps: Option<u64>,
    /// What it uploads now, bits/s.
    pub rate_bps: u64,
}

/// qBittorrent keeps its limits in whole KiB/s.
const QBIT_UNIT: i64 = 1024;
/// Transmission's `speed-bytes` (reported in `units`; 1000 in every version with `units`).
pub const TRANSMISSION_SPEED_BYTES: i64 = 1000;

impl Reading {
    /// The value of `field` now.
    pub fn value(&self, field: Field) -> Option<i64> {
        self.values
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| *v)
    }

    /// The writes that make the limit in force `limit_bps` (rounded down to the client's
    /// unit, at least one unit): only settings whose value changes, only those that bite now.
    pub fn writes_for(&self, limit_bps: u64) -> Vec<(Field, i64)> {
        let bytes = (limit_bps / 8).min(i32::MAX as u64) as i64;
        let wanted: Vec<(Field, i64)> = match (self.kind, self.mode) {
            (DownloaderKind::Qbittorrent, mode) => {
                let v = (bytes / QBIT_UNIT * QBIT_UNIT).max(QBIT_UNIT);
                let field = match mode {
                    Mode::Normal => qbittorrent::UP_LIMIT,
                    Mode::Alternative => qbittorrent::ALT_UP_LIMIT,
                };
                vec![(field, v)]
            }
            (DownloaderKind::Transmission, Mode::Normal) => vec![
                (
                    transmission::SPEED_LIMIT_UP,
                    (bytes / TRANSMISSION_SPEED_BYTES).max(1),
                ),
                (transmission::SPEED_LIMIT_UP_ENABLED, 1),
            ],
            (DownloaderKind::Transmission, Mode::Alternative) => vec![(
                transmission::ALT_SPEED_UP,
                (bytes / TRANSMISSION_SPEED_BYTES).max(1),
            )],
        };
        wanted
            .into_iter()
            .filter(|(f, v)| self.value(f) != Some(*v))
            .collect()
    }

    /// The limit (bits/s) that `limit_bps` becomes once rounded to the client's unit.
    pub fn rounded(&self, limit_bps: u64) -> u64 {
        let bytes = (limit_bps / 8) as i64;
        let unit = match self.kind {
            DownloaderKind::Qbittorrent => QBIT_UNIT,
            DownloaderKind::Transmission => TRANSMISSION_SPEED_BYTES,
        };
        ((bytes / unit).max(1) * unit * 8) as u64
    }
}

/// Why a client could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloaderError {
    /// No answer, or not the client's API.
    #[error("{0}")]
    Unreachable(String),
    /// The login was refused: never retried before the backoff ends (qBittorrent bans an
    /// address after a few failed logins).
    #[error("{0}")]
    LoginRefused(String),
    /// It answered, but not what its API says.
    #[error("{0}")]
    Protocol(String),
}

impl DownloaderError {
    /// A refused login (the password is wrong, or the address is banned).
    pub fn is_login(&self) -> bool {
        matches!(self, DownloaderError::LoginRefused(_))
    }
}

/// A torrent client.
#[derive(Debug)]
pub enum Downloader {
    /// qBittorrent.
    Qbittorrent(qbittorrent::Qbittorrent),
    /// Transmission.
    Transmission(transmission::Transmission),
}

/// What a client needs to be reached.
pub struct Login {
    /// The user, when it asks for a login.
    pub username: Option<String>,
    /// Its password.
    pub password: Option<SecretString>,
    /// Upper bound for one request.
    pub timeout: Duration,
}

impl Downloader {
    /// The client a `[[downloader]]` entry describes (its password read at load).
    pub fn new(d: &DownloaderSettings) -> Result<Downloader, ConfigError> {
        let login = Login {
            username: d.username.clone(),
            password: d.password()?.cloned(),
            timeout: d.timeout,
        };
        let http = reqwest::Client::builder()
            .timeout(d.timeout)
            .connect_timeout(d.timeout)
            // Never follow a redirect with the login.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| crate::config::invalid("downloader.url", e.to_string()))?;
        Ok(match d.kind {
            DownloaderKind::Qbittorrent => {
                Downloader::Qbittorrent(qbittorrent::Qbittorrent::new(http, &d.url, login))
            }
            DownloaderKind::Transmission => {
                Downloader::Transmission(transmission::Transmission::new(http, &d.url, login))
            }
        })
    }

    /// Which client.
    pub fn kind(&self) -> DownloaderKind {
        match self {
            Downloader::Qbittorrent(_) => DownloaderKind::Qbittorrent,
            Downloader::Transmission(_) => DownloaderKind::Transmission,
        }
    }

    /// Where it is (no credentials).
    pub fn url(&self) -> &str {
        match self {
            Downloader::Qbittorrent(c) => c.url(),
            Downloader::Transmission(c) => c.url(),
        }
    }

    /// Its limits, mode and upload rate now.
    pub async fn read(&mut self) -> Result<Reading, DownloaderError> {
        match self {
            Downloader::Qbittorrent(c) => c.read().await,
            Downloader::Transmission(c) => c.read().await,
        }
    }

    /// Set these settings (in the client's units), in one request.
    pub async fn write(&mut self, values: &[(Field, i64)]) -> Result<(), DownloaderError> {
        if values.is_empty() {
            return Ok(());
        }
        match self {
            Downloader::Qbittorrent(c) => c.write(values).await,
            Downloader::Transmission(c) => c.write(values).await,
        }
    }

    /// The client's version, for `check` ("v4.5.2", "3.00 (bb6b5a062e)").
    pub async fn version(&mut self) -> Result<String, DownloaderError> {
        match self {
            Downloader::Qbittorrent(c) => c.version().await,
            Downloader::Transmission(c) => c.version().await,
        }
    }
}

/// A setting's value for people: "12 Mbps", "unlimited", "on".
pub fn describe(field: Field, value: i64) -> String {
    let bps = |bytes: i64| crate::core::rate::fmt_mbps(bytes.max(0) as u64 * 8);
    match field {
        qbittorrent::UP_LIMIT | qbittorrent::ALT_UP_LIMIT if value <= 0 => "unlimited".into(),
        qbittorrent::UP_LIMIT | qbittorrent::ALT_UP_LIMIT => bps(value),
        transmission::SPEED_LIMIT_UP_ENABLED => if value != 0 { "on" } else { "off" }.into(),
        _ => bps(value * TRANSMISSION_SPEED_BYTES),
    }
}

/// The most of an answer read (qBittorrent's preferences are ~10 KB).
const MAX_ANSWER: usize = 1 << 20;

/// An answer's text, at most [`MAX_ANSWER`] bytes.
async fn capped(mut resp: reqwest::Response) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| cause(&e))? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("an answer over {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "an answer that is not UTF-8".to_string())
}

/// What went wrong with a request, in a few words.
fn cause(e: &reqwest::Error) -> String {
    crate::escape::request_error(e, "downloader.timeout")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(kind: DownloaderKind, mode: Mode, values: Vec<(Field, i64)>) -> Reading {
        Reading {
            kind,
            values,
            mode,
            limit_bps: None,
            rate_bps: 0,
        }
    }

    #[test]
    fn a_limit_goes_to_the_setting_that_bites_in_the_clients_unit() {
        let q = reading(
            DownloaderKind::Qbittorrent,
            Mode::Normal,
            vec![
                (qbittorrent::UP_LIMIT, 0),
                (qbittorrent::ALT_UP_LIMIT, 10240),
            ],
        );
        // 10 Mbps = 1,250,000 bytes/s, down to whole KiB: 1220 KiB.
        assert_eq!(
            q.writes_for(10_000_000),
            vec![(qbittorrent::UP_LIMIT, 1_249_280)]
        );
        assert_eq!(q.rounded(10_000_000), 1_249_280 * 8);
        let alt = Reading {
            mode: Mode::Alternative,
            ..q.clone()
        };
        assert_eq!(
            alt.writes_for(10_000_000),
            vec![(qbittorrent::ALT_UP_LIMIT, 1_249_280)]
        );
        // Never 0 (unlimited) for a tiny limit.
        assert_eq!(q.writes_for(1), vec![(qbittorrent::UP_LIMIT, 1024)]);

        let t = reading(
            DownloaderKind::Transmission,
            Mode::Normal,
            vec![
                (transmission::SPEED_LIMIT_UP, 100),
                (transmission::SPEED_LIMIT_UP_ENABLED, 0),
                (transmission::ALT_SPEED_UP, 50),
            ],
        );
        assert_eq!(
            t.writes_for(10_000_000),
            vec![
                (transmission::SPEED_LIMIT_UP, 1250),
                (transmission::SPEED_LIMIT_UP_ENABLED, 1)
            ]
        );
        // Only what changes.
        let on = reading(
            DownloaderKind::Transmission,
            Mode::Normal,
            vec![
                (transmission::SPEED_LIMIT_UP, 100),
                (transmission::SPEED_LIMIT_UP_ENABLED, 1),
            ],
        );
        assert_eq!(
            on.writes_for(800_000),
            Vec::<(Field, i64)>::new(),
            "100 kB/s is 0.8 Mbps already"
        );
        let t_alt = Reading {
            mode: Mode::Alternative,
            ..t
        };
        assert_eq!(
            t_alt.writes_for(10_000_000),
            vec![(transmission::ALT_SPEED_UP, 1250)]
        );
    }

    #[test]
    fn settings_are_described_in_mbps() {
        assert_eq!(describe(qbittorrent::UP_LIMIT, 0), "unlimited");
        assert_eq!(describe(qbittorrent::UP_LIMIT, 1_250_000), "10 Mbps");
        assert_eq!(describe(transmission::SPEED_LIMIT_UP, 1250), "10 Mbps");
        assert_eq!(describe(transmission::SPEED_LIMIT_UP_ENABLED, 0), "off");
    }
}
