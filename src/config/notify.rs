//! `[[notify]]`: where notifications go (ntfy, Gotify, Discord, Apprise, any webhook) and
//! which events each target wants. What is sent, and when, is in `src/adapters/notify.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{ConfigError, Secret, invalid, take};

/// Which service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// ntfy: `POST {url}/` with JSON `topic`, `title`, `message`, `priority`, `tags`.
    Ntfy,
    /// Gotify: `POST {url}/message` with `X-Gotify-Key`.
    Gotify,
    /// A Discord webhook URL: an embed.
    Discord,
    /// An Apprise API server: `POST {url}/notify/` (with `urls`) or `/notify/{key}`.
    Apprise,
    /// Any URL: JSON `{event, severity, title, message, time, data}`.
    Webhook,
}

impl NotifyKind {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Ntfy => "ntfy",
            NotifyKind::Gotify => "gotify",
            NotifyKind::Discord => "discord",
            NotifyKind::Apprise => "apprise",
            NotifyKind::Webhook => "webhook",
        }
    }
}

/// What happened, as targets subscribe to it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The floors of the remote streamers exceed the budget.
    Overload,
    /// Jellyfin cannot be read (down, or refusing the key) for longer than a threshold.
    JellyfinUnreachable,
    /// Policy writes keep failing for longer than a threshold.
    WritesFailing,
    /// A torrent client (`[[downloader]]`) cannot be read or set for longer than a threshold.
    DownloaderUnreachable,
    /// The history database cannot be written for longer than a threshold.
    HistoryFailing,
    /// An admin changed a managed user's limit by hand.
    LimitChangedByHand,
    /// A remote client plays above its limit.
    IgnoresLimits,
    /// The limits force more video transcodes than `[transcoding] capacity`.
    TranscodesBeyondCapacity,
    /// Originals could not be put back at shutdown.
    RestoreFailed,
    /// The daemon started (off by default).
    Started,
    /// The daemon stopped (off by default).
    Stopped,
    /// `jellydemon notify --test`.
    Test,
}

impl EventKind {
    /// As written in the configuration and sent in webhooks.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Overload => "overload",
            EventKind::JellyfinUnreachable => "jellyfin_unreachable",
            EventKind::WritesFailing => "writes_failing",
            EventKind::DownloaderUnreachable => "downloader_unreachable",
            EventKind::HistoryFailing => "history_failing",
            EventKind::LimitChangedByHand => "limit_changed_by_hand",
            EventKind::IgnoresLimits => "ignores_limits",
            EventKind::TranscodesBeyondCapacity => "transcodes_beyond_capacity",
            EventKind::RestoreFailed => "restore_failed",
            EventKind::Started => "started",
            EventKind::Stopped => "stopped",
            EventKind::Test => "test",
        }
    }

    /// What a target gets without `events`: every warning, not start and stop.
    pub const DEFAULT: [EventKind; 9] = [
        EventKind::Overload,
        EventKind::JellyfinUnreachable,
        EventKind::WritesFailing,
        EventKind::DownloaderUnreachable,
        EventKind::HistoryFailing,
        EventKind::LimitChangedByHand,
        EventKind::IgnoresLimits,
        EventKind::TranscodesBeyondCapacity,
        EventKind::RestoreFailed,
    ];
}

/// One `[[notify]]` target, parsed.
#[derive(Debug)]
pub struct NotifyTarget {
    /// Its name in logs and for `notify --test --target`: `name`, else the kind.
    pub name: String,
    /// The service, with what it needs.
    pub service: NotifyService,
    /// Which events it gets (`None`: every warning, not `started` and `stopped`).
    pub events: Option<Vec<EventKind>>,
    /// Upper bound for one request.
    pub timeout: Duration,
}

/// Where a target sends, with what each service needs (the `url` of each is the server for
/// ntfy, Gotify and Apprise, the webhook's own URL for Discord and webhook; a secret for the
/// last two, so never shown).
#[derive(Debug)]
pub enum NotifyService {
    /// ntfy.
    Ntfy {
        /// The server.
        url: Secret,
        /// The topic (a secret: whoever knows it reads the messages).
        topic: Secret,
        /// How it signs in.
        auth: NtfyAuth,
    },
    /// Gotify.
    Gotify {
        /// The server.
        url: Secret,
        /// The application's token.
        token: Secret,
    },
    /// A Discord webhook.
    Discord {
        /// The webhook's URL.
        url: Secret,
    },
    /// An Apprise API server.
    Apprise {
        /// The server.
        url: Secret,
        /// Whom it notifies.
        to: AppriseTo,
    },
    /// Any URL.
    Webhook {
        /// The URL.
        url: Secret,
        /// Extra headers (secrets: an `Authorization`, a Home Assistant token).
        headers: BTreeMap<String, SecretString>,
    },
}

