//! The other media servers' task: gives each `[[server]]` with `manage_wan_total` the total
//! upload limit of the engine's last plan (`Plan::servers`: Plex's share as one claimant,
//! `src/core/plan/servers.rs`), as Plex's `WanTotalMaxUploadRate` (kbit/s).
//!
//! * Reads `/:/prefs` every `server.interval`, and before a write when the last read is
//!   older than that: a value neither the original nor ours was set by hand in Plex and
//!   becomes the original (`src/throttle.rs`).
//! * Writes go through `src/throttle.rs` (the original in the state file first), governed as
//!   the torrent clients' are (`src/adapters/downloader/split.rs`): a change under
//!   `bandwidth.downloaders.step_mbps` or `bandwidth.hysteresis_percent` of the limit in
//!   force is not written, and at most one write per `bandwidth.downloaders.write_every` per
//!   server after a burst of 4 (a lowering waits for the limiter; a raise is dropped and
//!   tried at the next plan).
//! * A server that does not answer is said so (log once, the page) and read again with
//!   backoff, 1 s doubling to 5 min; the others are managed meanwhile.
//! * While the owner pauses the daemon ([`ServerLimits::Release`]) every original is put
//!   back once; at the stop the restoring shutdown (`src/daemon/mod.rs`) puts them back.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::adapters::downloader::split::worth_writing;
use crate::adapters::ledger::LedgerHandle;
use crate::adapters::plex::{Plex, WAN_TOTAL};
use crate::config::Settings;

/// What the engine's last plan asks of the managed servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLimits {
    /// Each server's total limit, bits/s, by name (a server the plan left out, not read
    /// lately, keeps what it has).
    Limits(Vec<(String, u64)>),
    /// Their originals back (the owner paused the daemon).
    Release,
}

/// One managed server as the page and `/api/state` show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerLimitView {
    /// Its name.
    pub name: String,
    /// Its total upload limit outside the house in force, bits/s; `None`: none (or not read
    /// yet).
    pub limit_bps: Option<u64>,
    /// What the last plan gave it, bits/s.
    pub target_bps: Option<u64>,
    /// The last failure, while it fails.
    pub last_error: Option<String>,
}

struct Managed {
    name: String,
    plex: Plex,
    timeout: Duration,
    interval: Duration,
    /// `WanTotalMaxUploadRate` as last read or written, kbit/s.
    kbps: Option<i64>,
    read_at: Option<Instant>,
    failures: u32,
    next_read: Instant,
    last_error: Option<String>,
    limiter: DefaultDirectRateLimiter,
    target: Option<u64>,
}

/// Everything the task needs.
pub struct Servers {
    pub settings: Arc<Settings>,
    pub ledger: LedgerHandle,
    /// The limits of the engine's last plan.
    pub limits: watch::Receiver<Option<ServerLimits>>,
    /// Where the page's view goes.
    pub views: Arc<Mutex<Vec<ServerLimitView>>>,
    pub dry_run: bool,
}

