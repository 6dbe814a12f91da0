//! The other media servers the feed reads (`[[server]]`, Plex so far): each on its own
//! interval, with backoff while it does not answer, its last reading kept for
//! [`SERVER_STALE_AFTER`] and then counted as nothing.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::Settings;
use crate::core::rate::fmt_mbps;

use super::ServerView;

/// What the other media servers stream outside the house now, read once each (a one-shot
/// command's view of what the daemon's feed keeps reading): the total, bits/s, and a note
/// per server ("plex streams 20 Mbps outside the house", or why it could not be read, when it
/// counts for nothing).
pub async fn servers_streaming_once(settings: &Settings) -> (u64, Vec<String>) {
    let mut total = 0;
    let mut notes = Vec::new();
    for (s, name) in settings
        .server
        .iter()
        .zip(crate::config::server_names(&settings.server))
        .filter(|(s, _)| s.is_plex())
    {
        let read = match crate::adapters::plex::Plex::new(s) {
            Ok(p) => tokio::time::timeout(s.timeout.saturating_mul(3), p.remote_streams())
                .await
                .unwrap_or_else(|_| Err("no answer in time".into())),
            Err(e) => Err(e.to_string()),
        };
        match read {
            Ok(streams) => {
                let bps = crate::adapters::plex::remote_bps(&streams);
                total += bps;
                notes.push(format!(
                    "{name} streams {} outside the house",
                    fmt_mbps(bps)
                ));
            }
            Err(e) => {
                warn!(server = %name, "cannot read the server: {e}");
                notes.push(format!("{name} not read, counted as nothing: {e}"));
            }
        }
    }
    (total, notes)
}

/// An other media server and its last reading.
pub(super) struct Server {
    pub(super) name: String,
    pub(super) plex: crate::adapters::plex::Plex,
    /// Its total limit is one claimant's share (`manage_wan_total`), not taken off the budget.
    pub(super) managed: bool,
    pub(super) interval: Duration,
    pub(super) read_timeout: Duration,
    pub(super) next_read: Instant,
    /// When it was last asked.
    pub(super) last_attempt: Option<Instant>,
    pub(super) failures: u32,
    /// When it last answered.
    pub(super) last_ok: Option<Instant>,
    /// Its remote streams at the last successful read: how many, and what they carry.
    pub(super) reading: Option<(usize, u64)>,
    pub(super) last_error: Option<String>,
}

/// How long a server that does not answer keeps counting with its last reading (its streams
/// likely play on); after that it counts for nothing.
pub const SERVER_STALE_AFTER: Duration = Duration::from_secs(300);

/// The least time between two reads of a server asked for by webhooks.
pub(super) const SERVER_MIN_GAP: Duration = Duration::from_secs(1);

/// The longest wait before a failing server is read again.
pub(super) const SERVER_MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Server {
    /// What it counts for now, bits/s.
    pub(super) fn counted_bps(&self) -> u64 {
        match (self.reading, self.last_ok) {
            (Some((_, bps)), Some(at)) if at.elapsed() <= SERVER_STALE_AFTER => bps,
            _ => 0,
        }
    }

    pub(super) fn view(&self, meter: bool) -> ServerView {
        ServerView {
            name: self.name.clone(),
            kind: crate::config::ServerKind::Plex.as_str(),
            url: crate::config::redact_userinfo(self.plex.url()),
            up: self.failures == 0 && self.last_ok.is_some(),
            remote_streams: self.reading.map(|(n, _)| n),
            remote_bps: self.reading.map(|(_, b)| b),
            counted: !meter && !self.managed,
            managed: self.managed,
            last_error: self.last_error.clone(),
        }
    }

    /// Read it once (bounded by three of its timeouts); whether what it counts for changed.
    pub(super) async fn read(&mut self) -> bool {
        let before = self.counted_bps();
        self.last_attempt = Some(Instant::now());
        let read = tokio::time::timeout(self.read_timeout, self.plex.remote_streams())
            .await
            .unwrap_or_else(|_| Err(format!("Plex at {}: no answer in time", self.plex.url())));
        match read {
            Ok(streams) => {
                if self.failures > 0 {
                    info!(server = %self.name, "the server answers again");
                }
                self.failures = 0;
                self.last_error = None;
                self.last_ok = Some(Instant::now());
                self.reading = Some((streams.len(), crate::adapters::plex::remote_bps(&streams)));
                self.next_read = Instant::now() + self.interval;
            }
            Err(e) => {
                if self.failures == 0 {
                    warn!(server = %self.name, "cannot read the server: {e}");
                }
                self.failures += 1;
                self.last_error = Some(e);
                let backoff = Duration::from_secs(1u64 << self.failures.min(9))
                    .min(SERVER_MAX_BACKOFF)
                    .max(self.interval);
                self.next_read = Instant::now() + backoff;
            }
        }
        self.counted_bps() != before || self.failures <= 1
    }
}
