//! Configuration: a TOML file, then `JELLYDEMON_SECTION__KEY` environment variables, layered
//! with figment into typed settings that are validated once at load.
//!
//! Every struct denies unknown fields, so a typo is an error that names the key instead of a
//! setting that silently does nothing. [`Settings::validate`] checks values (CIDRs, URL, limits)
//! and names the offending key in its error. Secrets are held as [`SecretString`], whose `Debug`
//! prints a placeholder, so a `{:?}` of the settings never shows the API key.
//!
//! One module per section: `config/jellyfin.rs` (`[jellyfin]`, `[network]`),
//! `config/bandwidth.rs`, `config/meter.rs` (`[bandwidth.meter]`, schedules),
//! `config/downloader.rs`, `config/server.rs`, `config/transcoding.rs`, `config/daemon.rs`
//! (`[daemon]`, `[state]`), `config/notify.rs`, `config/history.rs`, `config/logging.rs`; the
//! `x` / `x_file` secrets in `config/secrets.rs`, figment's error text in `config/errors.rs`.
//! This file layers the sources and validates across sections.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use figment::value::magic::RelativePathBuf;
use secrecy::{ExposeSecret, SecretString};
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
pub use errors::SECRET_KEYS;
use errors::{describe_figment_error, one_of_each_pair};
pub use history::HistorySettings;
pub use jellyfin::{InternalRanges, InternalRangesSetting, JellyfinSettings, NetworkSettings};
pub use logging::{LogFormat, LoggingSettings};
pub use meter::{MeterKind, MeterSettings, ScheduleEntry, Window, parse_days, parse_time};
pub use notify::{EventKind, NotifyKind, NotifyTarget};
use secrets::{MIN_TOKEN_LEN, secret_from, short_token, token_from};
pub use server::{ServerKind, ServerSettings, names as server_names};
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
    /// `[[notify]]`: where notifications go.
    #[serde(default)]
    pub notify: Vec<NotifyTarget>,
    /// `[[downloader]]`: the torrent clients seeding on the same link.
    #[serde(default)]
    pub downloader: Vec<DownloaderSettings>,
    /// `[[server]]`: the other media servers streaming on the same link.
    #[serde(default)]
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
        // (`src/budget/sqm.rs`); until then the number is a stand-in nothing may plan with.
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
        settings.validate()?;
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
        b.total_upload_mbps = mbps;
        b.sqm = Sqm::Read { queue };
        Ok(())
    }

    /// Check every value; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.history.retention_days == 0 {
            return Err(invalid(
                "history.retention_days",
                "at least 1 (to keep no history, set history.enabled = false)",
            ));
        }
        if self.history.max_mb == 0 {
            return Err(invalid(
                "history.max_mb",
                "at least 1 (to keep no history, set history.enabled = false)",
            ));
        }
        let url = url::Url::parse(&self.jellyfin.url).map_err(|e| {
            invalid(
                "jellyfin.url",
                format!("\"{}\": {e}", redact_userinfo(&self.jellyfin.url)),
            )
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "jellyfin.url",
                format!(
                    "must not contain a user name or password (\"{}\"): jellydemon signs in \
                     with api_key",
                    redact_userinfo(&self.jellyfin.url)
                ),
            ));
        }
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid(
                "jellyfin.url",
                format!("scheme must be http or https, got \"{}\"", url.scheme()),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "jellyfin.url",
                "must not contain a query or fragment (the API key goes in api_key)",
            ));
        }
        match (&self.jellyfin.api_key, &self.jellyfin.api_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "jellyfin.api_key",
                    "set either api_key or api_key_file, not both",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "jellyfin.api_key",
                    "missing: set api_key, api_key_file or JELLYDEMON_JELLYFIN__API_KEY",
                ));
            }
            (Some(key), None) if key.expose_secret().trim().is_empty() => {
                return Err(invalid("jellyfin.api_key", "is empty"));
            }
            _ => {}
        }
        if self.jellyfin.timeout.is_zero() {
            return Err(invalid("jellyfin.timeout", "must be greater than 0"));
        }
        self.network.internal_ranges()?;

        let b = &self.bandwidth;
        if let Some(m) = &b.meter {
            m.validate()?;
        }
        self.schedule_windows()?;
        notify::validate_all(&self.notify)?;
        downloader::validate_all(&self.downloader)?;
        server::validate_all(&self.server, &downloader_names(&self.downloader))?;
        self.transcoding.validate()?;
        self.bandwidth.downloaders.validate()?;
        if b.sqm != Sqm::Off
            && !matches!(
                b.meter.as_ref().map(|m| m.kind),
                Some(MeterKind::Openwrt | MeterKind::Interface)
            )
        {
            return Err(invalid(
                "bandwidth.total_upload_mbps",
                "\"sqm\" reads the rate the router shapes to: it needs [bandwidth.meter] kind = \
                 \"openwrt\" (SQM through rpcd) or \"interface\" (the cake qdisc of this \
                 gateway's device) (README.md, \"A budget that follows the link\")",
            ));
        }
        positive_finite("bandwidth.total_upload_mbps", b.total_upload_mbps)?;
        non_negative_finite("bandwidth.reserved_mbps", b.reserved_mbps)?;
        if mbps_to_bps(b.total_upload_mbps) <= mbps_to_bps(b.reserved_mbps) {
            return Err(invalid(
                "bandwidth.reserved_mbps",
                format!(
                    "must be less than total_upload_mbps ({} >= {}): the budget would be 0",
                    b.reserved_mbps, b.total_upload_mbps
                ),
            ));
        }
        positive_finite("bandwidth.min_per_user_mbps", b.min_per_user_mbps)?;
        let max_mbps = MAX_JELLYFIN_LIMIT_BPS as f64 / BPS_PER_MBPS;
        if b.min_per_user_mbps > max_mbps {
            return Err(invalid(
                "bandwidth.min_per_user_mbps",
                format!("Jellyfin cannot store more than {max_mbps} Mbps"),
            ));
        }
        if let Some(max) = b.max_per_user_mbps {
            positive_finite("bandwidth.max_per_user_mbps", max)?;
            if max < b.min_per_user_mbps {
                return Err(invalid(
                    "bandwidth.max_per_user_mbps",
                    format!(
                        "must be at least min_per_user_mbps ({max} < {})",
                        b.min_per_user_mbps
                    ),
                ));
            }
        }
        positive_finite("bandwidth.step_mbps", b.step_mbps)?;
        if mbps_to_bps(b.step_mbps) == 0 {
            return Err(invalid("bandwidth.step_mbps", "must be at least 1 bit/s"));
        }
        non_negative_finite("bandwidth.hysteresis_percent", b.hysteresis_percent)?;
        if b.hysteresis_percent >= 100.0 {
            return Err(invalid(
                "bandwidth.hysteresis_percent",
                "must be below 100 (at 100 no change would ever be written)",
            ));
        }
        positive_finite(
            "bandwidth.priority.default_weight",
            b.priority.default_weight,
        )?;
        positive_finite("bandwidth.priority.admin_weight", b.priority.admin_weight)?;
        for w in b.priority.users.values() {
            positive_finite("bandwidth.priority.users", *w)?;
        }
        positive_finite("bandwidth.demand.default_mbps", b.demand.default_mbps)?;
        if !(b.demand.overhead.is_finite() && b.demand.overhead >= 1.0) {
            return Err(invalid(
                "bandwidth.demand.overhead",
                format!("must be a number >= 1.0, got {}", b.demand.overhead),
            ));
        }
        let d = &self.daemon;
        if d.webhook_token.is_some() && d.webhook_token_file.is_some() {
            return Err(invalid(
                "daemon.webhook_token",
                "set either webhook_token or webhook_token_file, not both",
            ));
        }
        if d.webhook_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().trim().len() < MIN_TOKEN_LEN)
        {
            return Err(invalid(
                "daemon.webhook_token",
                "must be at least 16 characters (e.g. `openssl rand -hex 16`)",
            ));
        }
        if d.mode == Mode::Webhook
            && !d.listen.ip().is_loopback()
            && d.webhook_token.is_none()
            && d.webhook_token_file.is_none()
        {
            return Err(invalid(
                "daemon.webhook_token",
                format!(
                    "required when listen ({}) is not a loopback address: anyone who can reach \
                     it could trigger recomputes",
                    d.listen
                ),
            ));
        }
        // A token file that can be read now is checked now (one that cannot is reported
        // where it is used, e.g. by `check` run as another user).
        for (file, key) in [
            (&d.webhook_token_file, "daemon.webhook_token_file"),
            (&d.status_token_file, "daemon.status_token_file"),
        ] {
            if let Some(f) = file
                && let Ok(text) = std::fs::read_to_string(f.relative())
                && (1..MIN_TOKEN_LEN).contains(&text.trim().len())
            {
                return Err(short_token(key));
            }
        }
        if d.status_token.is_some() && d.status_token_file.is_some() {
            return Err(invalid(
                "daemon.status_token",
                "set either status_token or status_token_file, not both",
            ));
        }
        if d.status_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().trim().len() < MIN_TOKEN_LEN)
        {
            return Err(invalid(
                "daemon.status_token",
                "must be at least 16 characters (e.g. `openssl rand -hex 16`)",
            ));
        }
        if d.status_protected()
            && d.status_token.is_none()
            && d.status_token_file.is_none()
            && d.webhook_token.is_none()
            && d.webhook_token_file.is_none()
        {
            return Err(invalid(
                "daemon.status_token",
                format!(
                    "required when listen ({}) is not a loopback address: the status page, \
                     /api/state and /metrics show who watches what from where. Set \
                     status_token (or webhook_token), or public_status = true to serve them \
                     to anyone",
                    d.listen
                ),
            ));
        }
        for host in &d.allowed_hosts {
            if host.is_empty() || host.contains(['/', ' ', ':', '@']) {
                return Err(invalid(
                    "daemon.allowed_hosts",
                    format!("\"{host}\" is not a host name (no port, scheme or path)"),
                ));
            }
        }
        if d.poll_interval.is_some_and(|p| p < Duration::from_secs(1)) {
            return Err(invalid("daemon.poll_interval", "must be at least 1s"));
        }
        if d.debounce > Duration::from_secs(60) {
            return Err(invalid("daemon.debounce", "must be at most 60s"));
        }
        if d.max_writes_per_second == 0 {
            return Err(invalid(
                "daemon.max_writes_per_second",
                "must be at least 1",
            ));
        }
        if !(d.push_threshold_percent.is_finite() && d.push_threshold_percent > 0.0) {
            return Err(invalid(
                "daemon.push_threshold_percent",
                format!("must be a number > 0, got {}", d.push_threshold_percent),
            ));
        }
        for (key, value) in [
            ("daemon.http_header_timeout", d.http_header_timeout),
            ("daemon.http_request_timeout", d.http_request_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if d.http_drain > Duration::from_secs(10) {
            return Err(invalid(
                "daemon.http_drain",
                "must be at most 10s: a client must not hold up the restoring shutdown",
            ));
        }
        if !(4..=65_536).contains(&d.http_max_connections) {
            return Err(invalid(
                "daemon.http_max_connections",
                format!(
                    "must be between 4 and 65536, got {}",
                    d.http_max_connections
                ),
            ));
        }
        if d.max_hook_body_bytes < 1024 {
            return Err(invalid(
                "daemon.max_hook_body_bytes",
                "must be at least 1024",
            ));
        }
        if let Some(level) = &self.logging.level
            && tracing_subscriber::EnvFilter::try_new(level).is_err()
        {
            return Err(invalid(
                "logging.level",
                format!("\"{level}\" is not a level or filter (e.g. \"info\")"),
            ));
        }
        if self.logging.max_file_bytes < 4096 {
            return Err(invalid("logging.max_file_bytes", "must be at least 4096"));
        }
        if self.state.file.as_os_str().is_empty() {
            return Err(invalid("state.file", "must not be empty"));
        }
        Ok(())
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

    /// The schedule's entries parsed and its time zone, or `None` without
    /// The time zone of schedules and statistics: `bandwidth.timezone` (validated at load),
    /// else the system's.
    pub fn timezone(&self) -> jiff::tz::TimeZone {
        self.bandwidth
            .timezone
            .as_deref()
            .and_then(|n| jiff::tz::TimeZone::get(n).ok())
            .unwrap_or_else(jiff::tz::TimeZone::system)
    }

    /// `[[bandwidth.schedule]]` (`src/budget/schedule.rs` follows them).
    pub fn schedule_windows(
        &self,
    ) -> Result<Option<(Vec<Window>, jiff::tz::TimeZone)>, ConfigError> {
        let b = &self.bandwidth;
        let tz = match &b.timezone {
            Some(name) => jiff::tz::TimeZone::get(name).map_err(|e| {
                invalid(
                    "bandwidth.timezone",
                    format!("\"{name}\" is not a time zone ({e}); e.g. \"Europe/Berlin\""),
                )
            })?,
            None => jiff::tz::TimeZone::system(),
        };
        if b.schedule.is_empty() {
            return Ok(None);
        }
        let windows = b
            .schedule
            .iter()
            .enumerate()
            .map(|(i, e)| e.window(i + 1, b.total_upload_mbps, b.reserved_mbps))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((windows, tz)))
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

    /// The owner's overrides of the running daemon (`src/control.rs`): `overrides.json`
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

    /// The API key, read from `api_key` or `api_key_file`.
    pub fn api_key(&self) -> Result<SecretString, ConfigError> {
        if let Some(key) = &self.jellyfin.api_key {
            return Ok(key.clone());
        }
        let path = self
            .jellyfin
            .api_key_file
            .as_ref()
            .map(RelativePathBuf::relative)
            .ok_or_else(|| invalid("jellyfin.api_key", "missing"))?;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            invalid(
                "jellyfin.api_key_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let key = text.trim();
        if key.is_empty() {
            return Err(invalid(
                "jellyfin.api_key_file",
                format!("{} is empty", path.display()),
            ));
        }
        Ok(SecretString::from(key.to_owned()))
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

#[cfg(test)]
mod tests;
