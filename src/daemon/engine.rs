//! The engine: one task that drives the engine's core ([`logic::Core`], free of I/O: the
//! model of what the servers are doing, the last [`Snapshot`] read patched by webhooks between
//! reads; the planner's memory; when to recompute) and carries out what the core asks: reads
//! of the servers, the writer's decisions, the torrent clients' and media servers' limits,
//! notifications, the history.
//!
//! Inputs arrive through a channel (playback start/stop from `/hook`) and from the poll timer.
//! A start or stop opens a debounce window; when it closes, the engine reads `/Sessions` once,
//! plans with the same code as `reconcile --once`, and hands the decisions to the writer. A
//! burst of N events therefore costs one read and one recompute, and since the engine is a
//! single task there is never more than one `/Sessions` request in flight. When to plan and
//! why (the window, the poll, a plan's wake-up, an override's end) is [`Schedule`]'s pure rule
//! (`src/daemon/schedule.rs`), which the simulation runs too.
//!
//! A webhook's pass reads `/Sessions` alone: the users (with their policies), the server-wide
//! limit and the internal ranges are read by every other pass (the poll, start-up, a budget
//! change, an owner's action) and when a session names a user the model does not know. The
//! writer reports each limit it puts in place, so the model's users stay what Jellyfin holds
//! between polls; a limit changed by hand meanwhile is found by the writer's read just before
//! its next write for that user, or by the next poll.
//!
//! When the read fails, the event still updates the model (the session is marked playing or
//! stopped) and the plan is made from that, so the decision is not lost; the next successful
//! read corrects it. While Jellyfin is down, reads back off exponentially (with jitter) up to the
//! poll interval, so they never pile up.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::adapters::budget::feed::Feed;
use crate::adapters::jellyfin::fleet::Fleet;
use crate::adapters::ledger::LedgerHandle;
use crate::adapters::notify::conditions::Observation;
use crate::adapters::webhook::HookEvent;
use crate::config::Settings;
use crate::core::control::{Action, ControlError, Known, Overrides};
use crate::core::plan::memory::CLOCK_START;
use crate::snapshot::Snapshot;

use super::schedule::Trigger;
use super::seeders::Seeding;
use super::status::Status;
use super::writer::{Report, WriterHandle};

pub(crate) mod logic;

use logic::{Core, Effect, PlanWith};

/// What `/hook` and the control API send the engine.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<HookEvent>,
    control: mpsc::Sender<ControlRequest>,
}

/// An owner's action for the engine, and where its answer goes.
pub struct ControlRequest {
    pub action: Action,
    /// "page", "api" or "cli".
    pub by: String,
    pub reply: oneshot::Sender<Result<String, ControlError>>,
}

/// Room for bursts; beyond it events are dropped (counted) and the poll repairs.
const QUEUE: usize = 4096;

/// How often at most the planner's memory is saved while the engine runs.
const MEMORY_SAVE_EVERY: Duration = Duration::from_secs(5);

impl EngineHandle {
    /// Hand a start/stop event to the engine without waiting. Returns false if the queue is
    /// full (the engine is stuck); the caller counts it and the next poll repairs.
    pub fn offer(&self, event: HookEvent) -> bool {
        self.tx.try_send(event).is_ok()
    }

