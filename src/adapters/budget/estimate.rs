//! From a router's upload byte counter to the budget shared among remote streams. Pure: samples
//! in (a counter and the monotonic time it was read, or a failed read), the effective budget
//! and what it was made of out.
//!
//! The rules, in order:
//! * rate = Δbytes·8/Δt between two readings on the monotonic clock;
//! * a 64-bit counter that goes down was reset (a router reboot, a PPPoE redial): re-baseline,
//!   no rate; only a counter of known width (SNMP's 32-bit `ifOutOctets`) wraps;
//! * a rate above 1.5 × capacity is a glitch, and the reading right after a failed poll has no
//!   trustworthy Δt: both are dropped (re-baselined);
//! * other traffic = measured upload − Jellyfin's remote streams (their rates × overhead),
//!   at least 0;
//! * it is smoothed fast up, slowly down (a time-aware EWMA, so an irregular poll does not
//!   change the smoothing), then taken at a high quantile over a window, so Jellyfin's own
//!   bursts and short spikes do not shake the limits while a sustained upload is seen within
//!   seconds;
//! * budget = clamp(capacity − reserve − other, min_budget, capacity − reserve), changed only
//!   when it moves by at least the hysteresis step;
//! * after `fail_after` failed polls in a row the static budget (capacity − reserve) applies
//!   until readings resume.

use std::collections::VecDeque;
use std::time::Duration;

/// The estimator's settings, in bits/s and durations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// The link's upload capacity.
    pub capacity_bps: u64,
    /// Kept free for the house beyond what is measured.
    pub reserve_bps: u64,
    /// The budget never goes below this.
    pub min_budget_bps: u64,
    /// The budget changes only by at least this much.
    pub step_bps: u64,
    /// How fast a rise of the other traffic is followed (EWMA time constant).
    pub rise: Duration,
    /// How slowly a fall is followed.
    pub fall: Duration,
    /// The window of the quantile.
    pub window: Duration,
    /// The quantile taken over the window, in 0..=1.
    pub quantile: f64,
    /// Failed polls in a row before falling back to the static budget.
    pub fail_after: u32,
}

impl Params {
    /// The parameters of `[bandwidth.meter]` for a link of `capacity_mbps` with
    /// `reserved_mbps` kept.
    pub fn new(m: &crate::config::MeterSettings, capacity_mbps: f64, reserved_mbps: f64) -> Params {
        use crate::config::mbps_to_bps;
        let capacity_bps = mbps_to_bps(capacity_mbps);
        let reserve_bps = mbps_to_bps(reserved_mbps);
        let most = capacity_bps.saturating_sub(reserve_bps);
        Params {
            capacity_bps,
            reserve_bps,
            min_budget_bps: m.min_budget_mbps.map_or(most / 4, mbps_to_bps),
            step_bps: mbps_to_bps(m.step_mbps),
            rise: m.rise,
            fall: m.fall,
            window: m.window,
            quantile: m.quantile_percent / 100.0,
            fail_after: m.fail_after,
        }
    }

    /// `capacity − reserve`: the static budget, and the most the meter ever allows.
    pub fn static_budget(&self) -> u64 {
        self.capacity_bps.saturating_sub(self.reserve_bps)
    }
}

/// One reading of the meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When it was read, on a monotonic clock.
    pub at: Duration,
    /// The upload byte counter.
    pub bytes: u64,
    /// The counter's modulus when it wraps (2^32 for SNMP's `ifOutOctets`); `None` for a
    /// 64-bit counter, where a decrease is a reset.
    pub wraps_at: Option<u64>,
}

/// One reading of a meter's counter (`src/adapters/budget/meter.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Bytes sent on the WAN since the counter started.
    pub bytes: u64,
    /// The modulus when the counter wraps (a 32-bit counter); `None` for 64 bits.
    pub wraps_at: Option<u64>,
    /// Not comparable with the previous reading (another device, a new baseline).
    pub fresh: bool,
}

/// What the estimator knows now.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    /// The last measured upload rate, bits/s.
    pub measured_bps: Option<u64>,
    /// What jellydemon manages (Jellyfin's remote streams as estimated, and the torrent
    /// clients' upload) when it was measured: not the rest of the house.
    pub managed_bps: u64,
    /// Other traffic, smoothed and taken at the quantile.
    pub other_bps: Option<u64>,
    /// The budget in force.
    pub budget_bps: u64,
    /// The meter answers (false after `fail_after` failures, until it answers again).
    pub meter_up: bool,
}

