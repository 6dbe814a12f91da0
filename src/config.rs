//! Configuration: a TOML file, then `JELLYDEMON_SECTION__KEY` environment variables, layered
//! with figment into typed settings that are parsed once at load.
//!
//! Every struct denies unknown fields, so a typo is an error that names the key instead of a
//! setting that silently does nothing. The load then checks values (CIDRs, URL, limits), parses
//! the tables whose keys depend on their `kind` into enums (`[bandwidth.meter]` into
//! [`MeterSource`], `[[notify]]` into [`NotifyService`], `[[server]]` into [`ServerAccess`]),
//! parses the schedule and its time zone, and reads every `<key>_file` into a [`Secret`]; each
//! error names the key. A table whose keys depend on its kind is read flat and parsed by hand,
//! not as a `#[serde(tag = "kind")]` enum, so a key of another kind gets "is for kind = snmp"
//! (`tests/invalid-configs/`) rather than serde's "unknown field".
//! Nothing re-reads or re-checks the file after the load. A secret's `Debug` prints a
//! placeholder, so a `{:?}` of the settings never shows one.
//!
//! One module per section: `config/jellyfin.rs` (`[jellyfin]`, `[network]`),
//! `config/bandwidth.rs`, `config/meter.rs` (`[bandwidth.meter]`, schedules),
//! `config/downloader.rs`, `config/server.rs`, `config/transcoding.rs`, `config/daemon.rs`
//! (`[daemon]`, `[state]`), `config/notify.rs`, `config/history.rs`, `config/logging.rs`; the
//! `x` / `x_file` secrets in `config/secrets.rs`, figment's error text in `config/errors.rs`.
//! This file layers the sources and validates across sections.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;

mod bandwidth;
mod daemon;
mod downloader;
mod errors;
mod history;
mod jellyfin;
mod logging;
mod meter;
mod notify;
mod secrets;
mod server;
mod transcoding;

pub use crate::redact::SECRET_KEYS;
pub use crate::redact::redact_userinfo;
use bandwidth::SQM_UNREAD_MBPS;
pub use bandwidth::{
    Algorithm, BandwidthSettings, Budget, DemandSettings, PrioritySettings, Sqm, UserSettings,
    mbps_to_bps,
};
pub use daemon::{DaemonSettings, Mode, PushMode, StateSettings};
pub use downloader::{
    DownloaderKind, DownloaderPriority, DownloaderSettings, DownloadersPolicy,
    names as downloader_names,
};
use errors::{describe_figment_error, one_of_each_pair};
pub use history::HistorySettings;
pub use jellyfin::{InternalRanges, InternalRangesSetting, JellyfinSettings, NetworkSettings};
pub use logging::{LogFormat, LoggingSettings};
use meter::MeterFile;
pub use meter::{
    MeterKind, MeterSettings, MeterSource, ScheduleEntry, Window, parse_days, parse_time,
};
pub use notify::{AppriseTo, EventKind, NotifyKind, NotifyService, NotifyTarget, NtfyAuth};
pub use secrets::Secret;
use secrets::{MIN_TOKEN_LEN, resolve, resolve_token, take};
pub use server::{ServerAccess, ServerKind, ServerSettings, names as server_names};
pub use transcoding::{Capacity, CapacitySetting, TranscodingSettings};

/// Bits per second in one Mbps, the unit of every bandwidth key in the file.
pub const BPS_PER_MBPS: f64 = 1_000_000.0;

/// Jellyfin stores `RemoteClientBitrateLimit` as a signed 32-bit integer, so no limit we write
/// can exceed this.
pub const MAX_JELLYFIN_LIMIT_BPS: u64 = i32::MAX as u64;

/// Why the configuration could not be used. Each variant names the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not exist.
    #[error(
        "config file {0} not found: `jellydemon init` writes one (it asks for Jellyfin's URL, \
         an API key and your upload speed), or pass --config PATH or set JELLYDEMON_CONFIG"
    )]
    NotFound(PathBuf),
    /// The file is not valid TOML, a key is unknown, or a value has the wrong type.
    /// The message says which, never quoting a secret.
    #[error("{0}")]
    Parse(String),
    /// A value that parses but is not allowed.
    #[error("invalid value for `{key}`: {message}")]
    Invalid {
        /// The key, e.g. `bandwidth.total_upload_mbps`.
        key: &'static str,
        /// What is wrong, and what would do.
        message: String,
    },
}

pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// How to reach the Jellyfin server.
    pub jellyfin: JellyfinSettings,
    /// Which client addresses count as inside the house.
    #[serde(default)]
    pub network: NetworkSettings,
    /// The link and how it is shared.
    pub bandwidth: BandwidthSettings,
    /// Which users jellydemon manages.
    #[serde(default)]
    pub users: UserSettings,
    /// Where the ledger of original limits lives.
    #[serde(default)]
    pub state: StateSettings,
    /// How the daemon behaves.
    #[serde(default)]
    pub daemon: DaemonSettings,
    /// Where logs go, and whether they are anonymized.
    #[serde(default)]
    pub logging: LoggingSettings,
    /// `[[notify]]` as written, until the load parses it into `notify`.
    #[serde(default, rename = "notify")]
    notify_file: Vec<notify::NotifyFile>,
    /// `[[notify]]`: where notifications go.
    #[serde(skip)]
    pub notify: Vec<NotifyTarget>,
    /// `[[downloader]]`: the torrent clients seeding on the same link.
    #[serde(default)]
    pub downloader: Vec<DownloaderSettings>,
    /// `[[server]]` as written, until the load parses it into `server`.
    #[serde(default, rename = "server")]
    server_file: Vec<server::ServerFile>,
    /// `[[server]]`: the other media servers streaming on the same link.
    #[serde(skip)]
    pub server: Vec<ServerSettings>,
    /// `[history]`: what was played and how the link was shared, in SQLite.
    #[serde(default)]
    pub history: HistorySettings,
    /// `[transcoding]`: how many video transcodes the server runs at once.
    #[serde(default)]
    pub transcoding: TranscodingSettings,
}