    /// Apply an owner's action; the answer says what changed, or why not. The engine plans
    /// again at once.
    pub async fn control(&self, action: Action, by: &str) -> Result<String, ControlError> {
        let (reply, answer) = oneshot::channel();
        let request = ControlRequest {
            action,
            by: by.to_string(),
            reply,
        };
        let stopped = || ControlError::Invalid("the daemon is stopping".into());
        self.control.send(request).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Everything the engine task needs.
pub struct Engine {
    /// The `[jellyfin]` server and the other Jellyfin and Emby servers.
    pub client: Fleet,
    /// Goes up when what plays on another Jellyfin or Emby server changed
    /// (`src/daemon/members.rs`); `None` without one.
    pub members_changed: Option<tokio::sync::watch::Receiver<u64>>,
    pub settings: Arc<Settings>,
    pub ledger: LedgerHandle,
    pub writer: WriterHandle,
    /// The pushes the writer sent (for the memory) and the limits it put in place (for the
    /// model).
    pub pushed: mpsc::UnboundedReceiver<Report>,
    /// Where the engine records what it read and decided.
    pub status: Arc<Status>,
    pub dry_run: bool,
    /// The budget in force (static, or the meter's), and where Jellyfin's remote streams go
    /// after each plan for the meter's estimate of the rest of the house.
    pub budget: Feed,
    /// Where reads and plans are reported for notifications.
    pub notifier: crate::adapters::notify::Notifier,
    /// Where the torrent clients' combined limit goes after each plan (and at once, lowered,
    /// on a remote PlaybackStart), for `src/daemon/seeders.rs`.
    pub downloaders: tokio::sync::watch::Sender<Option<Seeding>>,
    /// Where the managed media servers' total limits go after each plan, for
    /// `src/daemon/servers.rs`.
    pub servers: tokio::sync::watch::Sender<Option<super::servers::ServerLimits>>,
    /// The owner's overrides, as loaded at start; the engine owns them from then on and saves
    /// every change (`src/core/control.rs`).
    pub overrides: Overrides,
    /// Where plays, link samples, decisions and the owner's actions go (`src/adapters/history.rs`).
    pub history: crate::adapters::history::History,
}

impl Engine {
    /// Start the engine task; returns the handle for `/hook`.
    pub fn spawn(self, shutdown: CancellationToken) -> (EngineHandle, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (control, control_rx) = mpsc::channel(16);
        let task = tokio::spawn(self.run(rx, control_rx, shutdown));
        (EngineHandle { tx, control }, task)
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<HookEvent>,
        mut control: mpsc::Receiver<ControlRequest>,
        shutdown: CancellationToken,
    ) {
        self.status.engine_running(true);
        self.status.set_overrides(&self.overrides);
        let interval = self.settings.daemon.poll_interval();
        // The memory's clock runs from the engine's start, at CLOCK_START (so that times
        // restored from the process before fit on it); it starts from what that process
        // remembered.
        let origin = Instant::now();
        let clock = |at: Instant| CLOCK_START + at.saturating_duration_since(origin);
        let memory = crate::snapshot::load_memory(&self.settings);
        // The first pass is due at once.
        let mut core = Core::new(self.settings.clone(), memory, clock(origin));
        let mut last_saved: Option<Instant> = None;
        let mut members_changed = self.members_changed.take();
        loop {
            // An override that ends asks for a plan then.
            let expiry = self.overrides.next_expiry().map(|at| {
                let left = at.saturating_sub(crate::clock::unix_millis_now());
                clock(Instant::now()) + Duration::from_millis(left)
            });
            let wake = origin + core.next(expiry).saturating_sub(CLOCK_START);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(report) = self.pushed.recv() => on_report(&mut core, report, clock),
                Some(request) = control.recv() => {
                    let answer = self.control(&request, core.model());
                    if answer.is_ok() {
                        // Planned at once: a pause puts the originals back now.
                        core.on_control(clock(Instant::now()));
                    }
                    let _ = request.reply.send(answer);
                }
                Ok(()) = self.budget.state.changed() => {
                    let state = self.budget.state.borrow_and_update();
                    core.on_budget(&state, clock(Instant::now()));
                }
                Ok(()) = async {
                    match members_changed.as_mut() {
                        Some(r) => r.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    core.on_server_changed(clock(Instant::now()));
                }
                ev = rx.recv() => {
                    let Some(ev) = ev else { break };
                    if let Some(effect) = core.make_room(&ev) {
                        self.carry_out(effect);
                    }
                    core.on_hook(&ev, clock(Instant::now()));
                }
                _ = tokio::time::sleep_until(wake) => {
                    let expired = self.expire();
                    let trigger = core.begin(
                        clock(Instant::now()),
                        expired,
                        &self.budget.state.borrow(),
                    );
                    // Events that arrived meanwhile are part of this recompute.
                    while let Ok(ev) = rx.try_recv() {
                        core.absorb(&ev);
                    }
                    while let Ok(report) = self.pushed.try_recv() {
                        on_report(&mut core, report, clock);
                    }
                    let now = clock(Instant::now());
                    let pass = tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break,
                        r = self.refresh(&mut core, now, trigger) => r,
                    };
                    // For the next process; at most every MEMORY_SAVE_EVERY (and at the stop),
                    // so that a burst of plans does not mean a burst of fsyncs beside the
                    // writer's.
                    if !self.dry_run && last_saved.is_none_or(|t| t.elapsed() >= MEMORY_SAVE_EVERY) {
                        crate::snapshot::save_memory(&self.settings, core.memory(), now);
                        last_saved = Some(Instant::now());
                    }
                    let poll_after = if pass.read {
                        interval
                    } else {
                        // 1 s, 2 s, 4 s, ... up to the poll interval.
                        let failures = self.status.consecutive_failures();
                        crate::clock::backoff(failures, Duration::from_secs(1), interval, true)
                    };
                    core.end(clock(Instant::now()), poll_after, pass.wake_at);
                }
            }
        }
        // The plays still open are written as far as they went.
        for r in core.open_plays() {
            self.history.record(r);
        }
        // The pushes reported since the last plan are part of what the next process needs.
        while let Ok(report) = self.pushed.try_recv() {
            on_report(&mut core, report, clock);
        }
        if !self.dry_run {
            crate::snapshot::save_memory(&self.settings, core.memory(), clock(Instant::now()));
        }
        self.status.engine_running(false);
        debug!("engine stopped");
    }

    /// Read Jellyfin and recompute. On a failed read, plan from the (webhook-patched) model so
    /// the decision is not lost.
    async fn refresh(&self, core: &mut Core, now: Duration, trigger: Trigger) -> Pass {
        let started = Instant::now();
        let Some(read) = self.read(core.model_mut(), trigger, started).await else {
            return Pass::default();
        };
        let not_planned = Pass {
            read: read.ok,
            wake_at: None,
        };
        if let Some(m) = core.model() {
            self.status.set_media_servers(&m.members);
        }
        let budget = self.budget.state.borrow().clone();
        let with = PlanWith {
            fresh: read.users_fresh,
            ledger: &self.ledger,
            overrides: &self.overrides,
            budget: &budget,
            now_ms: crate::clock::unix_millis_now(),
            dry_run: self.dry_run,
        };
        let planned = match core.on_snapshot(&with, now) {
            None => return not_planned,
            Some(Err(e)) => {
                warn!("cannot plan: {e}");
                return not_planned;
            }
            Some(Ok(planned)) => planned,
        };
        for effect in planned.effects {
            if let Effect::Write(decisions) = &effect {
                info!(
                    trigger = trigger.as_str(),
                    stale_model = read.stale,
                    changes = decisions.iter().filter(|d| d.needs_write()).count(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "recomputed"
                );
            }
            self.carry_out(effect);
        }
        self.status.remember(
            planned.plan,
            trigger.as_str(),
            read.stale,
            planned.item_starts,
        );
        Pass {
            read: read.ok,
            wake_at: planned.wake_at,
        }
    }

    /// Carry out what the core asks.
    fn carry_out(&self, effect: Effect) {
        match effect {
            Effect::Seeding(seeding) => {
                self.downloaders.send_replace(seeding);
            }
            Effect::Servers(limits) => {
                self.servers.send_replace(Some(limits));
            }
            Effect::Streaming(bps) => {
                self.budget.jellyfin.send_replace(bps);
            }
            Effect::Write(decisions) => {
                if !self.dry_run {
                    self.writer.submit(decisions);
                }
            }
            Effect::Record(rows) => {
                for r in rows {
                    self.history.record(r);
                }
            }
            Effect::Notify(observation) => self.notifier.observe(observation),
        }
    }

    /// Bring the model up to date: a webhook's pass reads `/Sessions` alone (the reaction
    /// path); every other pass, and one that finds a user it does not know, reads users and
    /// settings too. When the read fails, the model stays (patched by webhooks) and the
    /// other servers are read on their own. `None` when there is nothing to plan from.
    async fn read(
        &self,
        model: &mut Option<Snapshot>,
        trigger: Trigger,
        started: Instant,
    ) -> Option<Read> {
        let sessions_only = trigger == Trigger::Webhook && model.is_some();
        let result = match model.as_mut() {
            Some(m) if sessions_only => match m.refresh_sessions(&self.client).await {
                Ok(true) => Ok(None),
                Ok(false) => Snapshot::read(&self.client, &self.settings).await.map(Some),
                Err(e) => Err(e),
            },
            _ => Snapshot::read(&self.client, &self.settings).await.map(Some),
        };
        self.notifier.observe(Observation::Poll(
            result.as_ref().err().map(|e| e.to_string()),
        ));
        self.status.record_poll(
            started.elapsed(),
            result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        );
        match result {
            Ok(fresh) => {
                let users_fresh = fresh.is_some();
                if let Some(f) = fresh {
                    *model = Some(f);
                }
                Some(Read {
                    ok: true,
                    users_fresh,
                    stale: false,
                })
            }
            Err(e) => {
                warn!(trigger = trigger.as_str(), "{e}");
                match model.as_mut() {
                    // The other servers are read on their own, so that they are still
                    // managed while this one is down.
                    Some(m) => m.refresh_members(&self.client).await,
                    None if self.client.has_members() => {
                        *model = Some(Snapshot::members_only(&self.client, &self.settings).await)
                    }
                    None => return None,
                }
                Some(Read {
                    ok: false,
                    users_fresh: false,
                    stale: true,
                })
            }
        }
    }
}

/// What the writer reported: a push to the memory (and the history's play), a limit put in
/// place to the model's user.
fn on_report(core: &mut Core, report: Report, clock: impl Fn(Instant) -> Duration) {
    match report {
        Report::Pushed(sent) => core.on_push_sent(&sent.session_id, clock(sent.at), sent.bitrate),
        Report::Landed { user_id, limit } => core.on_landed(&user_id, limit),
    }
}

/// What a pass's read gave.
struct Read {
    /// Jellyfin answered.
    ok: bool,
    /// The users and settings were read too (not only the sessions).
    users_fresh: bool,
    /// The model is the last one, patched by webhooks (the read failed).
    stale: bool,
}

/// How a pass went.
#[derive(Debug, Default)]
struct Pass {
    /// Jellyfin was read.
    read: bool,
    /// When the plan asks to plan again (on the memory's clock).
    wake_at: Option<Duration>,
}

impl Engine {
    /// Apply an owner's action to the overrides and save them; a change that cannot be saved
    /// is undone (an override that would not survive a restart is refused).
    fn control(
        &mut self,
        request: &ControlRequest,
        model: Option<&Snapshot>,
    ) -> Result<String, ControlError> {
        let known: Vec<Known> = model
            .map(|m| {
                m.users
                    .iter()
                    .map(|u| Known {
                        id: u.id.as_str(),
                        name: u.name.as_ref().map_or("", |n| n.as_str()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let before = self.overrides.clone();
        let now = crate::clock::unix_millis_now();
        self.overrides.expire(now);
        let audit = |result: String| {
            crate::adapters::history::Record::Action(crate::adapters::history::Audit {
                t_ms: now,
                by: request.by.clone(),
                action: request.action.describe(),
                result,
            })
        };
        let done = match self
            .overrides
            .apply(&request.action, &request.by, now, &known)
        {
            Ok(done) => done,
            Err(e) => {
                self.overrides = before;
                info!(by = %request.by, "refused: {} ({e})", request.action.describe());
                self.history.record(audit(format!("refused: {e}")));
                return Err(e);
            }
        };
        if !self.dry_run
            && let Err(e) =
                crate::adapters::overrides::save(&self.settings.overrides_file(), &self.overrides)
        {
            self.overrides = before;
            warn!("cannot save the overrides: {e}");
            return Err(ControlError::Invalid(format!(
                "the overrides cannot be saved ({e}): nothing changed"
            )));
        }
        info!(by = %request.by, "override: {done}");
        self.history.record(audit("done".into()));
        self.status.set_overrides(&self.overrides);
        Ok(done)
    }

    /// Drop the overrides that have ended; true when one did.
    fn expire(&mut self) -> bool {
        let ended = self.overrides.expire(crate::clock::unix_millis_now());
        for e in &ended {
            info!("override: {e}");
        }
        if ended.is_empty() {
            return false;
        }
        if !self.dry_run
            && let Err(e) =
                crate::adapters::overrides::save(&self.settings.overrides_file(), &self.overrides)
        {
            warn!("cannot save the overrides: {e}");
        }
        self.status.set_overrides(&self.overrides);
        true
    }
}

#[cfg(test)]
mod tests;
