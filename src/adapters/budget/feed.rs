//! The budget in force, as a watch channel the engine plans with: static, or fed by a task
//! that reads the meter every `bandwidth.meter.interval`, runs the estimator and publishes
//! each reading. The engine re-plans when the budget changes, and tells the task what
//! Jellyfin's remote streams carry (their rates × `demand.overhead`) after each plan.
//!
//! The other media servers (`[[server]]`, Plex so far) are read by the same task, each every
//! `server.interval`: what they stream outside the house is taken off the static budget
//! (Plex first, Jellyfin's streams share the rest). With a meter it is not taken off again:
//! the meter measures it as the rest of the house's upload. A server that does not answer
//! keeps its last reading for [`SERVER_STALE_AFTER`], then counts for nothing, and is read
//! again with backoff; Jellyfin is managed meanwhile as ever.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use jiff::Timestamp;

use super::estimate::{Change, Estimator, Reading, Sample};
use super::meter::Meter;
use super::schedule::Schedule;
use crate::config::{ConfigError, Settings, mbps_to_bps};
use crate::core::rate::fmt_mbps;
use crate::metrics::Metrics;

mod servers;
mod state;

use servers::{SERVER_MIN_GAP, Server};
pub use servers::{SERVER_STALE_AFTER, servers_streaming_once};
pub use state::{BudgetState, MeterView, ServerView};

/// The engine's side of the feed.
pub struct Feed {
    /// The budget in force; changes with every reading of a meter.
    pub state: watch::Receiver<BudgetState>,
    /// Where the engine puts Jellyfin's remote streams after each plan, bits/s.
    pub jellyfin: watch::Sender<u64>,
    /// Where the torrent clients' upload goes after each read of them, bits/s: with a meter,
    /// neither it nor the streams count as the rest of the house.
    pub downloaders: watch::Sender<u64>,
    /// Read the other media servers at once (a Plex webhook): at most once a second each,
    /// never during a failing server's backoff.
    pub read_servers: Arc<tokio::sync::Notify>,
    /// A fixed budget's sender, kept so that the channel stays open (never sends).
    _fixed: Option<watch::Sender<BudgetState>>,
}

impl Feed {
    /// A fixed budget (no meter, no schedule), `cause` saying where it comes from.
    pub fn fixed(budget_bps: u64, cause: String) -> Feed {
        let (fixed, state) = watch::channel(BudgetState {
            budget_bps,
            static_bps: budget_bps,
            source: "static",
            cause,
            meter: None,
            servers: Vec::new(),
            claims: Vec::new(),
        });
        let (jellyfin, _) = watch::channel(0);
        let (downloaders, _) = watch::channel(0);
        Feed {
            state,
            jellyfin,
            downloaders,
            read_servers: Arc::default(),
            _fixed: Some(fixed),
        }
    }
}

/// The static budget at `at` (with the schedule's entry in force, if any), bits/s, and the
/// entry's name: what one-shot commands plan with.
pub fn static_budget_at(settings: &Settings, at: Timestamp) -> (u64, Option<String>) {
    let b = &settings.bandwidth;
    let schedule = super::schedule::from_settings(settings);
    let (total, reserved, name) = match &schedule {
        Some(s) => {
            let (t, r, n) = s.base(at, b.total_upload_mbps, b.reserved_mbps);
            (t, r, n.map(str::to_string))
        }
        None => (b.total_upload_mbps, b.reserved_mbps, None),
    };
    (
        mbps_to_bps(total).saturating_sub(mbps_to_bps(reserved)),
        name,
    )
}

/// "100 Mbps of upload less 10 Mbps kept free": where a configured budget comes from, in
/// words (the page and `report` show it).
pub fn configured(total_mbps: f64, reserved_mbps: f64) -> String {
    let (total, reserved) = (mbps_to_bps(total_mbps), mbps_to_bps(reserved_mbps));
    if reserved == 0 {
        format!("{} of upload, all of it for the streams", fmt_mbps(total))
    } else {
        format!(
            "{} of upload less {} kept free",
            fmt_mbps(total),
            fmt_mbps(reserved)
        )
    }
}

