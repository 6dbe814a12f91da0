//! The engine's core, free of I/O: what it knows between passes (the model of the servers,
//! the planner's memory, the history's open plays, the torrent clients' share, when to plan
//! next) and what each input does to it. Each `on_*` method takes one input (a webhook, a
//! report from the writer, a budget, a read of the servers) and returns the [`Effect`]s for the
//! driver to carry out: the tokio task in `src/daemon/engine.rs` sends them to the writer, the
//! torrent clients, the meter and the history; the effectiveness simulation
//! (`src/sim/effectiveness.rs`) applies them to its simulated world. Times are on the
//! memory's clock (`plan::memory::CLOCK_START` at the daemon's start).
//!
//! The one write it makes itself is through the ledger's handle: a limit changed by hand
//! becomes the user's original, saved before anything is planned from it
//! (`Snapshot::plan`, `src/snapshot.rs`).

use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use crate::adapters::budget::feed::BudgetState;
use crate::adapters::history::{Record, Recorder};
use crate::adapters::ledger::LedgerHandle;
use crate::adapters::notify::conditions::Observation;
use crate::adapters::webhook::{EventKind, HookEvent};
use crate::config::Settings;
use crate::core::control::Overrides;
use crate::core::media::{Playback, device_label, reported, source_rate};
use crate::core::plan::{Decision, DownloaderShare, Memory, Plan, ServerClaim};
use crate::daemon::schedule::{Schedule, Trigger};
use crate::daemon::seeders::Seeding;
use crate::daemon::servers::ServerLimits;
use crate::ids::{SessionId, UserId};
use crate::snapshot::{HandChange, PassError, Snapshot};

/// What the driver carries out for the core.
#[derive(Debug)]
pub enum Effect {
    /// The torrent clients' combined limit (lowered at once when a remote stream starts),
    /// or their originals back; `None` when the plan has no part for them.
    Seeding(Option<Seeding>),
    /// The managed media servers' total limits, or their originals back.
    Servers(ServerLimits),
    /// What Jellyfin's remote streams carry with their overhead, bits/s: the meter's
    /// estimate of the rest of the house subtracts it.
    Streaming(u64),
    /// A plan's decisions for the writer: limits in order, then pushes.
    Write(Vec<Decision>),
    /// Rows for the history.
    Record(Vec<Record>),
    /// What a plan means for notifications.
    Notify(Observation),
}

/// What the core knows between passes.
pub struct Core {
    settings: Arc<Settings>,
    schedule: Schedule,
    /// The last read of the servers, patched by webhooks and the writer's reports since;
    /// `None` before the first.
    model: Option<Snapshot>,
    memory: Memory,
    recorder: Recorder,
    /// The torrent clients' part of the last plan.
    seeding: Option<DownloaderShare>,
    /// The budget and the media servers' streams the last pass used: a change asks for a
    /// plan (`None` before the first, which is due at once anyway).
    planned: Option<(u64, Vec<ServerClaim>)>,
}

/// A plan and what follows from it.
pub struct Planned {
    /// The plan.
    pub plan: Plan,
    /// What the driver carries out, in order.
    pub effects: Vec<Effect>,
    /// When to plan again at the latest (the plan's wake-up, or within a second while
    /// originals are still out after a pause).
    pub wake_at: Option<Duration>,
    /// How many items started since the last plan (the memory's count).
    pub item_starts: u64,
}

/// What a plan is made with beside the model.
pub struct PlanWith<'a> {
    /// The model's users were read just now (hand changes are only taken from such a read).
    pub fresh: bool,
    /// The originals.
    pub ledger: &'a LedgerHandle,
    /// The owner's overrides in force.
    pub overrides: &'a Overrides,
    /// The budget in force, and the media servers' reads.
    pub budget: &'a BudgetState,
    /// Unix milliseconds, for the history's rows.
    pub now_ms: u64,
    /// Nothing is written (the ledger's hand changes are not saved).
    pub dry_run: bool,
}

