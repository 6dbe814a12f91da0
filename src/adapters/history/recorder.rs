//! The engine's plans turned into history rows, with no I/O.

use std::time::Duration;

use super::{Decision, Record, Sample, plays};

/// Turns the engine's plans into rows: the plays ([`plays::Tracker`]), a link sample when the
/// link changed (at most one per [`SAMPLE_EVERY`]), and every decision that writes or pushes.
/// No I/O: the engine hands the rows to [`super::History::record`].
#[derive(Debug, Default)]
pub struct Recorder {
    plays: plays::Tracker,
    last_sample: Option<Sample>,
}

/// At most one link sample per this period, when the link changed.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// At least one per this period while plans are made, so that the statistics know the
/// daemon ran (unchanged links included).
pub const SAMPLE_AT_LEAST: Duration = Duration::from_secs(300);

impl Recorder {
    /// The rows of a plan made at `now_ms` from `sessions` and `users`, under `budget`.
    pub fn plan(
        &mut self,
        now_ms: u64,
        sessions: &[crate::core::media::Playback],
        users: &[crate::core::media::Account],
        plan: &crate::core::plan::Plan,
        budget: &crate::adapters::budget::feed::BudgetState,
    ) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .plays
            .observe(now_ms, &plays::seen(sessions, users, plan))
            .into_iter()
            .map(Record::Play)
            .collect();
        let cause = if plan.paused {
            "paused".to_string()
        } else if plan.reserved > 0 {
            format!(
                "{}; {} reserved by the owner",
                budget.cause,
                crate::core::rate::fmt_mbps(plan.reserved)
            )
        } else {
            budget.cause.clone()
        };
        let sample = Sample {
            t_ms: now_ms,
            budget_bps: plan.budget,
            cause,
            streaming_bps: plan.streaming,
            held_bps: plan.held,
            other_bps: budget.meter.as_ref().and_then(|m| m.other_bps),
            downloaders_bps: plan.downloaders.as_ref().map(|d| d.limit),
            claimants: plan.claimants() as u32,
            video_transcodes: plan.transcodes.map(|t| t.count.total()),
            beyond_capacity: plan.transcodes.map(|t| t.beyond),
        };
        let due = match &self.last_sample {
            None => true,
            Some(last) => {
                let changed = Sample {
                    t_ms: 0,
                    ..sample.clone()
                } != Sample {
                    t_ms: 0,
                    ..last.clone()
                };
                let since = now_ms.saturating_sub(last.t_ms);
                (changed && since >= SAMPLE_EVERY.as_millis() as u64)
                    || since >= SAMPLE_AT_LEAST.as_millis() as u64
            }
        };
        if due {
            self.last_sample = Some(sample.clone());
            out.push(Record::Sample(sample));
        }
        for d in plan.decisions.iter().filter(|d| d.has_work()) {
            out.push(Record::Decision(Decision {
                t_ms: now_ms,
                user: d.user_name.as_str().to_string(),
                from_bps: d.current,
                to_bps: d.target,
                pushes: d.pushes().count() as u32,
                reason: d.reason.to_string(),
            }));
        }
        out
    }

    /// A push reached `session_id`'s stream.
    pub fn pushed(&mut self, session_id: &str) {
        self.plays.pushed(session_id);
    }

    /// The plays still open, as rows (at the stop).
    pub fn open_plays(&self) -> Vec<Record> {
        self.plays.open().cloned().map(Record::Play).collect()
    }
}
