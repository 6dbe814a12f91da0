//! `[daemon]` (the listener, webhooks, pushes, shutdown) and `[state]` (the ledger's file),
//! and the [`Mode`] the daemon runs in.

use std::path::PathBuf;
use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use secrecy::SecretString;
use serde::Deserialize;

use super::{ConfigError, MIN_TOKEN_LEN, Secret, invalid, resolve_token};

/// `[state]`: where the ledger lives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// The ledger of original limits. Its directory must exist and be writable.
    #[serde(default = "default_state_file")]
    pub file: PathBuf,
}

pub(super) fn default_state_file() -> PathBuf {
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
    /// `Authorization: Bearer`). Required unless `listen` is a loopback address. Given inline,
    /// or read from `webhook_token_file` at load.
    #[serde(default)]
    pub webhook_token: Option<Secret>,
    /// A file holding the webhook secret (alternative to `webhook_token`); relative to the
    /// configuration file's directory.
    #[serde(default)]
    pub webhook_token_file: Option<RelativePathBuf>,
    /// The secret for the status page, `/api/*` and `/metrics` when `listen` is not loopback
    /// (as `Authorization: Bearer`, or through the page's sign-in form). Default: the webhook
    /// secret. Given inline, or read from `status_token_file` at load.
    #[serde(default)]
    pub status_token: Option<Secret>,
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

pub(super) fn default_notify_cooldown() -> Duration {
    Duration::from_secs(30 * 60)
}

pub(super) fn default_notify_after() -> Duration {
    Duration::from_secs(10 * 60)
}

pub(super) fn default_listen() -> std::net::SocketAddr {
    ([127, 0, 0, 1], 8098).into()
}

pub(super) fn default_debounce() -> Duration {
    Duration::from_millis(300)
}

pub(super) fn default_writes_per_second() -> u32 {
    5
}

pub(super) fn default_true() -> bool {
    true
}

pub(super) fn default_push_cooldown() -> Duration {
    Duration::from_secs(600)
}

pub(super) fn default_push_threshold() -> f64 {
    25.0
}

pub(super) fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}

pub(super) fn default_unhealthy_after() -> Duration {
    Duration::from_secs(600)
}

pub(super) fn default_max_body() -> usize {
    64 * 1024
}

pub(super) fn default_http_header_timeout() -> Duration {
    Duration::from_secs(10)
}

pub(super) fn default_http_request_timeout() -> Duration {
    Duration::from_secs(30)
}

pub(super) fn default_http_max_connections() -> usize {
    256
}

pub(super) fn default_http_drain() -> Duration {
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
    /// The secrets and the listener: see [`DaemonSettings::check_secrets`] and
    /// [`DaemonSettings::check_listener`].
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.check_secrets()?;
        self.check_listener()
    }

    /// An inline secret is long enough, and a secret is set where the listener is reachable
    /// from elsewhere. (That a secret is given one way only is checked before, with where each
    /// way came from: `one_of_each_pair` in `src/config/errors.rs`.)
    fn check_secrets(&self) -> Result<(), ConfigError> {
        let d = self;
        for (key, token) in [
            ("daemon.webhook_token", &d.webhook_token),
            ("daemon.status_token", &d.status_token),
        ] {
            if token
                .as_ref()
                .and_then(Secret::inline)
                .is_some_and(|t| t.trim().len() < MIN_TOKEN_LEN)
            {
                return Err(invalid(
                    key,
                    "must be at least 16 characters (e.g. `openssl rand -hex 16`)",
                ));
            }
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
        Ok(())
    }

    /// The host names, the timings and the limits of the listener and of the writes.
    fn check_listener(&self) -> Result<(), ConfigError> {
        let d = self;
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
        Ok(())
    }

    /// The reconciliation interval in force for the mode.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval.unwrap_or(match self.mode {
            Mode::Webhook => Duration::from_secs(300),
            Mode::ReconcileOnly => Duration::from_secs(30),
        })
    }

    /// Read the token files, each at least [`MIN_TOKEN_LEN`] characters.
    pub(super) fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        resolve_token(
            &mut self.webhook_token,
            &self.webhook_token_file,
            "daemon.webhook_token_file",
        )?;
        resolve_token(
            &mut self.status_token,
            &self.status_token_file,
            "daemon.status_token_file",
        )
    }

    /// The webhook secret (from `webhook_token`, or its file read at load), if any.
    pub fn webhook_token(&self) -> Result<Option<&SecretString>, ConfigError> {
        self.webhook_token.as_ref().map(Secret::get).transpose()
    }

    /// The secret for the read-only endpoints: `status_token` (or its file), else the webhook
    /// secret.
    pub fn status_token(&self) -> Result<Option<&SecretString>, ConfigError> {
        match &self.status_token {
            Some(t) => t.get().map(Some),
            None => self.webhook_token(),
        }
    }

    /// Whether the read-only endpoints need the status secret: off loopback, unless
    /// `public_status`.
    pub fn status_protected(&self) -> bool {
        !self.listen.ip().is_loopback() && !self.public_status
    }
}