impl Core {
    /// A core whose first pass is due at `now`, with the memory the last process left.
    pub fn new(settings: Arc<Settings>, memory: Memory, now: Duration) -> Core {
        Core {
            schedule: Schedule::new(settings.daemon.debounce, now),
            settings,
            model: None,
            memory,
            recorder: Recorder::default(),
            seeding: None,
            planned: None,
        }
    }

    /// The model, once a read succeeded.
    pub fn model(&self) -> Option<&Snapshot> {
        self.model.as_ref()
    }

    /// The model, for a read to bring up to date.
    pub fn model_mut(&mut self) -> &mut Option<Snapshot> {
        &mut self.model
    }

    /// The planner's memory.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// The plays still open, as far as they went (at the stop).
    pub fn open_plays(&mut self) -> Vec<Record> {
        self.recorder.open_plays()
    }

    /// When the next pass is due, an override's `expiry` included.
    pub fn next(&self, expiry: Option<Duration>) -> Duration {
        self.schedule.next(expiry)
    }

    /// A webhook's PlaybackStart or PlaybackStop: the model follows it and a pass is due one
    /// debounce later. (A remote start also lowers the torrent clients' limit at once: the
    /// driver asks [`Core::make_room`] first, when the torrent clients hear of it.)
    pub fn on_hook(&mut self, ev: &HookEvent, now: Duration) {
        self.absorb(ev);
        self.schedule.hook(now);
    }

    /// A webhook that arrived as a pass begins: part of it.
    pub fn absorb(&mut self, ev: &HookEvent) {
        if let Some(m) = self.model.as_mut() {
            patch(m, ev);
        }
    }

    /// The writer sent a push at `at`: the memory (cooldowns, clients that ignore pushes)
    /// and the history's play take note.
    pub fn on_push_sent(&mut self, session_id: &SessionId, at: Duration, bitrate: u64) {
        self.memory.record_push(session_id, at, bitrate);
        self.recorder.pushed(session_id.as_str());
    }

    /// The writer put `limit` in place for `user_id`: the model's users are read only by the
    /// poll, so the plans between polls see it from here.
    pub fn on_landed(&mut self, user_id: &UserId, limit: i64) {
        if let Some(u) = self
            .model
            .as_mut()
            .and_then(|m| m.users.iter_mut().find(|u| &u.id == user_id))
        {
            u.limit = limit;
        }
    }

    /// The budget in force changed (the meter, the media servers' streams): a pass is due
    /// when it differs from the one the last plan used.
    pub fn on_budget(&mut self, budget: &BudgetState, now: Duration) {
        let moved = self
            .planned
            .as_ref()
            .is_none_or(|(bps, claims)| budget.budget_bps != *bps || budget.claims != *claims);
        if moved {
            self.schedule.budget_moved(now);
        }
    }

    /// What plays on another Jellyfin or Emby server changed: a pass is due.
    pub fn on_server_changed(&mut self, now: Duration) {
        self.schedule.server_changed(now);
    }

    /// The owner acted: a pass is due at once (a pause puts the originals back now).
    pub fn on_control(&mut self, now: Duration) {
        self.schedule.control(now);
    }

    /// A pass begins at `now` (`expired`: an override ended); returns why. The budget is
    /// the one it plans with.
    pub fn begin(&mut self, now: Duration, expired: bool, budget: &BudgetState) -> Trigger {
        self.planned = Some((budget.budget_bps, budget.claims.clone()));
        self.schedule.begin(now, expired)
    }

    /// The pass ended at `now`: the next is due `poll_after` later, or at the plan's
    /// `wake_at`.
    pub fn end(&mut self, now: Duration, poll_after: Duration, wake_at: Option<Duration>) {
        let has_model = self.model.is_some();
        self.schedule.end(now, poll_after, wake_at, has_model);
    }

