//! Configuration: a TOML file, then `JELLYDEMON_SECTION__KEY` environment variables, layered
//! with figment into typed settings that are validated once at load.
//!
//! Every struct denies unknown fields, so a typo is an error that names the key instead of a
//! setting that silently does nothing. [`Settings::validate`] checks values (CIDRs, URL, limits)
//! and names the offending key in its error. Secrets are held as [`SecretString`], whose `Debug`
//! prints a placeholder, so a `{:?}` of the settings never shows the API key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use figment::value::magic::RelativePathBuf;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::ids::UserId;
use crate::network;

mod downloader;
mod errors;
mod history;
mod meter;
mod notify;
mod server;
mod transcoding;
pub use downloader::{
    DownloaderKind, DownloaderPriority, DownloaderSettings, DownloadersPolicy,
    names as downloader_names,
};
pub use errors::SECRET_KEYS;
use errors::{describe_figment_error, one_of_each_pair};
pub use history::HistorySettings;
pub use meter::{MeterKind, MeterSettings, ScheduleEntry, Window, parse_days, parse_time};
pub use notify::{EventKind, NotifyKind, NotifyTarget};
pub use server::{ServerKind, ServerSettings, names as server_names};
pub use transcoding::{Capacity, CapacitySetting, TranscodingSettings};

/// Where `total_upload_mbps` comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Sqm {
    /// The number in the file.
    #[default]
    Off,
    /// `"sqm"`, not read yet: nothing may plan with the stand-in number.
    Unread,
    /// `"sqm"`, read from the router.
    Read {
        /// What was read ("queue eth1 on pppoe-wan").
        queue: String,
    },
}

/// The stand-in `total_upload_mbps` while SQM's rate is not read.
const SQM_UNREAD_MBPS: f64 = 1e6;

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

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (journald adds its own timestamps).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[logging]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSettings {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a filter such as
    /// `jellydemon::daemon::engine=debug,info`. `RUST_LOG` wins over this.
    #[serde(default)]
    pub level: Option<String>,
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// Also write logs to this file, rotated by size.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Rotate the log file when it would grow beyond this many bytes.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// How many rotated files (`file.1`, `file.2`, …) to keep.
    #[serde(default = "default_keep_files")]
    pub keep_files: u32,
    /// Replace user names, user ids, IP addresses, session ids and device ids by stable aliases
    /// in logs, metrics and the status API, so logs can be shared.
    #[serde(default)]
    pub anonymize: bool,
    /// Where the alias map is kept so aliases stay stable across restarts. Default: next to the
    /// state file, `aliases.json`.
    #[serde(default)]
    pub alias_file: Option<PathBuf>,
}

fn default_max_file_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_keep_files() -> u32 {
    5
}

impl Default for LoggingSettings {
    fn default() -> Self {
        LoggingSettings {
            level: None,
            format: LogFormat::Text,
            file: None,
            max_file_bytes: default_max_file_bytes(),
            keep_files: default_keep_files(),
            anonymize: false,
            alias_file: None,
        }
    }
}

/// `[jellyfin]`: where the server is and how to authenticate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JellyfinSettings {
    /// Base URL, including a base path such as `/jellyfin` when Jellyfin is served under one.
    pub url: String,
    /// The API key (Dashboard -> API Keys). Prefer `api_key_file` outside of tests.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// A file holding the API key (systemd credentials, Docker secrets). Surrounding whitespace
    /// is ignored. A relative path is relative to the configuration file's directory.
    #[serde(default)]
    pub api_key_file: Option<RelativePathBuf>,
    /// Upper bound for one HTTP request to Jellyfin, so a hung server cannot stall a pass.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `internal_ranges`: either the word `"jellyfin"` or a list of CIDRs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    untagged,
    expecting = "expected \"jellyfin\" or a list of networks such as [\"192.168.1.0/24\"]"
)]
pub enum InternalRangesSetting {
    /// `"jellyfin"`: import Jellyfin's own ranges.
    Keyword(String),
    /// CIDRs such as `192.168.1.0/24`.
    List(Vec<String>),
}