/// `s` as a TOML basic string (quoted, escaped), for the files `init` and `import-config`
/// write.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Settings {
    /// Load from `path`, then the environment, and validate.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::NotFound(path.to_path_buf()));
        }
        Self::from_figment(Figment::new().merge(Toml::file_exact(path)).merge(env()))
    }

    /// Parse a TOML string (no environment), and validate. Used by tests and `check`.
    pub fn from_toml_str(toml: &str) -> Result<Settings, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(toml)))
    }

    fn from_figment(figment: Figment) -> Result<Settings, ConfigError> {
        one_of_each_pair(&figment)?;
        // `total_upload_mbps = "sqm"`: the capacity is read from the router's SQM queue
        // (`src/adapters/budget/sqm.rs`); until then the number is a stand-in nothing may plan with.
        let sqm = figment
            .find_value("bandwidth.total_upload_mbps")
            .ok()
            .and_then(|v| v.as_str().map(|s| s.trim().eq_ignore_ascii_case("sqm")))
            .unwrap_or(false);
        let figment = if sqm {
            figment.merge(("bandwidth.total_upload_mbps", SQM_UNREAD_MBPS))
        } else {
            figment
        };
        let mut settings: Settings = figment.extract().map_err(describe_figment_error)?;
        if sqm {
            settings.bandwidth.sqm = Sqm::Unread;
        }
        settings.parse()?;
        settings.network.parse()?;
        Ok(settings)
    }

    /// The capacity read from the router's SQM queue (`total_upload_mbps = "sqm"`), in Mbps,
    /// with what was read ("queue eth1 on pppoe-wan").
    pub fn set_sqm_capacity(&mut self, mbps: f64, queue: String) -> Result<(), ConfigError> {
        let b = &mut self.bandwidth;
        if !mbps.is_finite() || mbps <= b.reserved_mbps {
            return Err(invalid(
                "bandwidth.total_upload_mbps",
                format!(
                    "SQM's upload rate ({mbps} Mbps, {queue}) is not above reserved_mbps ({})",
                    b.reserved_mbps
                ),
            ));
        }
        // Each schedule entry must still leave a budget with the total read.
        for (i, e) in b.schedule.iter().enumerate() {
            e.window(i + 1, mbps, b.reserved_mbps)?;
        }
        b.total_upload_mbps = mbps;
        b.sqm = Sqm::Read { queue };
        Ok(())
    }

    /// Check every value and parse the tables whose keys depend on their `kind`, then read
    /// the secrets' files; the error names the key.
    fn parse(&mut self) -> Result<(), ConfigError> {
        self.history.validate()?;
        self.jellyfin.validate()?;
        self.network.internal_ranges()?;
        self.bandwidth.meter = self
            .bandwidth
            .meter_file
            .take()
            .map(MeterFile::parse)
            .transpose()?;
        self.parse_schedule()?;
        self.notify = notify::parse_all(std::mem::take(&mut self.notify_file))?;
        downloader::validate_all(&self.downloader)?;
        self.server = server::parse_all(
            std::mem::take(&mut self.server_file),
            &downloader_names(&self.downloader),
        )?;
        self.transcoding.validate()?;
        self.bandwidth.downloaders.validate()?;
        self.bandwidth.validate()?;
        self.daemon.validate()?;
        self.logging.validate()?;
        if self.state.file.as_os_str().is_empty() {
            return Err(invalid("state.file", "must not be empty"));
        }
        self.resolve_secrets()
    }

    /// The bandwidth figures in bits per second.
    pub fn budget(&self) -> Budget {
        let b = &self.bandwidth;
        Budget {
            budget_bps: mbps_to_bps(b.total_upload_mbps) - mbps_to_bps(b.reserved_mbps),
            min_per_user_bps: mbps_to_bps(b.min_per_user_mbps),
            max_per_user_bps: b
                .max_per_user_mbps
                .map(|m| mbps_to_bps(m).min(MAX_JELLYFIN_LIMIT_BPS)),
            step_bps: mbps_to_bps(b.step_mbps),
        }
    }

    /// The time zone of schedules and statistics: `bandwidth.timezone` (found at load), else
    /// the system's.
    pub fn timezone(&self) -> jiff::tz::TimeZone {
        self.bandwidth
            .zone
            .clone()
            .unwrap_or_else(jiff::tz::TimeZone::system)
    }

    /// `[[bandwidth.schedule]]` and its time zone (`src/adapters/budget/schedule.rs` follows
    /// them), or `None` without one.
    pub fn schedule_windows(&self) -> Option<(Vec<Window>, jiff::tz::TimeZone)> {
        let w = &self.bandwidth.windows;
        (!w.is_empty()).then(|| (w.clone(), self.timezone()))
    }

    /// `bandwidth.timezone` and every `[[bandwidth.schedule]]` entry, parsed; each entry must
    /// leave a budget with the static figures it does not change.
    fn parse_schedule(&mut self) -> Result<(), ConfigError> {
        let b = &mut self.bandwidth;
        if let Some(name) = &b.timezone {
            b.zone = Some(jiff::tz::TimeZone::get(name).map_err(|e| {
                invalid(
                    "bandwidth.timezone",
                    format!("\"{name}\" is not a time zone ({e}); e.g. \"Europe/Berlin\""),
                )
            })?);
        }
        b.windows = b
            .schedule
            .iter()
            .enumerate()
            .map(|(i, e)| e.window(i + 1, b.total_upload_mbps, b.reserved_mbps))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(())
    }

    /// The alias map's path: `logging.alias_file`, or `aliases.json` beside the state file.
    pub fn alias_file(&self) -> PathBuf {
        self.logging.alias_file.clone().unwrap_or_else(|| {
            self.state
                .file
                .parent()
                .unwrap_or(Path::new("."))
                .join("aliases.json")
        })
    }

    /// The owner's overrides of the running daemon (`src/core/control.rs`): `overrides.json`
    /// beside the state file.
    pub fn overrides_file(&self) -> PathBuf {
        self.state
            .file
            .parent()
            .unwrap_or(Path::new("."))
            .join("overrides.json")
    }

    /// What the planner remembers between processes: `memory.json` beside the state file.
    pub fn memory_file(&self) -> PathBuf {
        self.state
            .file
            .parent()
            .unwrap_or(Path::new("."))
            .join("memory.json")
    }

    /// The API key (from `api_key`, or `api_key_file` read at load).
    pub fn api_key(&self) -> Result<&SecretString, ConfigError> {
        self.jellyfin
            .api_key
            .as_ref()
            .ok_or_else(|| invalid("jellyfin.api_key", "missing"))?
            .get()
    }

    /// Read every `<key>_file` once, into its `<key>` (after [`Settings::parse`] checked
    /// that each secret is given one way only; the meter's and the notification targets'
    /// are read as they are parsed).
    fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        let j = &mut self.jellyfin;
        resolve(&mut j.api_key, &j.api_key_file, "jellyfin.api_key_file")?;
        self.daemon.resolve_secrets()?;
        for d in &mut self.downloader {
            d.resolve_secrets()?;
        }
        Ok(())
    }
}

/// `JELLYDEMON_SECTION__KEY` variables. `JELLYDEMON_CONFIG` names the file itself and is not a key.
fn env() -> Env {
    Env::prefixed("JELLYDEMON_").split("__").ignore(&["config"])
}

fn positive_finite(key: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(key, format!("must be a number > 0, got {v}")))
    }
}

fn non_negative_finite(key: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(invalid(key, format!("must be a number >= 0, got {v}")))
    }
}

#[cfg(test)]
mod tests;