    /// Plan from the model at `now` and say what follows: the notifications' observation, the limits for the meter, the
    /// torrent clients and the media servers, the decisions for the writer, the history's
    /// rows. `None` before the first read.
    pub fn on_snapshot(
        &mut self,
        with: &PlanWith,
        now: Duration,
    ) -> Option<Result<Planned, PassError>> {
        let m = self.model.as_ref()?;
        let (plan, hand) = match m.plan(
            with.fresh,
            with.ledger,
            &self.memory,
            now,
            with.budget.budget_bps,
            with.overrides,
            &with.budget.claims,
            &self.settings,
            with.dry_run,
        ) {
            Ok(planned) => planned,
            Err(e) => return Some(Err(e)),
        };
        let mut effects = vec![Effect::Notify(observation(&plan, &hand))];
        effects.extend(hand_out(&plan, self.settings.bandwidth.demand.overhead));
        self.seeding = plan.downloaders.clone();
        let starts = self.memory.item_starts();
        self.memory.observe(&plan, now);
        effects.push(Effect::Write(plan.decisions.clone()));
        let rows = self
            .recorder
            .plan(with.now_ms, &m.sessions, &m.users, &plan, with.budget);
        if !rows.is_empty() {
            effects.push(Effect::Record(rows));
        }
        let wake_at = again_soon(&plan, with.ledger, with.overrides, now, plan.wake_at);
        Some(Ok(Planned {
            item_starts: self.memory.item_starts() - starts,
            plan,
            effects,
            wake_at,
        }))
    }

    /// A remote PlaybackStart: the torrent clients make room for the newcomer's stream at
    /// once, before the debounced plan (their limit bites within a second; the stream's own
    /// limit only when it starts). The room is what the item needs (its bitrates from the
    /// event, else `demand.default_mbps`, times the overhead), at most the user's limit; the
    /// clients keep `min_mbps` (with `priority = "share"` the next plan gives them their
    /// share of the new count of claimants).
    pub fn make_room(&mut self, ev: &HookEvent) -> Option<Effect> {
        let (Some(model), Some(share)) = (self.model.as_ref(), self.seeding.as_mut()) else {
            return None;
        };
        if ev.kind != EventKind::PlaybackStart {
            return None;
        }
        let remote = matches!(
            crate::network::classify(ev.remote_end_point.as_deref(), &model.ranges),
            crate::network::Location::Remote(_)
        );
        if !remote {
            return None;
        }
        let demand = &self.settings.bandwidth.demand;
        let source = source_rate(reported(ev.video_bitrate), reported(ev.audio_bitrate))
            .unwrap_or_else(|| crate::config::mbps_to_bps(demand.default_mbps));
        let limit = ev
            .user_id
            .as_ref()
            .and_then(|id| model.users.iter().find(|u| &u.id == id))
            .map(|u| u.limit)
            .filter(|l| *l > 0)
            .map_or(u64::MAX, |l| l as u64);
        let room = ((source as f64 * demand.overhead).round() as u64).min(limit);
        let lowered = share.limit.saturating_sub(room).max(share.min);
        if lowered >= share.limit {
            return None;
        }
        debug!(
            from = share.limit,
            to = lowered,
            "a remote stream starts: the torrent clients make room"
        );
        share.limit = lowered;
        Some(Effect::Seeding(Some(Seeding::Limit(lowered))))
    }
}

/// What the plan gives the other tasks: Jellyfin's remote streams to the meter's estimate,
/// the torrent clients' combined limit, the managed media servers' totals.
fn hand_out(plan: &Plan, overhead: f64) -> Vec<Effect> {
    let mut out = vec![Effect::Streaming(
        (plan.streaming as f64 * overhead).round() as u64,
    )];
    out.push(Effect::Seeding(match &plan.downloaders {
        _ if plan.paused => Some(Seeding::Release),
        Some(d) => Some(Seeding::Limit(d.limit)),
        None => None,
    }));
    out.push(Effect::Servers(if plan.paused {
        ServerLimits::Release
    } else {
        ServerLimits::Limits(
            plan.servers
                .iter()
                .map(|s| (s.name.clone(), s.limit))
                .collect(),
        )
    }));
    out
}