/// How an ntfy target signs in.
#[derive(Debug)]
pub enum NtfyAuth {
    /// Not at all (a public topic).
    Anonymous,
    /// An access token, as `Authorization: Bearer` (used when `username` is set too).
    Token(Secret),
    /// Basic auth.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
}

/// Whom an Apprise target notifies.
#[derive(Debug)]
pub enum AppriseTo {
    /// A stored configuration (`POST {url}/notify/{key}`).
    Key(String),
    /// These service URLs (stateless; secrets).
    Urls(Vec<SecretString>),
}

impl NotifyTarget {
    /// Which service.
    pub fn kind(&self) -> NotifyKind {
        match self.service {
            NotifyService::Ntfy { .. } => NotifyKind::Ntfy,
            NotifyService::Gotify { .. } => NotifyKind::Gotify,
            NotifyService::Discord { .. } => NotifyKind::Discord,
            NotifyService::Apprise { .. } => NotifyKind::Apprise,
            NotifyService::Webhook { .. } => NotifyKind::Webhook,
        }
    }

    /// Its name.
    pub fn display_name(&self) -> &str {
        &self.name
    }

    /// Where it sends (from `url`, or `url_file` read at load).
    pub fn url(&self) -> Result<&SecretString, ConfigError> {
        match &self.service {
            NotifyService::Ntfy { url, .. }
            | NotifyService::Gotify { url, .. }
            | NotifyService::Discord { url }
            | NotifyService::Apprise { url, .. }
            | NotifyService::Webhook { url, .. } => url.get(),
        }
    }

    /// Whether it wants `event` (`test` always).
    pub fn wants(&self, event: EventKind) -> bool {
        event == EventKind::Test
            || match &self.events {
                Some(list) => list.contains(&event),
                None => EventKind::DEFAULT.contains(&event),
            }
    }

    /// The events it gets, in a fixed order (`test` aside).
    pub fn subscribed(&self) -> Vec<EventKind> {
        EventKind::DEFAULT
            .into_iter()
            .chain([EventKind::Started, EventKind::Stopped])
            .filter(|e| self.wants(*e))
            .collect()
    }
}

