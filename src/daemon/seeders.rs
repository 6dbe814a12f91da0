//! The torrent clients' task: reads each `[[downloader]]` every `bandwidth.downloaders.interval`
//! (its limit, the mode in force, what it uploads), and gives them together the limit of the
//! engine's last plan (`Plan::downloaders`), split by what each sends now
//! (`src/adapters/downloader/split.rs`).
//!
//! * A new limit from the engine is applied at once (a lowering within the burst of the rate
//!   limit, whatever else is going on): a torrent client's limit bites within a second, so
//!   the streams come first without waiting for a read.
//! * Writes go through `src/throttle.rs` (the ledger first), governed: a change under
//!   `step_mbps` or `bandwidth.hysteresis_percent` of the limit is not written unless it
//!   lowers a client that sends more than its new limit, and at most one write per
//!   `write_every` per client after a burst of 4.
//! * A client that is down, refuses the login or answers garbage is said so (log once, the
//!   page, metrics, a notification) and read again with backoff: 1 s doubling to 5 min, and
//!   never less than 30 s after a refused login (qBittorrent bans an address after a few).
//!   Jellyfin's limits are managed meanwhile as ever.
//! * While the owner pauses the daemon ([`Seeding::Release`]) every client's originals are
//!   put back once and nothing is written until the next limit.
//! * At the stop nothing is dropped half-way: the write in flight is answered or times out;
//!   the restoring shutdown (`src/daemon/mod.rs`) then puts every original back.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::adapters::downloader::split::{split, worth_writing};
use crate::adapters::downloader::{Downloader, Mode, Reading, describe};
use crate::adapters::ledger::LedgerHandle;
use crate::adapters::notify::conditions::Observation;
use crate::config::Settings;
use crate::metrics::Metrics;

/// One client as the page and `/api/state` show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DownloaderView {
    /// Its name (`downloader.name`, or its kind).
    pub name: String,
    /// `qbittorrent` or `transmission`.
    pub kind: &'static str,
    /// Where it is (no credentials).
    pub url: String,
    /// Its last read succeeded.
    pub up: bool,
    /// The limit in force, bits/s; `None`: unlimited (or not read yet).
    pub limit_bps: Option<u64>,
    /// What it uploads, bits/s.
    pub rate_bps: Option<u64>,
    /// `normal` or `alternative` limits in force.
    pub mode: Option<Mode>,
    /// Its part of the clients' combined limit, bits/s.
    pub target_bps: Option<u64>,
    /// The last failure, while it fails.
    pub last_error: Option<String>,
}

/// What the engine's last plan asks of the torrent clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeding {
    /// Their combined limit, bits/s.
    Limit(u64),
    /// Their originals back (the owner paused the daemon).
    Release,
}

/// A client with what the task knows about it.
struct Seeder {
    name: String,
    client: Downloader,
    timeout: Duration,
    reading: Option<Reading>,
    failures: u32,
    next_read: Instant,
    last_error: Option<String>,
    limiter: DefaultDirectRateLimiter,
    target: Option<u64>,
}

/// Everything the task needs.
pub struct Seeders {
    pub settings: Arc<Settings>,
    pub ledger: LedgerHandle,
    /// The combined limit of the engine's last plan.
    pub limit: watch::Receiver<Option<Seeding>>,
    /// Where their upload goes (the meter's estimate of the rest of the house).
    pub rates: watch::Sender<u64>,
    /// Where the page's view goes.
    pub views: Arc<Mutex<Vec<DownloaderView>>>,
    pub metrics: Arc<Metrics>,
    pub notifier: crate::adapters::notify::Notifier,
    pub dry_run: bool,
}

/// The longest wait before a failing client is read again.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The shortest wait after a refused login.
const LOGIN_BACKOFF: Duration = Duration::from_secs(30);