impl Default for InternalRangesSetting {
    fn default() -> Self {
        InternalRangesSetting::Keyword("jellyfin".into())
    }
}

/// Where the list of internal address ranges comes from, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternalRanges {
    /// Import Jellyfin's own `LocalNetworkSubnets`, so both sides agree on who is local.
    FromJellyfin,
    /// A fixed list from the configuration file.
    Fixed(Vec<IpNet>),
}

/// `[network]`: who counts as local.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    /// `"jellyfin"` (default) or a list such as `["192.168.1.0/24", "fd00::/8"]`.
    #[serde(default)]
    pub internal_ranges: InternalRangesSetting,
}

impl NetworkSettings {
    /// The validated form of `internal_ranges`.
    pub fn internal_ranges(&self) -> Result<InternalRanges, ConfigError> {
        const KEY: &str = "network.internal_ranges";
        match &self.internal_ranges {
            InternalRangesSetting::Keyword(word) if word.eq_ignore_ascii_case("jellyfin") => {
                Ok(InternalRanges::FromJellyfin)
            }
            InternalRangesSetting::Keyword(word) => Err(invalid(
                KEY,
                format!("expected \"jellyfin\" or a list of CIDRs, got \"{word}\""),
            )),
            InternalRangesSetting::List(list) => {
                let mut nets = Vec::with_capacity(list.len());
                for item in list {
                    nets.push(
                        network::parse_cidr(item)
                            .map_err(|e| invalid(KEY, format!("\"{item}\": {e}")))?,
                    );
                }
                if nets.is_empty() {
                    return Err(invalid(
                        KEY,
                        "the list is empty; every client would count as remote. Use \"jellyfin\" \
                         to import Jellyfin's LAN setting",
                    ));
                }
                Ok(InternalRanges::Fixed(nets))
            }
        }
    }
}

/// The allocation algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Max-min fair split among remote users.
    #[default]
    Equal,
    /// Weighted max-min split, weights from `[bandwidth.priority]`.
    Priority,
    /// Each user gets what their streams really use when it fits; the rest is split fairly.
    Demand,
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Algorithm::Equal => "equal",
            Algorithm::Priority => "priority",
            Algorithm::Demand => "demand",
        })
    }
}

/// `[bandwidth]`: the link and how it is shared.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandwidthSettings {
    /// The upload capacity of the link, in Mbps (`"sqm"` in the file: read from the router's
    /// SQM queue, see [`BandwidthSettings::sqm`]).
    pub total_upload_mbps: f64,
    /// Whether the capacity comes from the router's SQM queue, and whether it was read.
    #[serde(skip)]
    pub sqm: Sqm,
    /// Kept free for everything else in the house (backups, calls), in Mbps.
    #[serde(default)]
    pub reserved_mbps: f64,
    /// `equal` (default), `priority` or `demand`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// The lowest limit jellydemon writes for a user, in Mbps. Below ~1 Mbps video is unwatchable.
    #[serde(default = "default_min_per_user")]
    pub min_per_user_mbps: f64,
    /// The highest limit jellydemon writes for a user, in Mbps. Absent: no cap beyond the
    /// user's own original limit and the server-wide limit.
    #[serde(default)]
    pub max_per_user_mbps: Option<f64>,
    /// Whether a paused remote stream still claims a share.
    #[serde(default)]
    pub count_paused: bool,
    /// Limits are rounded down to a multiple of this step (Mbps), so that tiny changes in the
    /// inputs do not produce a new value to write.
    #[serde(default = "default_step")]
    pub step_mbps: f64,
    /// A new limit within this percentage of the current one is not written.
    #[serde(default = "default_hysteresis")]
    pub hysteresis_percent: f64,
    /// `[bandwidth.priority]`: weights for `algorithm = "priority"`.
    #[serde(default)]
    pub priority: PrioritySettings,
    /// `[bandwidth.demand]`: how demand is estimated.
    #[serde(default)]
    pub demand: DemandSettings,
    /// `[bandwidth.meter]`: the budget follows the link's measured upload. Absent: static.
    #[serde(default)]
    pub meter: Option<MeterSettings>,
    /// `[[bandwidth.schedule]]`: times of the week with another total or reserve.
    #[serde(default)]
    pub schedule: Vec<ScheduleEntry>,
    /// `[bandwidth.downloaders]`: how the `[[downloader]]` clients share the link.
    #[serde(default)]
    pub downloaders: DownloadersPolicy,
    /// The time zone of the schedule (`"Europe/Berlin"`); absent: the system's.
    #[serde(default)]
    pub timezone: Option<String>,
}