/// When to plan again: `asked`, or within a second while paused (or a user exempt) with
/// originals still out, because a write in flight when the plan was made landed after it.
fn again_soon(
    plan: &Plan,
    ledger: &LedgerHandle,
    overrides: &Overrides,
    now: Duration,
    asked: Option<Duration>,
) -> Option<Duration> {
    let out = ledger.read(|l| {
        if plan.paused {
            !l.is_empty()
        } else {
            overrides.users.iter().any(|(id, o)| {
                o.value == crate::core::control::UserRule::Exempt
                    && l.get(&UserId::new(id)).is_some()
            })
        }
    });
    if !out {
        return asked;
    }
    let soon = now + Duration::from_secs(1);
    Some(asked.map_or(soon, |a| a.min(soon)))
}

/// What a plan means for notifications: overload, clients ignoring limits, hand changes;
/// names as the daemon shows them (aliases when anonymizing).
pub(super) fn observation(plan: &Plan, hand: &[HandChange]) -> Observation {
    use crate::core::plan::Warning;
    let mut overload = None;
    let mut uncontrolled = Vec::new();
    for w in &plan.warnings {
        match w {
            Warning::Overload {
                users,
                floor,
                budget,
            } => overload = Some((*users, *floor, *budget)),
            Warning::Uncontrolled {
                user_name,
                device,
                rate,
                ..
            } => uncontrolled.push((user_name.to_string(), device.to_string(), *rate)),
            _ => {}
        }
    }
    let beyond_capacity = plan.transcodes.filter(|t| t.beyond).map(|t| {
        crate::adapters::notify::conditions::BeyondCapacity {
            transcodes: t.count.total(),
            capacity: t.capacity.describe(),
            users: plan
                .warnings
                .iter()
                .filter_map(|w| match w {
                    Warning::TranscodeBeyondCapacity { user_name, .. } => {
                        Some(user_name.to_string())
                    }
                    _ => None,
                })
                .collect(),
        }
    });
    Observation::Plan {
        overload,
        uncontrolled,
        beyond_capacity,
        hand_changes: hand
            .iter()
            .map(|h| (h.user.to_string(), h.old_original, h.new_original))
            .collect(),
    }
}

/// Apply a webhook to the last snapshot, so that a decision can be made even if `/Sessions`
/// cannot be read. A start marks (or adds) the session as playing what the event names; a stop
/// marks it stopped.
pub(super) fn patch(model: &mut Snapshot, ev: &HookEvent) {
    let matches = |s: &Playback| match (&ev.session_id, &ev.device_id) {
        (Some(id), _) => s.id == *id,
        (None, Some(dev)) => {
            s.device_id.as_ref() == Some(dev) && s.user_id.as_ref() == ev.user_id.as_ref()
        }
        (None, None) => false,
    };
    match ev.kind {
        EventKind::PlaybackStart => {
            let i = match model.sessions.iter().position(matches) {
                Some(i) => {
                    let s = &mut model.sessions[i];
                    if ev.remote_end_point.is_some() {
                        s.endpoint = ev.remote_end_point.clone();
                    }
                    i
                }
                None if ev.user_id.is_some() => {
                    model.sessions.push(Playback {
                        id: ev.session_id.clone().unwrap_or_else(|| {
                            let device = ev.device_id.as_ref().map_or("?", |d| d.as_str());
                            SessionId::new(format!("hook-{device}"))
                        }),
                        user_id: ev.user_id.clone().filter(|id| !id.is_nil()),
                        user_name: ev.user_name.clone(),
                        endpoint: ev.remote_end_point.clone(),
                        device: device_label(ev.client.as_deref(), ev.device_name.as_deref()),
                        device_id: ev.device_id.clone(),
                        supports_push: false,
                        paused: false,
                        playing: None,
                    });
                    model.sessions.len() - 1
                }
                None => return,
            };
            model.sessions[i].start(
                ev.item_id.as_deref(),
                ev.video_bitrate,
                ev.audio_bitrate,
                ev.is_paused.unwrap_or(false),
            );
        }
        EventKind::PlaybackStop => {
            for s in model.sessions.iter_mut().filter(|s| matches(s)) {
                s.stop();
            }
        }
        _ => {}
    }
}