/// Why the budget changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The other traffic moved the budget past the step.
    Measured {
        /// The new budget.
        budget_bps: u64,
        /// The other traffic it leaves room for.
        other_bps: u64,
    },
    /// The meter failed `fail_after` times: the static budget applies.
    MeterDown {
        /// The static budget.
        budget_bps: u64,
        /// The last failure.
        error: String,
    },
    /// The meter answers again.
    MeterUp,
}

/// The estimator's state between samples.
#[derive(Debug, Clone)]
pub struct Estimator {
    params: Params,
    last: Option<Sample>,
    smoothed: Option<(Duration, f64)>,
    window: VecDeque<(Duration, u64)>,
    failures: u32,
    reading: Reading,
}

impl Estimator {
    /// A new estimator; the budget starts static until readings say otherwise.
    pub fn new(params: Params) -> Estimator {
        Estimator {
            params,
            last: None,
            smoothed: None,
            window: VecDeque::new(),
            failures: 0,
            reading: Reading {
                budget_bps: params.static_budget(),
                meter_up: true,
                ..Reading::default()
            },
        }
    }

    /// The settings in force.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// New capacity and reserve (a schedule entry began or ended): the budget is
    /// recomputed from the other traffic measured so far, or is the new static budget while
    /// nothing has been measured or the meter is down.
    pub fn set_base(&mut self, capacity_bps: u64, reserve_bps: u64) {
        self.params.capacity_bps = capacity_bps;
        self.params.reserve_bps = reserve_bps;
        self.reading.budget_bps = match self.reading.other_bps {
            Some(other) if self.reading.meter_up => self.budget_for(other),
            _ => self.params.static_budget(),
        };
    }

    /// What the estimator knows now.
    pub fn reading(&self) -> Reading {
        self.reading
    }

    /// A reading of the counter, with what jellydemon manages beside it (Jellyfin's remote
    /// streams as the engine last estimated them, the torrent clients' upload). Returns a
    /// change of the budget, if any.
    pub fn sample(&mut self, s: Sample, managed_bps: u64) -> Option<Change> {
        let prev = self.last.replace(s);
        let recovering = !self.reading.meter_up;
        let after_failure = self.failures > 0;
        self.failures = 0;
        if recovering {
            self.reading.meter_up = true;
            // The readings before the outage say nothing about now.
            self.window.clear();
            self.smoothed = None;
            return Some(Change::MeterUp);
        }
        let prev = prev.filter(|_| !after_failure)?;
        let dt = s.at.checked_sub(prev.at).filter(|d| !d.is_zero())?;
        let delta = match (s.bytes.checked_sub(prev.bytes), s.wraps_at) {
            (Some(d), _) => d,
            (None, Some(modulus)) if prev.bytes < modulus => s.bytes + (modulus - prev.bytes),
            // A 64-bit counter went down: reset, start again from here.
            (None, _) => return None,
        };
        let rate = delta as f64 * 8.0 / dt.as_secs_f64();
        if rate > self.params.capacity_bps as f64 * 1.5 {
            return None; // a glitch
        }
        let measured = rate.round() as u64;
        let other = measured.saturating_sub(managed_bps) as f64;
        let smoothed = match self.smoothed {
            None => other,
            Some((_, prev)) => {
                let tau = if other > prev {
                    self.params.rise
                } else {
                    self.params.fall
                };
                let alpha = 1.0 - (-dt.as_secs_f64() / tau.as_secs_f64().max(1e-9)).exp();
                prev + alpha * (other - prev)
            }
        };
        self.smoothed = Some((s.at, smoothed));
        self.window.push_back((s.at, smoothed.round() as u64));
        while let Some(&(t, _)) = self.window.front() {
            if s.at.saturating_sub(t) > self.params.window {
                self.window.pop_front();
            } else {
                break;
            }
        }
        let other_q = quantile(self.window.iter().map(|&(_, v)| v), self.params.quantile);
        self.reading.measured_bps = Some(measured);
        self.reading.managed_bps = managed_bps;
        self.reading.other_bps = Some(other_q);
        let budget = self.budget_for(other_q);
        if budget.abs_diff(self.reading.budget_bps) >= self.params.step_bps.max(1) {
            self.reading.budget_bps = budget;
            Some(Change::Measured {
                budget_bps: budget,
                other_bps: other_q,
            })
        } else {
            None
        }
    }

    /// The next reading is of a new counter (another device after a PPPoE redial): it only
    /// sets the baseline.
    pub fn forget_counter(&mut self) {
        self.last = None;
    }

