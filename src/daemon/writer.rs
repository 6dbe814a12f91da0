//! The writer: one task that turns decisions into policy writes, governed and retried.
//!
//! * Only the **latest** plan counts: a new plan replaces everything pending, so a value that
//!   went stale while waiting (or while a retry backed off) is never written.
//! * Writes are rate-limited with `governor` (`daemon.max_writes_per_second`) to protect
//!   Jellyfin; active streamers go first, then idle users, then users being released.
//! * A failed write is retried with exponential backoff (capped), re-derived from the latest
//!   plan each time.
//! * The plan's pushes (`SetMaxStreamingBitrate`, down or up; see `crate::core::plan`) are sent once
//!   the user's new limit is in place, since the stream re-negotiates under it; each one sent is
//!   reported back to the engine (the push cooldown and the check for clients that ignore
//!   pushes live in its memory), and so is each limit put in place (the engine's model of the
//!   users is read only by the poll).
//! * Each write reads the user just before (the lossless read-modify-write: a policy POST
//!   replaces the whole policy, and only a fresh read says what else it holds now); a limit
//!   changed by hand found there is kept, becomes the original and is notified.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::adapters::jellyfin::fleet::Fleet;
use crate::adapters::ledger::LedgerHandle;
use crate::adapters::notify::conditions::Observation;
use crate::core::plan::Decision;
use crate::ids::{SessionId, UserId};
use crate::metrics::Metrics;
use crate::write::{Applied, Applier, WriteOutcome, retry_delay};

/// The handle the engine sends plans through.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::UnboundedSender<Vec<Decision>>,
}

impl WriterHandle {
    /// Replace whatever is pending with the decisions of the latest plan that need a write or
    /// a push.
    pub fn submit(&self, decisions: Vec<Decision>) {
        let todo: Vec<Decision> = decisions.into_iter().filter(|d| d.has_work()).collect();
        let _ = self.tx.send(todo);
    }
}

/// A push the writer sent, reported to the engine.
#[derive(Debug, Clone)]
pub struct PushSent {
    pub session_id: SessionId,
    pub bitrate: u64,
    pub at: Instant,
}

/// What the writer tells the engine.
#[derive(Debug, Clone)]
pub enum Report {
    /// A push was sent (for the memory: cooldowns, clients that ignore pushes).
    Pushed(PushSent),
    /// Jellyfin holds `limit` for the user now (written, or found already set): the model's
    /// users are read only by the poll, so the plans between polls see it from here.
    Landed { user_id: UserId, limit: i64 },
}

struct Pending {
    decision: Decision,
    attempts: u32,
    not_before: Instant,
}

/// Start the writer task. It stops when `shutdown` is cancelled, once the write in flight (if
/// any) is answered, dropping what is pending (the ledger still holds every original).
pub fn spawn(
    client: Fleet,
    ledger: LedgerHandle,
    max_per_second: u32,
    pushed: mpsc::UnboundedSender<Report>,
    metrics: Arc<Metrics>,
    notifier: crate::adapters::notify::Notifier,
    shutdown: CancellationToken,
) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let applier = Applier::new(client, ledger, max_per_second);
    let out = Reports {
        pushed,
        stats: metrics,
        notifier,
    };
    let task = tokio::spawn(run(applier, rx, out, shutdown));
    (WriterHandle { tx }, task)
}

/// Where the writer reports: pushes sent and limits in place (for the engine), metrics,
/// notifications.
struct Reports {
    pushed: mpsc::UnboundedSender<Report>,
    stats: Arc<Metrics>,
    notifier: crate::adapters::notify::Notifier,
}

async fn run(
    applier: Applier,
    mut rx: mpsc::UnboundedReceiver<Vec<Decision>>,
    out: Reports,
    shutdown: CancellationToken,
) {
    let mut queue = Queue::default();
    loop {
        out.stats.pending_writes.set(queue.len() as i64);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            plan = rx.recv() => match plan {
                Some(plan) => queue.install(plan),
                None => break,
            },
            _ = sleep_until_opt(queue.next_due()) => {}
        }
        // Write every due item, best first, always from the latest plan.
        loop {
            while let Ok(plan) = rx.try_recv() {
                queue.install(plan);
            }
            out.stats.pending_writes.set(queue.len() as i64);
            let Some((user, writes)) = queue.best_due(Instant::now()) else {
                break;
            };
            if writes {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    _ = applier.ready() => {}
                }
                // A newer plan may have arrived while we waited for the limiter.
                while let Ok(plan) = rx.try_recv() {
                    queue.install(plan);
                }
            }
            let Some(d) = queue.decision(&user) else {
                continue;
            };
            // At shutdown only the read before the write is given up: a write cut off in
            // flight may still be applied by Jellyfin, and the restore would have to wait for
            // it. Its answer comes within the client's timeout.
            let applied = applier
                .apply(&d, shutdown.cancelled(), |old, new| {
                    out.notifier.observe(Observation::HandChange(
                        d.user_name.to_string(),
                        old,
                        new,
                    ));
                })
                .await;
            out.report(&d, &applied);
            queue.settle(&d, applied.write);
            if shutdown.is_cancelled() {
                return;
            }
        }
    }
    out.stats.pending_writes.set(0);
}