fn default_min_per_user() -> f64 {
    2.0
}
fn default_step() -> f64 {
    0.5
}
fn default_hysteresis() -> f64 {
    5.0
}

/// `[bandwidth.priority]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrioritySettings {
    /// The weight of a user not listed in `users` and not an administrator.
    #[serde(default = "one")]
    pub default_weight: f64,
    /// The weight of an administrator not listed in `users`.
    #[serde(default = "one")]
    pub admin_weight: f64,
    /// Per-user weights by user name (case-insensitive).
    #[serde(default)]
    pub users: BTreeMap<String, f64>,
}

fn one() -> f64 {
    1.0
}

impl Default for PrioritySettings {
    fn default() -> Self {
        PrioritySettings {
            default_weight: 1.0,
            admin_weight: 1.0,
            users: BTreeMap::new(),
        }
    }
}

impl PrioritySettings {
    /// The weight of a user, by name first, then by role.
    pub fn weight(&self, name: &str, is_admin: bool) -> f64 {
        self.users
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, w)| *w)
            .unwrap_or(if is_admin {
                self.admin_weight
            } else {
                self.default_weight
            })
    }
}

/// `[bandwidth.demand]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemandSettings {
    /// The rate assumed for a stream whose bitrate Jellyfin does not report, in Mbps.
    #[serde(default = "default_demand")]
    pub default_mbps: f64,
    /// Demand = stream rate x overhead (container, audio, bursts).
    #[serde(default = "default_overhead")]
    pub overhead: f64,
}

fn default_demand() -> f64 {
    8.0
}
fn default_overhead() -> f64 {
    1.1
}

impl Default for DemandSettings {
    fn default() -> Self {
        DemandSettings {
            default_mbps: default_demand(),
            overhead: default_overhead(),
        }
    }
}

/// `[users]`: who is managed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSettings {
    /// Users jellydemon never touches, by name (case-insensitive) or id. Everyone else with
    /// remote access enabled and not disabled is managed.
    #[serde(default)]
    pub exclude: Vec<String>,
}

impl UserSettings {
    /// Whether the user is listed in `exclude` (by name, case-insensitive, or by id in any
    /// spelling).
    pub fn is_excluded(&self, id: &UserId, name: &str) -> bool {
        self.exclude
            .iter()
            .any(|e| e.eq_ignore_ascii_case(name) || *id == **e)
    }
}

/// `[state]`: where the ledger lives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// The ledger of original limits. Its directory must exist and be writable.
    #[serde(default = "default_state_file")]
    pub file: PathBuf,
}

fn default_state_file() -> PathBuf {
    PathBuf::from("/var/lib/jellydemon/state.json")
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            file: default_state_file(),
        }
    }
}

/// How the daemon learns about playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// React to the Webhook plugin at once, poll slowly as the fallback.
    #[default]
    Webhook,
    /// No webhooks: poll `/Sessions` only, more often.
    ReconcileOnly,
}

impl Mode {
    /// As written in the configuration: `webhook`, `reconcile-only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Webhook => "webhook",
            Mode::ReconcileOnly => "reconcile-only",
        }
    }
}