/// Start the feed for `settings`: the static budget, or a task reading the meter and following
/// the schedule until `shutdown`.
pub fn start(
    settings: &Settings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(Feed, Option<tokio::task::JoinHandle<()>>), ConfigError> {
    let b = &settings.bandwidth;
    let schedule = super::schedule::from_settings(settings);
    let now = Timestamp::now();
    let (total, reserved, entry) = match &schedule {
        Some(s) => s.base(now, b.total_upload_mbps, b.reserved_mbps),
        None => (b.total_upload_mbps, b.reserved_mbps, None),
    };
    let static_bps = mbps_to_bps(total).saturating_sub(mbps_to_bps(reserved));
    metrics.budget_bps.set(static_bps as i64);
    if b.meter.is_none() && schedule.is_none() && !settings.server.iter().any(|s| s.is_plex()) {
        return Ok((Feed::fixed(static_bps, configured(total, reserved)), None));
    }
    let servers = settings
        .server
        .iter()
        .zip(crate::config::server_names(&settings.server))
        .filter(|(s, _)| s.is_plex())
        .map(|(s, name)| {
            Ok(Server {
                name,
                plex: crate::adapters::plex::Plex::new(s)?,
                managed: s.manages_wan_total(),
                interval: s.interval,
                read_timeout: s.timeout.saturating_mul(3),
                next_read: Instant::now(),
                last_attempt: None,
                failures: 0,
                last_ok: None,
                reading: None,
                last_error: None,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let meter = b.meter.as_ref().map(Meter::new).transpose()?;
    let estimator = b
        .meter
        .as_ref()
        .map(|m| Estimator::new(super::estimate::Params::new(m, total, reserved)));
    let first = BudgetState {
        budget_bps: static_bps,
        static_bps,
        source: "static",
        cause: match (&meter, entry) {
            (Some(_), _) => format!(
                "{} until the meter has measured",
                configured(total, reserved)
            ),
            (None, Some(name)) => format!(
                "{}, as the schedule \"{name}\" says",
                configured(total, reserved)
            ),
            (None, None) => configured(total, reserved),
        },
        meter: meter.as_ref().map(|m| MeterView {
            reads: m.describe(),
            up: true,
            measured_bps: None,
            jellyfin_bps: 0,
            downloaders_bps: 0,
            other_bps: None,
            last_error: None,
        }),
        servers: Vec::new(),
        claims: Vec::new(),
    };
    let entry = entry.map(str::to_string);
    let cause = first.cause.clone();
    let (state_tx, state) = watch::channel(first);
    let (jellyfin, jellyfin_rx) = watch::channel(0);
    let (downloaders, downloaders_rx) = watch::channel(0);
    let m = b.meter.as_ref();
    let read_servers = Arc::new(tokio::sync::Notify::new());
    let task = Task {
        meter,
        estimator,
        schedule,
        entry,
        base: (b.total_upload_mbps, b.reserved_mbps),
        static_bps,
        interval: m.map_or(Duration::from_secs(3600), |m| m.interval),
        read_timeout: m.map_or(Duration::from_secs(10), |m| m.timeout.saturating_mul(3)),
        sqm_every: (b.sqm != crate::config::Sqm::Off)
            .then(|| m.map(|m| m.sqm_interval))
            .flatten(),
        state: state_tx,
        jellyfin: jellyfin_rx,
        downloaders: downloaders_rx,
        sampled: (0, 0),
        servers,
        read_servers: read_servers.clone(),
        cause,
        metrics,
    };
    let handle = tokio::spawn(task.run(shutdown));
    Ok((
        Feed {
            state,
            jellyfin,
            downloaders,
            read_servers,
            _fixed: None,
        },
        Some(handle),
    ))
}

struct Task {
    meter: Option<Meter>,
    estimator: Option<Estimator>,
    schedule: Option<Schedule>,
    /// The schedule's entry in force.
    entry: Option<String>,
    /// `(total_upload_mbps, reserved_mbps)` of the configuration.
    base: (f64, f64),
    /// The static budget now (the schedule's, or the configuration's).
    static_bps: u64,
    interval: Duration,
    read_timeout: Duration,
    /// With `total_upload_mbps = "sqm"`: how often the router's SQM rate is read again.
    sqm_every: Option<Duration>,
    state: watch::Sender<BudgetState>,
    jellyfin: watch::Receiver<u64>,
    downloaders: watch::Receiver<u64>,
    /// Jellyfin's and the torrent clients' upload at the last successful read, bits/s.
    sampled: (u64, u64),
    /// The other media servers.
    servers: Vec<Server>,
    /// Read them at once.
    read_servers: Arc<tokio::sync::Notify>,
    /// The last cause published, before what the other servers stream is said.
    cause: String,
    metrics: Arc<Metrics>,
}

/// The longest sleep before the schedule is looked at again (a clock set by hand).
const SCHEDULE_RECHECK: Duration = Duration::from_secs(600);

impl Task {
    async fn run(mut self, shutdown: CancellationToken) {
        let origin = Instant::now();
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut sqm_next = self.sqm_every.map(|d| Instant::now() + d);
        loop {
            let until_schedule = self
                .schedule
                .as_ref()
                .and_then(|s| s.next_change(Timestamp::now()))
                .map(|t| {
                    let ms = t
                        .as_millisecond()
                        .saturating_sub(Timestamp::now().as_millisecond());
                    Duration::from_millis(ms.max(0) as u64 + 1)
                })
                .unwrap_or(SCHEDULE_RECHECK)
                .min(SCHEDULE_RECHECK);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(until_schedule), if self.schedule.is_some() => {
                    self.apply_schedule();
                    continue;
                }
                _ = tokio::time::sleep_until(sqm_next.unwrap_or_else(Instant::now)), if sqm_next.is_some() => {
                    sqm_next = self.sqm_every.map(|d| Instant::now() + d);
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break,
                        () = self.reread_sqm() => {}
                    }
                    continue;
                }
                _ = self.read_servers.notified(), if !self.servers.is_empty() => {
                    let now = Instant::now();
                    for s in self.servers.iter_mut().filter(|s| s.failures == 0) {
                        let soonest = s.last_attempt.map_or(now, |t| t + SERVER_MIN_GAP).max(now);
                        s.next_read = s.next_read.min(soonest);
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(self.next_server_read()), if !self.servers.is_empty() => {
                    let now = Instant::now();
                    let mut changed = false;
                    for server in self.servers.iter_mut().filter(|s| s.next_read <= now) {
                        tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => return,
                            c = server.read() => changed |= c,
                        }
                    }
                    if changed {
                        self.publish(None, None);
                    }
                    continue;
                }
                _ = ticks.tick(), if self.meter.is_some() => {}
            }
            let managed = self.managed_streaming();
            let (Some(meter), Some(estimator)) = (self.meter.as_mut(), self.estimator.as_mut())
            else {
                continue;
            };
            let read = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                r = tokio::time::timeout(self.read_timeout, meter.read()) => r,
            };
            let read = read.unwrap_or_else(|_| Err("no answer in time".into()));
            let sampled = (*self.jellyfin.borrow(), *self.downloaders.borrow());
            let (change, error) = match read {
                Ok(c) => {
                    self.metrics.meter_reads.get_or_create(&ok()).inc();
                    if failing {
                        info!(meter = %meter.describe(), "the meter answers again");
                        failing = false;
                    }
                    if c.fresh {
                        estimator.forget_counter();
                    }
                    let s = Sample {
                        at: origin.elapsed(),
                        bytes: c.bytes,
                        wraps_at: c.wraps_at,
                    };
                    // What jellydemon manages is not the rest of the house.
                    self.sampled = sampled;
                    let ours = sampled.0 + sampled.1 + managed;
                    (estimator.sample(s, ours), None)
                }
                Err(e) => {
                    self.metrics.meter_reads.get_or_create(&error()).inc();
                    if !failing {
                        warn!(meter = %meter.describe(), "cannot read the meter: {e}");
                        failing = true;
                    }
                    (estimator.failed(&e), Some(e))
                }
            };
            let cause = change.as_ref().map(|c| self.describe(c));
            self.publish(cause, error);
        }
    }

    /// `total_upload_mbps = "sqm"`: read the router's SQM rate again and follow a change
    /// (a failed read keeps the rate known, said in the log).
    async fn reread_sqm(&mut self) {
        let Some(meter) = self.meter.as_mut() else {
            return;
        };
        let read = super::sqm::read_meter(meter, self.read_timeout).await;
        let (mbps, queue) = match read {
            Ok(r) => r,
            Err(e) => {
                warn!(
                    "cannot read the router's SQM rate again ({e}); keeping {} Mbps",
                    self.base.0
                );
                return;
            }
        };
        if (mbps - self.base.0).abs() < 0.001 || mbps <= self.base.1 {
            return;
        }
        self.base.0 = mbps;
        let (t, r) = match &self.schedule {
            Some(s) => {
                let (t, r, _) = s.base(Timestamp::now(), self.base.0, self.base.1);
                (t, r)
            }
            None => self.base,
        };
        self.static_bps = mbps_to_bps(t).saturating_sub(mbps_to_bps(r));
        if let Some(e) = self.estimator.as_mut() {
            e.set_base(mbps_to_bps(t), mbps_to_bps(r));
        }
        let cause = format!("the router's {queue} shapes the upload to {mbps} Mbps now");
        info!("budget: {cause}");
        self.publish(Some(cause), None);
    }

    /// When the next server is due.
    fn next_server_read(&self) -> Instant {
        self.servers
            .iter()
            .map(|s| s.next_read)
            .min()
            .unwrap_or_else(|| Instant::now() + SCHEDULE_RECHECK)
    }

    /// What the other servers stream outside the house, bits/s, and the sentence that says
    /// so ("plex streams 30 Mbps outside the house").
    fn servers_streaming(&self) -> (u64, Option<String>) {
        let counted: Vec<(&str, u64)> = self
            .servers
            .iter()
            .filter(|s| !s.managed)
            .map(|s| (s.name.as_str(), s.counted_bps()))
            .filter(|(_, b)| *b > 0)
            .collect();
        let total = counted.iter().map(|(_, b)| b).sum();
        let sentence = (!counted.is_empty()).then(|| {
            counted
                .iter()
                .map(|(n, b)| format!("{n} streams {} outside the house", fmt_mbps(*b)))
                .collect::<Vec<_>>()
                .join(", ")
        });
        (total, sentence)
    }

    /// A schedule entry began or ended: the new base, logged, and published.
    fn apply_schedule(&mut self) {
        let Some(s) = &self.schedule else { return };
        let (t, r, entry) = s.base(Timestamp::now(), self.base.0, self.base.1);
        let entry = entry.map(str::to_string);
        if entry == self.entry {
            return;
        }
        let cause = match (&entry, &self.entry) {
            (Some(now), _) => format!(
                "schedule \"{now}\" in force: total {} Mbps, {} Mbps reserved",
                t, r
            ),
            (None, Some(was)) => {
                format!("schedule \"{was}\" ended: total {t} Mbps, {r} Mbps reserved")
            }
            (None, None) => return,
        };
        self.entry = entry;
        self.static_bps = mbps_to_bps(t).saturating_sub(mbps_to_bps(r));
        if let Some(e) = self.estimator.as_mut() {
            e.set_base(mbps_to_bps(t), mbps_to_bps(r));
        }
        info!("budget: {cause}");
        self.publish(Some(cause), None);
    }

    fn describe(&self, c: &Change) -> String {
        let schedule = self
            .entry
            .as_ref()
            .map(|e| format!(" (schedule \"{e}\")"))
            .unwrap_or_default();
        let cause = match c {
            Change::Measured {
                budget_bps,
                other_bps,
            } => format!(
                "{} beside {} of other upload in the house{schedule}",
                fmt_mbps(*budget_bps),
                fmt_mbps(*other_bps)
            ),
            Change::MeterDown { budget_bps, error } => format!(
                "{}, the configured budget, while the meter fails ({error}){schedule}",
                fmt_mbps(*budget_bps)
            ),
            Change::MeterUp => "the meter answers again; measuring".into(),
        };
        match c {
            Change::MeterDown { .. } => warn!("budget: {cause}"),
            _ => info!("budget: {cause}"),
        }
        cause
    }

    /// The managed servers that answered lately, as the plan's claimants.
    fn claims(&self) -> Vec<crate::core::plan::ServerClaim> {
        self.servers
            .iter()
            .filter(|s| {
                s.managed
                    && s.last_ok
                        .is_some_and(|at| at.elapsed() <= SERVER_STALE_AFTER)
            })
            .map(|s| crate::core::plan::ServerClaim {
                name: s.name.clone(),
                streaming_bps: s.counted_bps(),
            })
            .collect()
    }

    /// What the managed servers stream, bits/s: with a meter, not the rest of the house.
    fn managed_streaming(&self) -> u64 {
        self.servers
            .iter()
            .filter(|s| s.managed)
            .map(Server::counted_bps)
            .sum()
    }

    /// Record the state: metrics, and the state for the engine and `/api/state`.
    fn publish(&mut self, cause: Option<String>, error: Option<String>) {
        let (servers_bps, servers_sentence) = self.servers_streaming();
        let meter = self.meter.is_some();
        let servers: Vec<ServerView> = self.servers.iter().map(|s| s.view(meter)).collect();
        let claims = self.claims();
        let m = &self.metrics;
        m.other_servers_upload_bps
            .set((servers_bps + self.managed_streaming()) as i64);
        // The part about the other servers is said afresh each time, after the last cause.
        if let Some(c) = cause {
            self.cause = c;
        }
        let cause = self.cause.clone();
        let next = match (&self.meter, &self.estimator) {
            (Some(meter), Some(e)) => {
                let r: Reading = e.reading();
                m.measured_upload_bps
                    .set(r.measured_bps.unwrap_or(0) as i64);
                m.jellyfin_upload_estimate_bps.set(self.sampled.0 as i64);
                m.other_upload_bps.set(r.other_bps.unwrap_or(0) as i64);
                m.meter_up.set(i64::from(r.meter_up));
                BudgetState {
                    budget_bps: r.budget_bps,
                    static_bps: self.static_bps,
                    source: if !r.meter_up {
                        "static, meter down"
                    } else if r.other_bps.is_some() {
                        "meter"
                    } else {
                        "static"
                    },
                    cause,
                    meter: Some(MeterView {
                        reads: meter.describe(),
                        up: r.meter_up,
                        measured_bps: r.measured_bps,
                        jellyfin_bps: self.sampled.0,
                        downloaders_bps: self.sampled.1,
                        other_bps: r.other_bps,
                        last_error: error,
                    }),
                    servers,
                    claims,
                }
            }
            _ => BudgetState {
                budget_bps: self.static_bps.saturating_sub(servers_bps),
                static_bps: self.static_bps,
                source: if self.entry.is_some() {
                    "schedule"
                } else {
                    "static"
                },
                cause: match servers_sentence {
                    Some(s) => format!(
                        "{cause}; {s}, which leaves {}",
                        fmt_mbps(self.static_bps.saturating_sub(servers_bps))
                    ),
                    None => cause,
                },
                meter: None,
                servers,
                claims,
            },
        };
        if next.budget_bps != self.state.borrow().budget_bps {
            m.budget_changes.inc();
            m.budget_bps.set(next.budget_bps as i64);
        }
        self.state.send_if_modified(|s| {
            let modified = *s != next;
            *s = next;
            modified
        });
    }
}

fn ok() -> crate::metrics::ResultLabels {
    crate::metrics::ResultLabels {
        result: "ok".into(),
    }
}

fn error() -> crate::metrics::ResultLabels {
    crate::metrics::ResultLabels {
        result: "error".into(),
    }
}