impl Reports {
    /// Tell the engine, the notifier and the metrics what a decision's application did: each
    /// push sent, whether the write failed, the limit Jellyfin holds now.
    fn report(&self, d: &Decision, applied: &Applied) {
        for (s, p, sent) in &applied.pushes {
            if sent.is_ok() {
                self.stats.push(p.direction);
                let _ = self.pushed.send(Report::Pushed(PushSent {
                    session_id: s.session_id.clone(),
                    bitrate: p.bitrate,
                    at: Instant::now(),
                }));
            }
        }
        let Some(outcome) = &applied.write else {
            return;
        };
        self.notifier.observe(Observation::Write(match outcome {
            WriteOutcome::Failed(e) => Some(e.clone()),
            _ => None,
        }));
        match outcome {
            WriteOutcome::Failed(_) => {
                self.stats.policy_write_failures.inc();
            }
            WriteOutcome::Written => {
                self.stats.policy_writes.inc();
            }
            WriteOutcome::AlreadySet => {}
            o => debug!(user = %d.user_name, outcome = ?o, "not written"),
        }
        if outcome.landed() {
            let _ = self.pushed.send(Report::Landed {
                user_id: d.user_id.clone(),
                limit: d.target,
            });
        }
    }
}

/// What is left to write: the latest plan's decisions, each with its retry state.
#[derive(Default)]
struct Queue {
    pending: HashMap<UserId, Pending>,
}

impl Queue {
    fn len(&self) -> usize {
        self.pending.len()
    }

    /// When the next retry is due (`None`: nothing waits).
    fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.not_before).min()
    }

    /// Install the latest plan: it replaces everything pending. A user whose target did not
    /// change keeps its retry state (so a failing write keeps backing off instead of
    /// hammering).
    fn install(&mut self, plan: Vec<Decision>) {
        let mut next = HashMap::with_capacity(plan.len());
        for d in plan {
            let kept = self
                .pending
                .remove(&d.user_id)
                .filter(|p| p.decision.target == d.target);
            let (attempts, not_before) = kept
                .map(|p| (p.attempts, p.not_before))
                .unwrap_or((0, Instant::now()));
            next.insert(
                d.user_id.clone(),
                Pending {
                    decision: d,
                    attempts,
                    not_before,
                },
            );
        }
        self.pending = next;
    }

    /// The best item due at `now` (`Applier::rank`, then fewest attempts), and whether it
    /// writes a policy (and so waits for the rate limiter).
    fn best_due(&self, now: Instant) -> Option<(UserId, bool)> {
        self.pending
            .iter()
            .filter(|(_, p)| p.not_before <= now)
            .min_by_key(|(id, p)| (Applier::rank(&p.decision), p.attempts, (*id).clone()))
            .map(|(id, p)| (id.clone(), p.decision.needs_write()))
    }

    /// `user`'s pending decision, if the latest plan still has one.
    fn decision(&self, user: &UserId) -> Option<Decision> {
        self.pending.get(user).map(|p| p.decision.clone())
    }

    /// `d` was applied: a failed write is retried later with backoff; anything else is done,
    /// unless a newer plan replaced the decision meanwhile.
    fn settle(&mut self, d: &Decision, write: Option<WriteOutcome>) {
        match write {
            Some(WriteOutcome::Failed(e)) => {
                if let Some(p) = self.pending.get_mut(&d.user_id) {
                    p.attempts += 1;
                    let delay = retry_delay(p.attempts);
                    p.not_before = Instant::now() + delay;
                    warn!(user = %d.user_name, attempt = p.attempts, retry_in = ?delay, "write failed, will retry: {e}");
                }
            }
            _ => {
                // Only drop the entry if it is still the decision just handled.
                if self
                    .pending
                    .get(&d.user_id)
                    .is_some_and(|p| p.decision.target == d.target)
                {
                    self.pending.remove(&d.user_id);
                }
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
