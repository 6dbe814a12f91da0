//! `[[notify]]`: where notifications go (ntfy, Gotify, Discord, Apprise, any webhook) and
//! which events each target wants. What is sent, and when, is in `src/adapters/notify.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use secrecy::SecretString;
use serde::Deserialize;

use super::{ConfigError, Secret, invalid, resolve};

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

/// One `[[notify]]` target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyTarget {
    /// `ntfy`, `gotify`, `discord`, `apprise` or `webhook`.
    pub kind: NotifyKind,
    /// Its name in logs and for `notify --test --target` (default: the kind).
    #[serde(default)]
    pub name: Option<String>,
    /// The server (ntfy, Gotify, Apprise) or the webhook's URL (Discord, webhook); a secret
    /// for the last two, so never shown.
    #[serde(default)]
    pub url: Option<Secret>,
    /// A file holding `url`.
    #[serde(default)]
    pub url_file: Option<RelativePathBuf>,
    /// ntfy: the topic (a secret: whoever knows it reads the messages).
    #[serde(default)]
    pub topic: Option<Secret>,
    /// A file holding `topic`.
    #[serde(default)]
    pub topic_file: Option<RelativePathBuf>,
    /// ntfy: an access token (`Authorization: Bearer`); Gotify: the application token.
    #[serde(default)]
    pub token: Option<Secret>,
    /// A file holding `token`.
    #[serde(default)]
    pub token_file: Option<RelativePathBuf>,
    /// ntfy: basic-auth user name (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// ntfy: basic-auth password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding `password`.
    #[serde(default)]
    pub password_file: Option<RelativePathBuf>,
    /// Apprise: the key of a stored configuration (`POST {url}/notify/{key}`).
    #[serde(default)]
    pub key: Option<String>,
    /// Apprise: the service URLs to notify (stateless; secrets).
    #[serde(default)]
    pub urls: Vec<SecretString>,
    /// webhook: extra headers (secrets: an `Authorization`, a Home Assistant token).
    #[serde(default)]
    pub headers: BTreeMap<String, SecretString>,
    /// Which events it gets (default: every warning, not `started` and `stopped`).
    #[serde(default)]
    pub events: Option<Vec<EventKind>>,
    /// Upper bound for one request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl NotifyTarget {
    /// Its name: `name`, else the kind.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| self.kind.as_str().to_string())
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

    /// The URL (from `url`, or `url_file` read at load).
    pub fn url(&self) -> Result<Option<&SecretString>, ConfigError> {
        self.url.as_ref().map(Secret::get).transpose()
    }
    /// The ntfy topic.
    pub fn topic(&self) -> Result<Option<&SecretString>, ConfigError> {
        self.topic.as_ref().map(Secret::get).transpose()
    }
    /// The token.
    pub fn token(&self) -> Result<Option<&SecretString>, ConfigError> {
        self.token.as_ref().map(Secret::get).transpose()
    }
    /// The basic-auth password.
    pub fn password(&self) -> Result<Option<&SecretString>, ConfigError> {
        self.password.as_ref().map(Secret::get).transpose()
    }

    /// Read the secrets' files; a URL read from `url_file` must be one, as an inline one.
    /// `n`: the target's place (from 1), for messages.
    pub(super) fn resolve_secrets(&mut self, n: usize) -> Result<(), ConfigError> {
        let from_file = self.url.is_none();
        resolve(&mut self.url, &self.url_file, "notify.url_file")?;
        resolve(&mut self.topic, &self.topic_file, "notify.topic_file")?;
        resolve(&mut self.token, &self.token_file, "notify.token_file")?;
        resolve(
            &mut self.password,
            &self.password_file,
            "notify.password_file",
        )?;
        match &self.url {
            Some(u) if from_file => self.check_url(n, u.inline()),
            _ => Ok(()),
        }
    }

    /// An http(s) URL, never quoted (a Discord webhook URL is a secret); `None` (a file that
    /// could not be read) passes.
    fn check_url(&self, n: usize, url: Option<&str>) -> Result<(), ConfigError> {
        match url.map(url::Url::parse) {
            None | Some(Ok(_)) if url.is_none() => Ok(()),
            Some(Ok(p)) if p.scheme() == "http" || p.scheme() == "https" => Ok(()),
            _ => Err(invalid(
                "notify",
                format!(
                    "target {n} ({}): url is not an http(s) URL (not shown: it may be a secret)",
                    self.kind.as_str()
                ),
            )),
        }
    }

    /// What the kind needs is there, nothing of another kind is, and the URL is one.
    pub(super) fn validate(&self, n: usize) -> Result<(), ConfigError> {
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
        // A url_file's URL is checked once the file is read.
        if let Some(u) = &self.url {
            self.check_url(n, u.inline())?;
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

/// Validate every target; names must differ.
pub(super) fn validate_all(targets: &[NotifyTarget]) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    for (i, t) in targets.iter().enumerate() {
        t.validate(i + 1)?;
        if !names.insert(t.display_name()) {
            return Err(invalid(
                "notify",
                format!(
                    "two targets are named \"{}\": give each a name",
                    t.display_name()
                ),
            ));
        }
    }
    Ok(())
}