/// One `[[notify]]` table as the file gives it: the keys of every service, parsed by
/// [`NotifyFile::parse`] at load.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NotifyFile {
    kind: NotifyKind,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    url: Option<Secret>,
    #[serde(default)]
    url_file: Option<RelativePathBuf>,
    #[serde(default)]
    topic: Option<Secret>,
    #[serde(default)]
    topic_file: Option<RelativePathBuf>,
    #[serde(default)]
    token: Option<Secret>,
    #[serde(default)]
    token_file: Option<RelativePathBuf>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    password_file: Option<RelativePathBuf>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    urls: Vec<SecretString>,
    #[serde(default)]
    headers: BTreeMap<String, SecretString>,
    #[serde(default)]
    events: Option<Vec<EventKind>>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl NotifyFile {
    /// The target: what the kind needs is there, nothing of another kind is, each secret is
    /// given one way and read (once, here), and the URL is one. `n`: its place (from 1), for
    /// messages.
    pub(super) fn parse(mut self, n: usize) -> Result<NotifyTarget, ConfigError> {
        self.check(n)?;
        let kind = self.kind.as_str();
        let at = |what: String| invalid("notify", format!("target {n} ({kind}): {what}"));
        use NotifyKind::*;
        let name = self
            .name
            .take()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| kind.to_string());
        // An inline URL was checked with the rest; one from url_file is checked once read.
        let from_file = self.url.is_none();
        let url = take(&mut self.url, &self.url_file, "notify.url_file")?
            .ok_or_else(|| at("missing url".into()))?;
        if from_file {
            check_url(&url, &at)?;
        }
        let topic = take(&mut self.topic, &self.topic_file, "notify.topic_file")?;
        let token = take(&mut self.token, &self.token_file, "notify.token_file")?;
        let password = take(
            &mut self.password,
            &self.password_file,
            "notify.password_file",
        )?;
        let service = match self.kind {
            Ntfy => NotifyService::Ntfy {
                url,
                topic: topic.ok_or_else(|| at("missing topic".into()))?,
                auth: match (token, self.username, password) {
                    (Some(token), _, _) => NtfyAuth::Token(token),
                    (_, Some(username), Some(password)) => NtfyAuth::Basic { username, password },
                    _ => NtfyAuth::Anonymous,
                },
            },
            Gotify => NotifyService::Gotify {
                url,
                token: token.ok_or_else(|| at("missing token (the application's token)".into()))?,
            },
            Discord => NotifyService::Discord { url },
            Apprise => NotifyService::Apprise {
                url,
                to: match self.key {
                    Some(key) => AppriseTo::Key(key),
                    None => AppriseTo::Urls(self.urls),
                },
            },
            Webhook => NotifyService::Webhook {
                url,
                headers: self.headers,
            },
        };
        Ok(NotifyTarget {
            name,
            service,
            events: self.events,
            timeout: self.timeout,
        })
    }

    /// What the kind needs is given, once, nothing of another kind is, and an inline URL is
    /// one; `n` as in [`NotifyFile::parse`].
    fn check(&self, n: usize) -> Result<(), ConfigError> {
        let kind = self.kind.as_str();
        let at = |what: String| invalid("notify", format!("target {n} ({kind}): {what}"));
        let only = |present: bool, key: &str, kinds: &[NotifyKind]| {
            if present && !kinds.contains(&self.kind) {
                Err(at(format!("{key} is not a setting of kind = \"{kind}\"")))
            } else {
                Ok(())
            }
        };
        use NotifyKind::*;
        only(
            self.topic.is_some() || self.topic_file.is_some(),
            "topic",
            &[Ntfy],
        )?;
        only(
            self.token.is_some() || self.token_file.is_some(),
            "token",
            &[Ntfy, Gotify],
        )?;
        only(
            self.username.is_some() || self.password.is_some() || self.password_file.is_some(),
            "username/password",
            &[Ntfy],
        )?;
        only(
            self.key.is_some() || !self.urls.is_empty(),
            "key/urls",
            &[Apprise],
        )?;
        only(!self.headers.is_empty(), "headers", &[Webhook])?;
        for (a, b, what) in [
            (
                self.url.is_some(),
                self.url_file.is_some(),
                "url or url_file",
            ),
            (
                self.topic.is_some(),
                self.topic_file.is_some(),
                "topic or topic_file",
            ),
            (
                self.token.is_some(),
                self.token_file.is_some(),
                "token or token_file",
            ),
            (
                self.password.is_some(),
                self.password_file.is_some(),
                "password or password_file",
            ),
        ] {
            if a && b {
                return Err(at(format!("set either {what}, not both")));
            }
        }
        if self.url.is_none() && self.url_file.is_none() {
            return Err(at("missing url".into()));
        }
        // An inline url is checked now; one from url_file once the file is read.
        if let Some(u) = &self.url {
            check_url(u, &at)?;
        }
        match self.kind {
            Ntfy if self.topic.is_none() && self.topic_file.is_none() => {
                return Err(at("missing topic".into()));
            }
            Ntfy if self.username.is_some()
                != (self.password.is_some() || self.password_file.is_some()) =>
            {
                return Err(at("username and password go together".into()));
            }
            Gotify if self.token.is_none() && self.token_file.is_none() => {
                return Err(at("missing token (the application's token)".into()));
            }
            Apprise if self.key.is_none() == self.urls.is_empty() => {
                return Err(at(
                    "set either key (a stored configuration) or urls (the services), one of them"
                        .into(),
                ));
            }
            _ => {}
        }
        if self.timeout.is_zero() {
            return Err(at("timeout must be greater than 0".into()));
        }
        if self.events.as_ref().is_some_and(|e| e.is_empty()) {
            return Err(at(
                "events is empty: remove the target, or list what it wants".into(),
            ));
        }
        Ok(())
    }
}

/// An http(s) URL, never quoted (a Discord webhook URL is a secret); a file that could not be
/// read passes (whatever sends to it says why).
fn check_url(url: &Secret, at: &impl Fn(String) -> ConfigError) -> Result<(), ConfigError> {
    match url.get().map(|u| url::Url::parse(u.expose_secret())) {
        Err(_) => Ok(()),
        Ok(Ok(p)) if p.scheme() == "http" || p.scheme() == "https" => Ok(()),
        Ok(_) => Err(at(
            "url is not an http(s) URL (not shown: it may be a secret)".into(),
        )),
    }
}

/// Parse every target; names must differ.
pub(super) fn parse_all(files: Vec<NotifyFile>) -> Result<Vec<NotifyTarget>, ConfigError> {
    let mut names = std::collections::HashSet::new();
    let mut targets = Vec::with_capacity(files.len());
    for (i, f) in files.into_iter().enumerate() {
        let t = f.parse(i + 1)?;
        if !names.insert(t.name.clone()) {
            return Err(invalid(
                "notify",
                format!("two targets are named \"{}\": give each a name", t.name),
            ));
        }
        targets.push(t);
    }
    Ok(targets)
}
