//! One reconciliation pass (`reconcile --once`, and `report`'s dry run) and the restore of
//! originals: read a [`Snapshot`], plan from it, and apply the plan through the same
//! [`Applier`] as the daemon's writer; `restore` puts every original back.

use tracing::{info, warn};

use crate::adapters::jellyfin::ErrorKind;
use crate::adapters::jellyfin::fleet::Fleet;
use crate::adapters::ledger::{LedgerError, LedgerHandle, Observed};
use crate::config::Settings;
use crate::core::plan::{self, Decision, Plan, Push, fmt_limit};
use crate::ids::{UserId, UserName};
pub use crate::snapshot::PassError;
use crate::snapshot::{Snapshot, load_memory, save_memory};
use crate::write::{Applier, WriteOutcome};

/// The decision and what became of it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was decided.
    pub decision: Decision,
    /// `None`: nothing to write (or dry run).
    pub write: Option<WriteOutcome>,
    /// The pushes sent, with their result (empty in a dry run).
    pub pushes: Vec<(Push, Result<(), String>)>,
}

/// The result of one pass.
#[derive(Debug, Clone)]
pub struct PassReport {
    /// The plan.
    pub plan: Plan,
    /// Per decision, what was done.
    pub outcomes: Vec<Outcome>,
    /// Nothing was written.
    pub dry_run: bool,
    /// Where the budget came from, when not simply `total_upload_mbps - reserved_mbps`
    /// ("schedule \"working hours\"", or that the meter is followed by the daemon only).
    pub budget_note: Option<String>,
}

impl PassReport {
    /// Writes that failed.
    pub fn failed_writes(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.write, Some(WriteOutcome::Failed(_))))
            .count()
    }
    /// Limits written.
    pub fn writes(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.write == Some(WriteOutcome::Written))
            .count()
    }
}

/// One pass: read, plan, write, push. With `dry_run` nothing is written, not even the ledger,
/// and nothing is pushed.
pub async fn reconcile_once(
    client: &Fleet,
    settings: &Settings,
    ledger: &LedgerHandle,
    dry_run: bool,
) -> Result<PassReport, PassError> {
    let fetched = Snapshot::read(client, settings).await?;
    let (budget_bps, entry) =
        crate::adapters::budget::feed::static_budget_at(settings, jiff::Timestamp::now());
    let mut notes: Vec<String> = entry
        .map(|e| format!("schedule \"{e}\""))
        .into_iter()
        .collect();
    if settings.bandwidth.meter.is_some() {
        notes.push("static: the meter is followed by the daemon".into());
    }
    // What the other media servers stream outside the house comes off it first, as in the
    // daemon without a meter (a pass has no measurement that would hold it already).
    let (servers_bps, server_notes) =
        crate::adapters::budget::feed::servers_streaming_once(settings).await;
    let budget_bps = budget_bps.saturating_sub(servers_bps);
    notes.extend(server_notes);
    let budget_note = (!notes.is_empty()).then(|| notes.join("; "));
    // What the daemon (or the pass) before this one remembered: the same decisions as it.
    let mut memory = load_memory(settings);
    let now = plan::memory::CLOCK_START;
    // The daemon's overrides (a pause, pins) hold for a pass too.
    let overrides = crate::adapters::overrides::load(&settings.overrides_file(), !dry_run)
        .unwrap_or_else(|e| {
            warn!("{e}");
            crate::core::control::Overrides::default()
        });
    let (plan, _) = fetched.plan(
        true,
        ledger,
        &memory,
        now,
        budget_bps,
        &overrides,
        // A pass sets no server's total: what they stream came off the budget above.
        &[],
        settings,
        dry_run,
    )?;
    if !dry_run {
        memory.observe(&plan, now);
    }
    // Applied in the daemon's order and under its rate limit; reported in the plan's order.
    let applier = Applier::new(
        client.clone(),
        ledger.clone(),
        settings.daemon.max_writes_per_second,
    );
    let mut order: Vec<usize> = (0..plan.decisions.len()).collect();
    order.sort_by_key(|&i| {
        let d = &plan.decisions[i];
        (Applier::rank(d), d.user_id.clone())
    });
    let mut applied: Vec<Option<crate::write::Applied>> = Vec::new();
    applied.resize_with(plan.decisions.len(), || None);
    if !dry_run {
        for i in order {
            let d = &plan.decisions[i];
            if d.needs_write() {
                applier.ready().await;
            }
            let a = applier.apply(d, std::future::pending(), |_, _| {}).await;
            for (s, p, sent) in &a.pushes {
                if sent.is_ok() {
                    memory.record_push(&s.session_id, now, p.bitrate);
                }
            }
            applied[i] = Some(a);
        }
    }
    let outcomes = plan
        .decisions
        .iter()
        .zip(applied)
        .map(|(d, a)| {
            let (write, pushes) = a.map_or((None, Vec::new()), |a| {
                (
                    a.write,
                    a.pushes.into_iter().map(|(_, p, r)| (p, r)).collect(),
                )
            });
            Outcome {
                decision: d.clone(),
                write,
                pushes,
            }
        })
        .collect();
    if !dry_run {
        save_memory(settings, &memory, now);
    }
    Ok(PassReport {
        plan,
        outcomes,
        dry_run,
        budget_note,
    })
}

/// What `restore` did for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// The original was written back.
    Restored {
        /// The value jellydemon had set.
        from: i64,
        /// The original.
        to: i64,
    },
    /// Jellyfin already held the original.
    AlreadyOriginal(i64),
    /// An admin set another value by hand since; it is kept.
    KeptHandChange {
        /// The value set by hand.
        value: i64,
        /// The original it replaced.
        original: i64,
    },
    /// The user no longer exists in Jellyfin.
    UserGone,
    /// Not restored by the deadline (the last error says why); the user stays in the ledger.
    Failed(String),
}

