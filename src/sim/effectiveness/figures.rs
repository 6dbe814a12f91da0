//! The managers compared and the figures a run measures, integrated over time.

use crate::config::Algorithm;

use super::M;

/// Who sets the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// Nobody: every stream plays its source.
    None,
    /// Every 30 s, an equal split of the budget among the users streaming now; nothing for
    /// idle users (the seed design).
    Poll30,
    /// jellydemon's first rule: active users' limits split the whole budget, idle users get
    /// `budget - Σ max(rate, limit)`, pushes only lower rates.
    FirstRule(Algorithm),
    /// jellydemon as it is: the real planner, memory and ledger.
    Daemon(Algorithm),
}

impl std::fmt::Display for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Manager::None => f.write_str("none"),
            Manager::Poll30 => f.write_str("poll every 30 s, active users only"),
            Manager::FirstRule(a) => write!(f, "first rule, {a}"),
            Manager::Daemon(a) => write!(f, "jellydemon {a}"),
        }
    }
}

/// What a run measured. Durations are simulated milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Time with at least one remote stream.
    pub streamed_ms: u64,
    /// Of which the remote streams together exceeded the budget.
    pub over_ms: u64,
    /// Of which they exceeded it by more than 5 %.
    pub over5_ms: u64,
    /// The highest total, as a share of the budget.
    pub peak: f64,
    /// ∫ min(total, budget) / budget dt.
    pub util_integral: f64,
    /// ∫ Σ min(rate, ideal) dt (bits).
    pub served: f64,
    /// ∫ Σ ideal dt (bits).
    pub ideal: f64,
    /// ∫ Jain(rate / ideal) dt over the time with two streams or more.
    pub jain_integral: f64,
    /// The time with two streams or more, milliseconds.
    pub jain_ms: u64,
    /// Policy writes.
    pub writes: u64,
    /// Pushes sent.
    pub pushes: u64,
    /// Items started.
    pub item_starts: u64,
    /// Simulated hours.
    pub hours: u64,
    /// Time the link itself was full: remote streams and the rest of the house above the
    /// upload capacity.
    pub saturated_ms: u64,
    /// Time with a remote stream while the rest of the house uploaded nothing.
    pub quiet_ms: u64,
    /// ∫ Σ min(rate, ideal) dt over that time (bits).
    pub quiet_served: f64,
    /// Budget changes of the meter.
    pub budget_changes: u64,
    /// With a seeder: ∫ what it sent dt (bits).
    pub seeder_sent: f64,
    /// With a seeder: ∫ what the remote streams leave of the budget dt (bits), over the whole
    /// horizon.
    pub seeder_left: f64,
    /// With a seeder: the time the link is asked for more than its capacity, over the whole
    /// horizon.
    pub link_over_ms: u64,
    /// The simulated horizon, milliseconds.
    pub horizon_ms: u64,
    /// ∫ number of remote streams dt: the play time, stream-milliseconds.
    pub play_ms: u64,
    /// `transcodes_ms[n]`: the time with `n` video transcodes running at once (a video
    /// stream whose rate is below its source is transcoded, [`VIDEO_MIN_BPS`]).
    pub transcodes_ms: Vec<u64>,
    /// `fewest_transcodes_ms[n]`: the time during which any allocation within the budget
    /// that gives every stream at least the floor transcodes `n` videos or more
    /// ([`fewest_transcodes`]): what no manager can go below.
    pub fewest_transcodes_ms: Vec<u64>,
}

/// A source above this is video (the trace's audio plays at 0.32 Mbps): below its source it
/// is a video transcode.
pub const VIDEO_MIN_BPS: u64 = 2 * M;