/// `[daemon]`: the daemon's listener, poll and writes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSettings {
    /// Compute and report everything, write nothing (not even the ledger).
    #[serde(default)]
    pub dry_run: bool,
    /// `webhook` (default) or `reconcile-only`.
    #[serde(default)]
    pub mode: Mode,
    /// Where the HTTP listener (`/hook`, `/healthz`, `/api/state`) binds.
    #[serde(default = "default_listen")]
    pub listen: std::net::SocketAddr,
    /// The shared secret the Webhook plugin sends in `X-Jellydemon-Token` (or
    /// `Authorization: Bearer`). Required unless `listen` is a loopback address.
    #[serde(default)]
    pub webhook_token: Option<SecretString>,
    /// A file holding the webhook secret (alternative to `webhook_token`); relative to the
    /// configuration file's directory.
    #[serde(default)]
    pub webhook_token_file: Option<RelativePathBuf>,
    /// The secret for the status page, `/api/*` and `/metrics` when `listen` is not loopback
    /// (as `Authorization: Bearer`, or through the page's sign-in form). Default: the webhook
    /// secret.
    #[serde(default)]
    pub status_token: Option<SecretString>,
    /// A file holding the status secret (alternative to `status_token`); relative to the
    /// configuration file's directory.
    #[serde(default)]
    pub status_token_file: Option<RelativePathBuf>,
    /// Serve the status page, `/api/*` and `/metrics` without a secret off loopback too. They
    /// show user names, addresses and what people watch.
    #[serde(default)]
    pub public_status: bool,
    /// Host names (beside IP addresses, `localhost` and this machine's name) under which the
    /// status page may be reached; a request for any other name is refused (DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// How often `/Sessions` is reconciled. Default: 5 minutes with webhooks, 30 seconds in
    /// reconcile-only mode.
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    /// Playback events within this window cause one `/Sessions` read and one recompute.
    #[serde(default = "default_debounce", with = "humantime_serde")]
    pub debounce: Duration,
    /// At most this many policy writes per second, to protect Jellyfin.
    #[serde(default = "default_writes_per_second")]
    pub max_writes_per_second: u32,
    /// When to send `SetMaxStreamingBitrate` to a running stream (only to sessions that list
    /// the command): `both` (default), `down` or `off`; `true`/`false` mean `both`/`off`.
    #[serde(default)]
    pub push: PushMode,
    /// A stream is pushed *up* at most once per this period (a push interrupts it briefly).
    #[serde(default = "default_push_cooldown", with = "humantime_serde")]
    pub push_cooldown: Duration,
    /// A stream is pushed only when its rate would change by at least this many percent (up;
    /// or down while the budget does not need the difference).
    #[serde(default = "default_push_threshold")]
    pub push_threshold_percent: f64,
    /// Put every original limit back on SIGTERM/SIGINT.
    #[serde(default = "default_true")]
    pub restore_on_exit: bool,
    /// How long shutdown (including the restore) may take before giving up; the ledger keeps
    /// whatever could not be restored for the next start or `jellydemon restore`.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// `/healthz` fails when the last successful poll is older than this.
    #[serde(default = "default_unhealthy_after", with = "humantime_serde")]
    pub unhealthy_after: Duration,
    /// The largest `/hook` body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_hook_body_bytes: usize,
    /// A client must send a request's headers within this long, also when a kept-alive
    /// connection waits for its next request; then the connection is closed.
    #[serde(default = "default_http_header_timeout", with = "humantime_serde")]
    pub http_header_timeout: Duration,
    /// A request (body included) must be answered within this long, else 408.
    #[serde(default = "default_http_request_timeout", with = "humantime_serde")]
    pub http_request_timeout: Duration,
    /// At most this many HTTP connections at once (well under the open-file limit); at the
    /// limit the oldest connection without a request in progress is closed for a new one.
    #[serde(default = "default_http_max_connections")]
    pub http_max_connections: usize,
    /// On shutdown, open HTTP connections get this long to finish; the restore of the
    /// originals does not wait for them.
    #[serde(default = "default_http_drain", with = "humantime_serde")]
    pub http_drain: Duration,
    /// A notification for the same event is not sent again within this time.
    #[serde(default = "default_notify_cooldown", with = "humantime_serde")]
    pub notify_cooldown: Duration,
    /// Jellyfin unreachable (or refusing the key) this long is notified.
    #[serde(default = "default_notify_after", with = "humantime_serde")]
    pub notify_unreachable_after: Duration,
    /// Policy writes failing this long is notified.
    #[serde(default = "default_notify_after", with = "humantime_serde")]
    pub notify_writes_failing_after: Duration,
}