    /// A poll failed. After `fail_after` in a row, the static budget.
    pub fn failed(&mut self, error: &str) -> Option<Change> {
        self.failures = self.failures.saturating_add(1);
        if self.reading.meter_up && self.failures >= self.params.fail_after.max(1) {
            self.reading.meter_up = false;
            self.reading.measured_bps = None;
            self.reading.other_bps = None;
            self.reading.budget_bps = self.params.static_budget();
            self.window.clear();
            self.smoothed = None;
            return Some(Change::MeterDown {
                budget_bps: self.reading.budget_bps,
                error: error.to_string(),
            });
        }
        None
    }

    /// `clamp(capacity − reserve − other, min_budget, capacity − reserve)`.
    fn budget_for(&self, other: u64) -> u64 {
        let most = self.params.static_budget();
        most.saturating_sub(other)
            .max(self.params.min_budget_bps.min(most))
    }
}

/// The `q` quantile (nearest rank) of `values`; 0 when there are none.
fn quantile(values: impl Iterator<Item = u64>, q: f64) -> u64 {
    let mut v: Vec<u64> = values.collect();
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1_000_000;

    fn params() -> Params {
        Params {
            capacity_bps: 100 * M,
            reserve_bps: 10 * M,
            min_budget_bps: 20 * M,
            step_bps: 2 * M,
            rise: Duration::from_secs(5),
            fall: Duration::from_secs(60),
            window: Duration::from_secs(60),
            quantile: 0.9,
            fail_after: 3,
        }
    }

    /// Feed `secs` seconds of a steady upload of `bps` (of which `jellyfin` is Jellyfin's),
    /// one reading a second from `*t`/`*bytes`; returns the changes.
    fn run(
        e: &mut Estimator,
        t: &mut u64,
        bytes: &mut u64,
        secs: u64,
        bps: u64,
        jellyfin: u64,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        for _ in 0..secs {
            *t += 1;
            *bytes += bps / 8;
            let s = Sample {
                at: Duration::from_secs(*t),
                bytes: *bytes,
                wraps_at: None,
            };
            changes.extend(e.sample(s, jellyfin));
        }
        changes
    }

    #[test]
    fn a_quiet_house_keeps_the_whole_budget() {
        let mut e = Estimator::new(params());
        let (mut t, mut b) = (0, 0);
        // Only Jellyfin uploads: 40 Mbps measured, 40 estimated.
        let changes = run(&mut e, &mut t, &mut b, 120, 40 * M, 40 * M);
        assert!(changes.is_empty(), "{changes:?}");
        let r = e.reading();
        assert_eq!(r.budget_bps, 90 * M);
        assert_eq!(r.measured_bps, Some(40 * M));
        assert_eq!(r.other_bps, Some(0));
    }

    #[test]
    fn a_backup_lowers_the_budget_within_seconds_and_gives_it_back_slowly() {
        let mut e = Estimator::new(params());
        let (mut t, mut b) = (0, 0);
        run(&mut e, &mut t, &mut b, 30, 20 * M, 20 * M);
        // A 30 Mbps backup starts beside 20 Mbps of Jellyfin.
        let changes = run(&mut e, &mut t, &mut b, 20, 50 * M, 20 * M);
        assert!(!changes.is_empty());
        let budget = e.reading().budget_bps;
        assert!(
            budget <= 62 * M,
            "within 20 s the budget leaves ~30 for the backup: {budget}"
        );
        assert!(
            budget >= 60 * M - 1,
            "never below capacity - reserve - other: {budget}"
        );
        // It stops: the budget does not jump back at once (quantile over the window, slow
        // fall), but is back within a few minutes.
        run(&mut e, &mut t, &mut b, 10, 20 * M, 20 * M);
        assert!(e.reading().budget_bps < 70 * M, "{:?}", e.reading());
        run(&mut e, &mut t, &mut b, 400, 20 * M, 20 * M);
        assert!(e.reading().budget_bps >= 88 * M, "{:?}", e.reading());
    }

    #[test]
    fn a_short_spike_does_not_move_the_budget() {
        let mut e = Estimator::new(params());
        let (mut t, mut b) = (0, 0);
        run(&mut e, &mut t, &mut b, 60, 20 * M, 20 * M);
        // Two seconds of 60 Mbps (Jellyfin filling a client's buffer, unaccounted).
        run(&mut e, &mut t, &mut b, 2, 80 * M, 20 * M);
        run(&mut e, &mut t, &mut b, 30, 20 * M, 20 * M);
        assert!(e.reading().budget_bps >= 70 * M, "{:?}", e.reading());
    }

    #[test]
    fn the_budget_stays_between_the_floor_and_the_static_budget() {
        let mut e = Estimator::new(params());
        let (mut t, mut b) = (0, 0);
        // 95 Mbps of other traffic on a 100 Mbps link: the floor.
        run(&mut e, &mut t, &mut b, 120, 95 * M, 0);
        assert_eq!(e.reading().budget_bps, 20 * M);
        // Jellyfin estimated above what was measured: other is 0, not negative.
        let mut e = Estimator::new(params());
        let (mut t, mut b) = (0, 0);
        run(&mut e, &mut t, &mut b, 60, 10 * M, 30 * M);
        assert_eq!(e.reading().other_bps, Some(0));
        assert_eq!(e.reading().budget_bps, 90 * M);
    }

    #[test]
    fn resets_wraps_glitches_and_failures() {
        let mut e = Estimator::new(params());
        let s = |at: u64, bytes: u64, wraps_at: Option<u64>| Sample {
            at: Duration::from_secs(at),
            bytes,
            wraps_at,
        };
        assert_eq!(e.sample(s(1, 1_000_000, None), 0), None);
        e.sample(s(2, 2_000_000, None), 0);
        assert_eq!(e.reading().measured_bps, Some(8 * M));
        // A 64-bit counter that goes down was reset: no rate from it, the next one counts.
        e.sample(s(3, 500, None), 0);
        assert_eq!(e.reading().measured_bps, Some(8 * M), "unchanged");
        e.sample(s(4, 1_000_500, None), 0);
        assert_eq!(e.reading().measured_bps, Some(8 * M));
        // A 32-bit counter wraps.
        let m32 = 1u64 << 32;
        e.sample(s(5, m32 - 500_000, Some(m32)), 0);
        e.sample(s(6, 500_000, Some(m32)), 0);
        assert_eq!(e.reading().measured_bps, Some(8 * M));
        // Above 1.5 x capacity: a glitch, dropped.
        e.sample(s(7, 500_000 + 200 * M / 8, Some(m32)), 0);
        assert_eq!(e.reading().measured_bps, Some(8 * M));
        // A failed poll: the next reading only re-baselines.
        assert_eq!(e.failed("timeout"), None);
        e.sample(s(20, 900 * M, None), 0);
        assert_eq!(e.reading().measured_bps, Some(8 * M));
        e.sample(s(21, 900 * M + 2 * M, None), 0);
        assert_eq!(e.reading().measured_bps, Some(16 * M));
    }

    #[test]
    fn a_meter_that_keeps_failing_falls_back_to_the_static_budget_and_recovers() {
        let mut e = Estimator::new(params());
        let (mut t, mut b) = (0, 0);
        run(&mut e, &mut t, &mut b, 60, 60 * M, 10 * M);
        assert!(e.reading().budget_bps < 50 * M);
        assert_eq!(e.failed("timeout"), None);
        assert_eq!(e.failed("timeout"), None);
        assert_eq!(
            e.failed("timeout"),
            Some(Change::MeterDown {
                budget_bps: 90 * M,
                error: "timeout".into()
            })
        );
        assert!(!e.reading().meter_up);
        assert_eq!(e.failed("timeout"), None, "said once");
        // It answers again: up, and measuring from scratch.
        t += 10;
        b += 1;
        assert_eq!(
            e.sample(
                Sample {
                    at: Duration::from_secs(t),
                    bytes: b,
                    wraps_at: None
                },
                0
            ),
            Some(Change::MeterUp)
        );
        assert!(e.reading().meter_up);
        let changes = run(&mut e, &mut t, &mut b, 30, 60 * M, 10 * M);
        assert!(!changes.is_empty());
        assert!(e.reading().budget_bps < 50 * M, "{:?}", e.reading());
    }

    #[test]
    fn small_moves_stay_under_the_step() {
        let mut e = Estimator::new(params());
        let (mut t, mut b) = (0, 0);
        run(&mut e, &mut t, &mut b, 60, 20 * M, 20 * M);
        // 1 Mbps of other traffic: under the 2 Mbps step.
        let changes = run(&mut e, &mut t, &mut b, 120, 21 * M, 20 * M);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(e.reading().budget_bps, 90 * M);
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile([].into_iter(), 0.9), 0);
        assert_eq!(quantile((1..=10).map(|v| v * 10), 0.9), 90);
        assert_eq!(quantile((1..=10).map(|v| v * 10), 1.0), 100);
        assert_eq!(quantile([5].into_iter(), 0.9), 5);
    }
}