/// The longest wait before a failing server is read again.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Servers {
    /// Start the task, or `None` without a `[[server]]` whose total is managed.
    pub fn spawn(
        self,
        shutdown: CancellationToken,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, crate::config::ConfigError> {
        let every = self
            .settings
            .bandwidth
            .downloaders
            .write_every
            .max(Duration::from_millis(1));
        let mut managed = Vec::new();
        for (s, name) in self
            .settings
            .server
            .iter()
            .zip(crate::config::server_names(&self.settings.server))
            .filter(|(s, _)| s.manages_wan_total())
        {
            let quota = Quota::with_period(every)
                .expect("a period above zero")
                .allow_burst(NonZeroU32::new(4).expect("4"));
            managed.push(Managed {
                name,
                plex: Plex::new(s)?,
                timeout: s.timeout,
                interval: s.interval,
                kbps: None,
                read_at: None,
                failures: 0,
                next_read: Instant::now(),
                last_error: None,
                limiter: RateLimiter::direct(quota),
                target: None,
            });
        }
        if managed.is_empty() {
            return Ok(None);
        }
        Ok(Some(tokio::spawn(self.run(managed, shutdown))))
    }

    async fn run(mut self, mut managed: Vec<Managed>, shutdown: CancellationToken) {
        for m in &managed {
            info!(server = %m.name, url = m.plex.url(), "managing the server's total upload limit");
        }
        loop {
            let next = managed
                .iter()
                .map(|m| m.next_read)
                .min()
                .unwrap_or_else(|| Instant::now() + MAX_BACKOFF);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                changed = self.limits.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(next) => {
                    for m in managed.iter_mut().filter(|m| m.next_read <= Instant::now()) {
                        tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => break,
                            () = self.read(m) => {}
                        }
                    }
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
            let wanted = self.limits.borrow_and_update().clone();
            match wanted {
                Some(ServerLimits::Limits(limits)) => {
                    for (name, limit) in limits {
                        if let Some(m) = managed.iter_mut().find(|m| m.name == name) {
                            tokio::select! {
                                biased;
                                _ = shutdown.cancelled() => break,
                                () = self.apply(m, limit) => {}
                            }
                        }
                    }
                }
                Some(ServerLimits::Release) if !self.dry_run => {
                    for m in managed.iter_mut() {
                        tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => break,
                            () = self.release(m) => {}
                        }
                    }
                }
                _ => {}
            }
            self.publish(&managed);
        }
        self.publish(&managed);
    }

    /// Read one server's total; note a hand change and failures.
    async fn read(&self, m: &mut Managed) {
        let read = tokio::time::timeout(m.timeout.saturating_mul(3), m.plex.wan_total_kbps())
            .await
            .unwrap_or_else(|_| Err(format!("Plex at {}: no answer in time", m.plex.url())));
        match read {
            Ok(kbps) => {
                if m.last_error.take().is_some() || m.kbps.is_none() {
                    info!(server = %m.name, limit = %crate::throttle::describe(WAN_TOTAL, kbps), "read the server's total upload limit");
                }
                if !self.dry_run {
                    for h in crate::throttle::observe(&self.ledger, &m.name, &[(WAN_TOTAL, kbps)]) {
                        info!(
                            server = %m.name,
                            "{WAN_TOTAL} was set by hand to {} (was {}): it is the original now",
                            crate::throttle::describe(WAN_TOTAL, h.new_original),
                            crate::throttle::describe(WAN_TOTAL, h.old_original)
                        );
                    }
                }
                m.kbps = Some(kbps);
                m.read_at = Some(Instant::now());
                m.failures = 0;
                m.next_read = Instant::now() + m.interval;
            }
            Err(e) => self.failed(m, e),
        }
    }

    fn failed(&self, m: &mut Managed, error: String) {
        m.failures += 1;
        if m.last_error.as_deref() != Some(error.as_str()) {
            warn!(server = %m.name, "{error}");
        }
        m.last_error = Some(error);
        m.kbps = None;
        m.next_read = Instant::now()
            + crate::clock::backoff(m.failures, Duration::from_secs(1), MAX_BACKOFF, true)
                .max(m.interval.min(MAX_BACKOFF));
    }

    /// Give one server its limit.
    async fn apply(&self, m: &mut Managed, limit: u64) {
        let wanted = crate::adapters::plex::wan_total_kbps(limit);
        m.target = Some(wanted as u64 * 1000);
        if self.dry_run {
            return;
        }
        if m.read_at.is_none_or(|at| at.elapsed() >= m.interval) {
            self.read(m).await;
        }
        let Some(current) = m.kbps else { return };
        let in_force = (current > 0).then(|| current as u64 * 1000);
        let step = self.settings.bandwidth.downloaders.step_bps();
        let hysteresis = self.settings.bandwidth.hysteresis_percent;
        // What Plex streams is the plan's to weigh: only the size of the move counts here.
        if !worth_writing(in_force, wanted as u64 * 1000, 0, step, hysteresis) {
            return;
        }
        let lowering = current <= 0 || wanted < current;
        if m.limiter.check().is_err() {
            if !lowering {
                return; // the next plan tries again
            }
            m.limiter.until_ready().await;
        }
        let values = [(WAN_TOTAL, current)];
        match crate::throttle::set(
            &mut m.plex,
            &self.ledger,
            &m.name,
            &values,
            (WAN_TOTAL, wanted),
            m.timeout,
        )
        .await
        {
            Ok(true) => {
                info!(
                    server = %m.name,
                    "total upload limit {} -> {}",
                    crate::throttle::describe(WAN_TOTAL, current),
                    crate::throttle::describe(WAN_TOTAL, wanted)
                );
                m.kbps = Some(wanted);
            }
            Ok(false) => {}
            Err(e) => self.failed(m, format!("cannot set {WAN_TOTAL}: {e}")),
        }
    }

    /// Put one server's original back, when the ledger holds one.
    async fn release(&self, m: &mut Managed) {
        m.target = None;
        if !crate::throttle::holds(&self.ledger, &m.name) {
            return;
        }
        let deadline = Instant::now() + m.timeout * 2;
        match crate::throttle::restore(&mut m.plex, &self.ledger, &m.name, m.timeout, deadline)
            .await
        {
            crate::throttle::Restored::Done(_) => {
                info!(server = %m.name, "paused: the original total upload limit is back");
                m.kbps = None;
                m.next_read = Instant::now();
            }
            crate::throttle::Restored::Failed(e) => self.failed(m, e),
        }
    }

    fn publish(&self, managed: &[Managed]) {
        *crate::sync::lock(&self.views) = managed
            .iter()
            .map(|m| ServerLimitView {
                name: m.name.clone(),
                limit_bps: m.kbps.filter(|k| *k > 0).map(|k| k as u64 * 1000),
                target_bps: m.target,
                last_error: m.last_error.clone(),
            })
            .collect();
    }
}