fn default_notify_cooldown() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_notify_after() -> Duration {
    Duration::from_secs(10 * 60)
}

fn default_listen() -> std::net::SocketAddr {
    ([127, 0, 0, 1], 8098).into()
}
fn default_debounce() -> Duration {
    Duration::from_millis(300)
}
fn default_writes_per_second() -> u32 {
    5
}
fn default_true() -> bool {
    true
}
fn default_push_cooldown() -> Duration {
    Duration::from_secs(600)
}
fn default_push_threshold() -> f64 {
    25.0
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_unhealthy_after() -> Duration {
    Duration::from_secs(600)
}
fn default_max_body() -> usize {
    64 * 1024
}
fn default_http_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_http_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_http_max_connections() -> usize {
    256
}
fn default_http_drain() -> Duration {
    Duration::from_secs(1)
}

/// Which way running streams are pushed with `SetMaxStreamingBitrate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushMode {
    /// Down when a stream runs above its user's new limit, and up when it is held well below
    /// what it could now get.
    #[default]
    Both,
    /// Only down.
    Down,
    /// Never: limits bite at each user's next item only.
    Off,
}

impl PushMode {
    /// Streams are pushed down (`both` or `down`).
    pub fn down(self) -> bool {
        self != PushMode::Off
    }
    /// Streams are pushed up too (`both`).
    pub fn up(self) -> bool {
        self == PushMode::Both
    }
}

impl std::fmt::Display for PushMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PushMode::Both => "both",
            PushMode::Down => "down",
            PushMode::Off => "off",
        })
    }
}

impl<'de> Deserialize<'de> for PushMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "expected \"both\", \"down\" or \"off\"")]
        enum Raw {
            Bool(bool),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(PushMode::Both),
            Raw::Bool(false) => Ok(PushMode::Off),
            Raw::Word(w) => match w.to_ascii_lowercase().as_str() {
                "both" => Ok(PushMode::Both),
                "down" => Ok(PushMode::Down),
                "off" => Ok(PushMode::Off),
                _ => Err(serde::de::Error::custom(format!(
                    "expected \"both\", \"down\" or \"off\", got \"{w}\""
                ))),
            },
        }
    }
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            dry_run: false,
            mode: Mode::default(),
            listen: default_listen(),
            webhook_token: None,
            webhook_token_file: None,
            status_token: None,
            status_token_file: None,
            public_status: false,
            allowed_hosts: Vec::new(),
            poll_interval: None,
            debounce: default_debounce(),
            max_writes_per_second: default_writes_per_second(),
            push: PushMode::default(),
            push_cooldown: default_push_cooldown(),
            push_threshold_percent: default_push_threshold(),
            restore_on_exit: true,
            shutdown_timeout: default_shutdown_timeout(),
            unhealthy_after: default_unhealthy_after(),
            max_hook_body_bytes: default_max_body(),
            http_header_timeout: default_http_header_timeout(),
            http_request_timeout: default_http_request_timeout(),
            http_max_connections: default_http_max_connections(),
            http_drain: default_http_drain(),
            notify_cooldown: default_notify_cooldown(),
            notify_unreachable_after: default_notify_after(),
            notify_writes_failing_after: default_notify_after(),
        }
    }
}