impl std::fmt::Display for RestoreOutcome {
    /// "18.5 Mbps -> 0 (server default)", in the units the admin sets limits in.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreOutcome::Restored { from, to } => {
                write!(f, "{} -> {}", fmt_limit(*from), fmt_limit(*to))
            }
            RestoreOutcome::AlreadyOriginal(v) => {
                write!(f, "already at its original, {}", fmt_limit(*v))
            }
            RestoreOutcome::KeptHandChange { value, original } => write!(
                f,
                "kept {} set by hand (the original was {})",
                fmt_limit(*value),
                fmt_limit(*original)
            ),
            RestoreOutcome::UserGone => f.write_str("the user no longer exists"),
            RestoreOutcome::Failed(e) => write!(f, "FAILED: {e}"),
        }
    }
}

/// How many users are restored at once: enough to put hundreds back within a shutdown's
/// seconds, few enough not to swamp Jellyfin.
const RESTORE_CONCURRENCY: usize = 8;

/// Put every original back and empty the ledger, retrying each user until `deadline`;
/// the users not restored by then stay in the ledger for the next try. A user leaves the
/// ledger only on a read made after every write of ours to it was answered or can no longer
/// land ([`crate::write::landing_window`]): until then the restore waits (within the
/// deadline). Users are restored eight at a time.
pub async fn restore(
    client: &Fleet,
    ledger: &LedgerHandle,
    deadline: tokio::time::Instant,
) -> Result<Vec<(UserName, RestoreOutcome)>, LedgerError> {
    use futures_util::StreamExt;
    let ids: Vec<(UserId, UserName)> = ledger.read(|l| {
        l.entries()
            .map(|(id, e)| (id.clone(), UserName::new(&e.name)))
            .collect()
    });
    let mut out: Vec<(usize, UserName, RestoreOutcome)> =
        futures_util::stream::iter(ids.into_iter().enumerate())
            .map(|(i, (id, name))| async move {
                let outcome = restore_until(client, ledger, &id, &name, deadline).await;
                match &outcome {
                    RestoreOutcome::Failed(e) => warn!(user = %name, "restore failed: {e}"),
                    o => info!(user = %name, outcome = %o, "restored"),
                }
                (i, name, outcome)
            })
            .buffer_unordered(RESTORE_CONCURRENCY)
            .collect()
            .await;
    // The saves after each user may have failed (they are retried here): the last word.
    ledger.save()?;
    out.sort_by_key(|(i, _, _)| *i);
    Ok(out.into_iter().map(|(_, n, o)| (n, o)).collect())
}

/// One user's restore, tried again (with a backoff) until it is done or `deadline` passes.
async fn restore_until(
    client: &Fleet,
    ledger: &LedgerHandle,
    id: &UserId,
    name: &UserName,
    deadline: tokio::time::Instant,
) -> RestoreOutcome {
    let mut attempt = 0;
    loop {
        let now_ms = crate::clock::unix_millis_now();
        let landing = ledger.read(|l| l.landing_until(id, now_ms));
        let (wait, error) = match landing {
            // A write of ours may still land: the read that decides must come after it.
            Some(until) => (
                std::time::Duration::from_millis(until - now_ms),
                "a limit jellydemon sent was never answered by Jellyfin and may still be \
                 applied; the user stays in the state file until that can no longer happen"
                    .to_string(),
            ),
            None => match restore_once(client, ledger, id, name).await {
                Ok(outcome) => {
                    let (forgotten, saved) =
                        ledger.change_and_save(|l| l.forget(id, crate::clock::unix_millis_now()));
                    if forgotten {
                        if let Err(e) = saved {
                            warn!("{e}");
                        }
                        return outcome;
                    }
                    continue; // a write of ours went out meanwhile: wait for it
                }
                Err(e) => {
                    attempt += 1;
                    (
                        crate::clock::backoff(
                            attempt,
                            std::time::Duration::from_millis(250),
                            std::time::Duration::from_secs(5),
                            true,
                        ),
                        e,
                    )
                }
            },
        };
        if tokio::time::Instant::now() + wait > deadline {
            return RestoreOutcome::Failed(error);
        }
        tokio::time::sleep(wait).await;
    }
}

/// Read the user and put its original back when it holds a value of ours. `Err` is worth
/// another try.
async fn restore_once(
    client: &Fleet,
    ledger: &LedgerHandle,
    id: &UserId,
    name: &UserName,
) -> Result<RestoreOutcome, String> {
    let user = match client.user(id).await {
        Ok(u) => u,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(RestoreOutcome::UserGone),
        Err(e) => return Err(e.to_string()),
    };
    let current = user.remote_limit();
    let Some((observed, original)) = ledger.change(|l| {
        let original = l.original(id)?;
        Some((l.observe(id, name, current), original))
    }) else {
        return Ok(RestoreOutcome::AlreadyOriginal(current));
    };
    match observed {
        Observed::Original => Ok(RestoreOutcome::AlreadyOriginal(original)),
        Observed::HandChanged { old_original } => Ok(RestoreOutcome::KeptHandChange {
            value: current,
            original: old_original,
        }),
        // Writing the original needs no record in flight: landing late, it is the original.
        Observed::Ours | Observed::Untracked => client
            .write_remote_limit(&user, original)
            .await
            .map(|()| RestoreOutcome::Restored {
                from: current,
                to: original,
            })
            .map_err(|e| e.to_string()),
    }
}