impl Seeders {
    /// Start the task, or `None` without `[[downloader]]`.
    pub fn spawn(
        self,
        shutdown: CancellationToken,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, crate::config::ConfigError> {
        if self.settings.downloader.is_empty() {
            return Ok(None);
        }
        let policy = &self.settings.bandwidth.downloaders;
        let mut clients = Vec::new();
        for (d, name) in self
            .settings
            .downloader
            .iter()
            .zip(crate::config::downloader_names(&self.settings.downloader))
        {
            let quota = Quota::with_period(policy.write_every.max(Duration::from_millis(1)))
                .expect("a period above zero")
                .allow_burst(NonZeroU32::new(4).expect("4"));
            clients.push(Seeder {
                name,
                client: Downloader::new(d)?,
                timeout: d.timeout,
                reading: None,
                failures: 0,
                next_read: Instant::now(),
                last_error: None,
                limiter: RateLimiter::direct(quota),
                target: None,
            });
        }
        Ok(Some(tokio::spawn(self.run(clients, shutdown))))
    }

    async fn run(mut self, mut clients: Vec<Seeder>, shutdown: CancellationToken) {
        let interval = self.settings.bandwidth.downloaders.interval;
        for c in &clients {
            info!(downloader = %c.name, url = c.client.url(), "managing the upload limit of {}", c.client.kind().as_str());
        }
        loop {
            let next = clients
                .iter()
                .map(|c| c.next_read)
                .min()
                .unwrap_or_else(|| Instant::now() + interval);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                changed = self.limit.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(next) => {
                    for c in clients.iter_mut().filter(|c| c.next_read <= Instant::now()) {
                        tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => break,
                            () = self.read(c, interval) => {}
                        }
                    }
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
            let wanted = *self.limit.borrow_and_update();
            match wanted {
                Some(Seeding::Limit(limit)) => self.apply(&mut clients, limit, &shutdown).await,
                Some(Seeding::Release) if !self.dry_run => {
                    self.release(&mut clients, &shutdown).await;
                }
                _ => {}
            }
            self.publish(&clients);
        }
        self.publish(&clients);
    }

    /// Read one client; note hand changes and failures.
    async fn read(&self, c: &mut Seeder, interval: Duration) {
        match c.client.read().await {
            Ok(r) => {
                if c.last_error.take().is_some() || c.reading.is_none() {
                    info!(downloader = %c.name, limit = %fmt_limit(r.limit_bps), mode = ?r.mode, "read the torrent client");
                }
                self.notifier.observe(Observation::Downloader {
                    name: c.name.clone(),
                    error: None,
                });
                let hand = if self.dry_run {
                    Vec::new() // a dry run never writes the state file
                } else {
                    crate::throttle::observe(&self.ledger, &c.name, &r.values)
                };
                for h in hand {
                    info!(
                        downloader = %c.name,
                        "{} was set by hand to {} (was {}): it is the original now",
                        h.field,
                        describe(h.field, h.new_original),
                        describe(h.field, h.old_original)
                    );
                }
                c.reading = Some(r);
                c.failures = 0;
                c.next_read = Instant::now() + interval;
            }
            Err(e) => self.failed(c, e.to_string(), e.is_login(), interval),
        }
    }

    fn failed(&self, c: &mut Seeder, error: String, login: bool, interval: Duration) {
        c.failures += 1;
        if c.last_error.as_deref() != Some(error.as_str()) {
            warn!(downloader = %c.name, "{error}");
        }
        self.notifier.observe(Observation::Downloader {
            name: c.name.clone(),
            error: Some(error.clone()),
        });
        c.last_error = Some(error);
        let mut wait = crate::clock::backoff(c.failures, Duration::from_secs(1), MAX_BACKOFF, true)
            .max(interval.min(MAX_BACKOFF));
        if login {
            wait = wait.max(LOGIN_BACKOFF);
        }
        // What it read before may no longer hold (restarted, settings changed).
        c.reading = None;
        c.next_read = Instant::now() + wait;
    }

    /// Put back the originals of every client that still has some in the ledger (once: a
    /// client released holds none).
    async fn release(&self, clients: &mut [Seeder], shutdown: &CancellationToken) {
        for c in clients.iter_mut() {
            let name = c.name.clone();
            if !crate::throttle::holds(&self.ledger, &name) {
                c.target = None;
                continue;
            }
            let deadline = Instant::now() + c.timeout * 2;
            let restored = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                r = crate::throttle::restore(&mut c.client, &self.ledger, &name, c.timeout, deadline) => r,
            };
            match restored {
                crate::throttle::Restored::Done(written) => {
                    info!(downloader = %name, settings = written.len(), "paused: the originals are back");
                    c.target = None;
                    c.reading = None;
                    c.next_read = Instant::now();
                }
                crate::throttle::Restored::Failed(e) => {
                    self.failed(c, e, false, self.settings.bandwidth.downloaders.interval);
                }
            }
        }
    }