impl DaemonSettings {
    /// The reconciliation interval in force for the mode.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval.unwrap_or(match self.mode {
            Mode::Webhook => Duration::from_secs(300),
            Mode::ReconcileOnly => Duration::from_secs(30),
        })
    }

    /// The webhook secret from `webhook_token` or `webhook_token_file`, if any.
    pub fn webhook_token(&self) -> Result<Option<SecretString>, ConfigError> {
        token_from(
            &self.webhook_token,
            &self.webhook_token_file,
            "daemon.webhook_token_file",
        )
    }

    /// The secret for the read-only endpoints: `status_token` (or its file), else the webhook
    /// secret.
    pub fn status_token(&self) -> Result<Option<SecretString>, ConfigError> {
        match token_from(
            &self.status_token,
            &self.status_token_file,
            "daemon.status_token_file",
        )? {
            Some(t) => Ok(Some(t)),
            None => self.webhook_token(),
        }
    }

    /// Whether the read-only endpoints need the status secret: off loopback, unless
    /// `public_status`.
    pub fn status_protected(&self) -> bool {
        !self.listen.ip().is_loopback() && !self.public_status
    }
}

/// A secret given inline or in a file (whitespace trimmed); `file_key` names the file key in
/// errors.
fn secret_from(
    inline: &Option<SecretString>,
    file: &Option<RelativePathBuf>,
    file_key: &'static str,
) -> Result<Option<SecretString>, ConfigError> {
    if let Some(t) = inline {
        return Ok(Some(t.clone()));
    }
    let Some(path) = file.as_ref().map(RelativePathBuf::relative) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .or_else(|e| credential(&path).ok_or(e))
        .map_err(|e| invalid(file_key, format!("cannot read {}: {e}", path.display())))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(invalid(file_key, format!("{} is empty", path.display())));
    }
    Ok(Some(SecretString::from(t.to_owned())))
}

/// A secret file the service cannot read itself, handed to it by systemd as a credential of
/// the same name (`LoadCredential=qbittorrent_password:/etc/jellydemon/qbittorrent_password`
/// puts it in `$CREDENTIALS_DIRECTORY`).
fn credential(path: &Path) -> Option<String> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    std::fs::read_to_string(Path::new(&dir).join(path.file_name()?)).ok()
}

/// The fewest characters a webhook or status secret may have, inline or in its file.
const MIN_TOKEN_LEN: usize = 16;

/// [`secret_from`] for a secret that guards an endpoint: a file's too must be at least
/// [`MIN_TOKEN_LEN`] characters (as an inline one is, checked at load).
fn token_from(
    inline: &Option<SecretString>,
    file: &Option<RelativePathBuf>,
    file_key: &'static str,
) -> Result<Option<SecretString>, ConfigError> {
    let t = secret_from(inline, file, file_key)?;
    if inline.is_none()
        && t.as_ref()
            .is_some_and(|t| t.expose_secret().len() < MIN_TOKEN_LEN)
    {
        return Err(short_token(file_key));
    }
    Ok(t)
}

fn short_token(file_key: &'static str) -> ConfigError {
    invalid(
        file_key,
        format!(
            "the secret in it must be at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand \
             -hex 16`)"
        ),
    )
}

/// The values the allocation works with, in integer bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// `total_upload - reserved`.
    pub budget_bps: u64,
    /// `min_per_user`.
    pub min_per_user_bps: u64,
    /// `None`: no configured maximum.
    pub max_per_user_bps: Option<u64>,
    /// `step`.
    pub step_bps: u64,
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

/// Mbps from the file to integer bits/s, rounding to the nearest bit.
pub fn mbps_to_bps(mbps: f64) -> u64 {
    (mbps * BPS_PER_MBPS).round().max(0.0) as u64
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