impl Figures {
    /// Share of the streamed time over budget, in percent.
    pub fn over_percent(&self) -> f64 {
        100.0 * self.over_ms as f64 / self.streamed_ms.max(1) as f64
    }
    /// Share of the streamed time more than 5 % over budget, in percent.
    pub fn over5_percent(&self) -> f64 {
        100.0 * self.over5_ms as f64 / self.streamed_ms.max(1) as f64
    }
    /// Served as a share of the clairvoyant ideal, in percent.
    pub fn served_percent(&self) -> f64 {
        100.0 * self.served / self.ideal.max(1.0)
    }
    /// Jain's fairness index of rate over ideal, averaged over the time with two streams or more
    /// (1 = perfectly fair).
    pub fn jain(&self) -> f64 {
        if self.jain_ms == 0 {
            1.0
        } else {
            self.jain_integral / self.jain_ms as f64
        }
    }
    /// Mean use of the budget while anything streams, in percent.
    pub fn utilization_percent(&self) -> f64 {
        100.0 * self.util_integral / self.streamed_ms.max(1) as f64
    }
    /// Pushes per item started.
    pub fn pushes_per_start(&self) -> f64 {
        self.pushes as f64 / self.item_starts.max(1) as f64
    }
    /// Policy writes per simulated hour.
    pub fn writes_per_hour(&self) -> f64 {
        self.writes as f64 / self.hours.max(1) as f64
    }
    /// What the seeder sent as a share of what the remote streams left it, in percent.
    pub fn seeder_percent(&self) -> f64 {
        100.0 * self.seeder_sent / self.seeder_left.max(1.0)
    }
    /// Share of the whole time the link was asked for more than its capacity, in percent.
    pub fn link_over_percent(&self) -> f64 {
        100.0 * self.link_over_ms as f64 / self.horizon_ms.max(1) as f64
    }
    /// Share of the streamed time with the link full, in percent.
    pub fn saturated_percent(&self) -> f64 {
        100.0 * self.saturated_ms as f64 / self.streamed_ms.max(1) as f64
    }
    /// Share of the play time spent in a video transcode, in percent.
    pub fn transcoded_percent(&self) -> f64 {
        let t: u64 = self
            .transcodes_ms
            .iter()
            .enumerate()
            .map(|(n, ms)| n as u64 * ms)
            .sum();
        100.0 * t as f64 / self.play_ms.max(1) as f64
    }
    /// Share of the play time the viewers stall on a server that transcodes `capacity` videos
    /// in real time, in percent. With `n > capacity` transcodes at once each runs at
    /// `capacity / n` of real time, so each viewer waits `1 - capacity / n` of the time:
    /// together `n - capacity` stream-milliseconds per millisecond.
    pub fn stall_percent(&self, capacity: u32) -> f64 {
        self.stalls(&self.transcodes_ms, capacity)
    }
    /// The least [`Figures::stall_percent`] any manager within the budget could reach on
    /// these traces: the stalls of [`fewest_transcodes`] at each instant.
    pub fn least_stall_percent(&self, capacity: u32) -> f64 {
        self.stalls(&self.fewest_transcodes_ms, capacity)
    }
    /// The stalls, as a share of the play time, when `time_ms[n]` is the time with `n` video
    /// transcodes at once.
    fn stalls(&self, time_ms: &[u64], capacity: u32) -> f64 {
        let c = u64::from(capacity);
        let stalled: u64 = time_ms
            .iter()
            .enumerate()
            .map(|(n, ms)| (n as u64).saturating_sub(c) * ms)
            .sum();
        100.0 * stalled as f64 / self.play_ms.max(1) as f64
    }
}

/// The fewest video transcodes any allocation of `budget` needs when the streams play these
/// `sources` and each gets at least `floor` (or its source, when smaller): the smallest
/// videos play direct for as long as they fit beside the others' floors, every other video
/// transcodes. A source above [`VIDEO_MIN_BPS`] is video; the rest play at their source.
pub fn fewest_transcodes(sources: &[u64], budget: u64, floor: u64) -> usize {
    let mut videos: Vec<u64> = sources
        .iter()
        .copied()
        .filter(|&s| s > VIDEO_MIN_BPS)
        .collect();
    videos.sort_unstable();
    let others: u64 = sources.iter().filter(|&&s| s <= VIDEO_MIN_BPS).sum();
    let mut used = others + videos.iter().map(|&s| s.min(floor)).sum::<u64>();
    let mut direct = 0;
    for &s in &videos {
        let more = s - s.min(floor);
        if used + more > budget {
            break;
        }
        used += more;
        direct += 1;
    }
    videos.len() - direct
}