    /// Give the clients their parts of `limit`.
    async fn apply(&self, clients: &mut [Seeder], limit: u64, shutdown: &CancellationToken) {
        let step = self.settings.bandwidth.downloaders.step_bps();
        let interval = self.settings.bandwidth.downloaders.interval;
        let up: Vec<usize> = (0..clients.len())
            .filter(|&i| clients[i].reading.is_some())
            .collect();
        let inputs: Vec<(u64, Option<u64>)> = up
            .iter()
            .map(|&i| {
                let r = clients[i].reading.as_ref().expect("read");
                (r.rate_bps, r.limit_bps)
            })
            .collect();
        for (&i, part) in up.iter().zip(split(limit, &inputs)) {
            let c = &mut clients[i];
            let Some(r) = c.reading.clone() else { continue };
            let wanted = r.rounded(part);
            c.target = Some(wanted);
            let hysteresis = self.settings.bandwidth.hysteresis_percent;
            if self.dry_run || !worth_writing(r.limit_bps, wanted, r.rate_bps, step, hysteresis) {
                continue;
            }
            let lowering = r.limit_bps.is_none_or(|l| wanted < l);
            if c.limiter.check().is_err() {
                if !lowering {
                    continue; // the next read tries again
                }
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    () = c.limiter.until_ready() => {}
                }
            }
            match crate::throttle::apply(
                &mut c.client,
                &self.ledger,
                &c.name,
                &r,
                wanted,
                c.timeout,
            )
            .await
            {
                Ok(sent) if !sent.is_empty() => {
                    self.metrics.downloader_writes.inc();
                    info!(
                        downloader = %c.name,
                        "upload limit {} -> {}",
                        fmt_limit(r.limit_bps),
                        crate::core::rate::fmt_mbps(wanted)
                    );
                    let mut r = r;
                    for (f, v) in sent {
                        if let Some(slot) = r.values.iter_mut().find(|(g, _)| *g == f) {
                            slot.1 = v;
                        }
                    }
                    r.limit_bps = Some(wanted);
                    c.reading = Some(r);
                }
                Ok(_) => {}
                Err(e) => {
                    self.metrics.downloader_write_failures.inc();
                    self.failed(
                        c,
                        format!("cannot set the upload limit: {e}"),
                        false,
                        interval,
                    );
                }
            }
        }
    }

    fn publish(&self, clients: &[Seeder]) {
        let total: u64 = clients
            .iter()
            .filter_map(|c| c.reading.as_ref().map(|r| r.rate_bps))
            .sum();
        self.rates.send_replace(total);
        let views: Vec<DownloaderView> = clients
            .iter()
            .map(|c| DownloaderView {
                name: c.name.clone(),
                kind: c.client.kind().as_str(),
                url: c.client.url().to_string(),
                up: c.reading.is_some(),
                limit_bps: c.reading.as_ref().and_then(|r| r.limit_bps),
                rate_bps: c.reading.as_ref().map(|r| r.rate_bps),
                mode: c.reading.as_ref().map(|r| r.mode),
                target_bps: c.target,
                last_error: c.last_error.clone(),
            })
            .collect();
        for v in &views {
            self.metrics
                .record_downloader(&v.name, v.up, v.limit_bps, v.rate_bps, v.target_bps);
        }
        *crate::sync::lock(&self.views) = views;
    }
}

fn fmt_limit(limit: Option<u64>) -> String {
    limit.map_or("unlimited".into(), crate::core::rate::fmt_mbps)
}
