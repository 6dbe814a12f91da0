//! The budget in force, as a watch channel the engine plans with: static, or fed by a task
//! that reads the meter every `bandwidth.meter.interval`, runs the estimator and publishes
//! each reading. The engine re-plans when the budget changes, and tells the task what
//! Jellyfin's remote streams carry (their rates × `demand.overhead`) after each plan.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::estimate::{Change, Estimator, Reading, Sample};
use super::meter::Meter;
use crate::config::{ConfigError, Settings};
use crate::metrics::Metrics;
use crate::plan::fmt_mbps;

/// The budget in force and what it is made of, for the engine, `/api/state` and the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetState {
    /// Shared among remote streams, bits/s.
    pub budget_bps: u64,
    /// `total_upload_mbps - reserved_mbps`, bits/s.
    pub static_bps: u64,
    /// "static", "meter", or "static, meter down".
    pub source: &'static str,
    /// Why the budget is what it is, in a sentence.
    pub cause: String,
    /// The meter, when one is configured.
    pub meter: Option<MeterView>,
}

/// The meter's last reading.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeterView {
    /// What is read ("openwrt wan (pppoe-wan) at http://…").
    pub reads: String,
    /// It answers.
    pub up: bool,
    /// The WAN's upload, bits/s.
    pub measured_bps: Option<u64>,
    /// Jellyfin's remote streams as estimated then, bits/s.
    pub jellyfin_bps: u64,
    /// The rest of the house, smoothed, bits/s.
    pub other_bps: Option<u64>,
    /// The last failure, while it fails.
    pub last_error: Option<String>,
}

/// The engine's side of the feed.
pub struct Feed {
    /// The budget in force; changes with every reading of a meter.
    pub state: watch::Receiver<BudgetState>,
    /// Where the engine puts Jellyfin's remote streams after each plan, bits/s.
    pub jellyfin: watch::Sender<u64>,
    /// A fixed budget's sender, kept so that the channel stays open (never sends).
    _fixed: Option<watch::Sender<BudgetState>>,
}

impl Feed {
    /// A fixed budget (no meter), e.g. for tests.
    pub fn fixed(budget_bps: u64) -> Feed {
        let (fixed, state) = watch::channel(BudgetState {
            budget_bps,
            static_bps: budget_bps,
            source: "static",
            cause: "static: total_upload_mbps - reserved_mbps".into(),
            meter: None,
        });
        let (jellyfin, _) = watch::channel(0);
        Feed {
            state,
            jellyfin,
            _fixed: Some(fixed),
        }
    }
}

/// Start the feed for `settings`: the static budget, or a task reading the meter until
/// `shutdown`.
pub fn start(
    settings: &Settings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(Feed, Option<tokio::task::JoinHandle<()>>), ConfigError> {
    let static_bps = settings.budget().budget_bps;
    metrics.budget_bps.set(static_bps as i64);
    let Some(m) = &settings.bandwidth.meter else {
        return Ok((Feed::fixed(static_bps), None));
    };
    let meter = Meter::new(m)?;
    let b = &settings.bandwidth;
    let estimator = Estimator::new(m.params(b.total_upload_mbps, b.reserved_mbps));
    let first = BudgetState {
        budget_bps: static_bps,
        static_bps,
        source: "static",
        cause: "static until the meter has measured".into(),
        meter: Some(MeterView {
            reads: meter.describe(),
            up: true,
            measured_bps: None,
            jellyfin_bps: 0,
            other_bps: None,
            last_error: None,
        }),
    };
    let (state_tx, state) = watch::channel(first);
    let (jellyfin, jellyfin_rx) = watch::channel(0);
    let task = Task {
        meter,
        estimator,
        interval: m.interval,
        read_timeout: m.timeout.saturating_mul(3),
        state: state_tx,
        jellyfin: jellyfin_rx,
        metrics,
    };
    let handle = tokio::spawn(task.run(shutdown));
    Ok((
        Feed {
            state,
            jellyfin,
            _fixed: None,
        },
        Some(handle),
    ))
}

struct Task {
    meter: Meter,
    estimator: Estimator,
    interval: Duration,
    read_timeout: Duration,
    state: watch::Sender<BudgetState>,
    jellyfin: watch::Receiver<u64>,
    metrics: Arc<Metrics>,
}

impl Task {
    async fn run(mut self, shutdown: CancellationToken) {
        let origin = Instant::now();
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let read = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                r = tokio::time::timeout(self.read_timeout, self.meter.read()) => r,
            };
            let read = read.unwrap_or_else(|_| Err("no answer in time".into()));
            let jellyfin_bps = *self.jellyfin.borrow();
            let (change, error) = match read {
                Ok(c) => {
                    self.metrics.meter_reads.get_or_create(&ok()).inc();
                    if failing {
                        info!(meter = %self.meter.describe(), "the meter answers again");
                        failing = false;
                    }
                    if c.fresh {
                        self.estimator.forget_counter();
                    }
                    let s = Sample {
                        at: origin.elapsed(),
                        bytes: c.bytes,
                        wraps_at: c.wraps_at,
                    };
                    (self.estimator.sample(s, jellyfin_bps), None)
                }
                Err(e) => {
                    self.metrics.meter_reads.get_or_create(&error()).inc();
                    if !failing {
                        warn!(meter = %self.meter.describe(), "cannot read the meter: {e}");
                        failing = true;
                    }
                    (self.estimator.failed(&e), Some(e))
                }
            };
            self.publish(change, error);
        }
    }

    /// Record the reading: metrics, a log line for a change, and the state for the engine.
    fn publish(&mut self, change: Option<Change>, error: Option<String>) {
        let r: Reading = self.estimator.reading();
        let m = &self.metrics;
        m.measured_upload_bps
            .set(r.measured_bps.unwrap_or(0) as i64);
        m.jellyfin_upload_estimate_bps.set(r.jellyfin_bps as i64);
        m.other_upload_bps.set(r.other_bps.unwrap_or(0) as i64);
        m.meter_up.set(i64::from(r.meter_up));
        let reads = self.meter.describe();
        let mut cause = self.state.borrow().cause.clone();
        if let Some(c) = &change {
            cause = match c {
                Change::Measured {
                    budget_bps,
                    other_bps,
                } => format!(
                    "{} beside {} of other upload in the house",
                    fmt_mbps(*budget_bps),
                    fmt_mbps(*other_bps)
                ),
                Change::MeterDown { budget_bps, error } => format!(
                    "static {} while the meter fails ({error})",
                    fmt_mbps(*budget_bps)
                ),
                Change::MeterUp => "the meter answers again; measuring".into(),
            };
            match c {
                Change::MeterDown { .. } => warn!(meter = %reads, "budget: {cause}"),
                _ => info!(meter = %reads, "budget: {cause}"),
            }
        }
        let static_bps = self.estimator.params().static_budget();
        let next = BudgetState {
            budget_bps: r.budget_bps,
            static_bps,
            source: if !r.meter_up {
                "static, meter down"
            } else if r.other_bps.is_some() {
                "meter"
            } else {
                "static"
            },
            cause,
            meter: Some(MeterView {
                reads,
                up: r.meter_up,
                measured_bps: r.measured_bps,
                jellyfin_bps: r.jellyfin_bps,
                other_bps: r.other_bps,
                last_error: error,
            }),
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
