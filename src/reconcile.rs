//! One reconciliation pass and the restore of originals: the I/O around [`crate::plan`].
//!
//! A pass reads `/Sessions`, `/Users` and the server configuration, takes note of limits an
//! admin changed by hand, plans, and writes each changed limit as a read-modify-write of the
//! user's policy, recording the original in the ledger first. `reconcile --once` and `report`
//! call [`reconcile_once`]; the daemon's engine (`src/daemon/engine.rs`) shares only
//! [`fetch`] and [`plan_snapshot`] and hands its writes to its own writer.

use ipnet::IpNet;
use tracing::{info, warn};

use crate::config::{InternalRanges, Settings};
use crate::ids::{UserId, UserName};
use crate::jellyfin::fleet::{Fleet, MemberView};
use crate::jellyfin::{Client, ErrorKind, JellyfinError, Session, User};
use crate::ledger::{Ledger, LedgerError, LedgerHandle, Observed};
use crate::network;
use crate::plan::{self, Decision, Memory, Plan, Push, Snapshot, fmt_limit, fmt_mbps};
use crate::write::{Applier, WriteOutcome};

/// Why a pass could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// `/Sessions`, `/Users` or the configuration could not be read.
    #[error("cannot read from Jellyfin: {0}")]
    Jellyfin(#[from] JellyfinError),
    /// The state file cannot be read or written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// What Jellyfin looks like right now.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Every session.
    pub sessions: Vec<Session>,
    /// Every user, with its policy.
    pub users: Vec<User>,
    /// The server-wide `RemoteClientBitrateLimit` (bits/s, 0 = none).
    pub server_limit: i64,
    /// The internal ranges in force (configured or imported from Jellyfin).
    pub ranges: Vec<IpNet>,
    /// The other Jellyfin and Emby servers (`[[server]]`), whose sessions and users are in
    /// the lists above under their own names (`src/jellyfin/fleet.rs`).
    pub members: Vec<MemberView>,
}

impl Fetched {
    /// Only the members, while the `[jellyfin]` server has not answered yet: the configured
    /// internal ranges, or Jellyfin's defaults when they are to come from it.
    pub async fn members_only(fleet: &Fleet, settings: &Settings) -> Fetched {
        let ranges = match settings.network.internal_ranges() {
            Ok(InternalRanges::Fixed(nets)) => nets,
            _ => network::jellyfin_default_ranges(),
        };
        let mut f = Fetched {
            sessions: Vec::new(),
            users: Vec::new(),
            server_limit: 0,
            ranges,
            members: Vec::new(),
        };
        f.refresh_members(fleet).await;
        f
    }

    /// Put the members' part of the model in place of what it held: their fresh reads (or
    /// the last good ones) while the `[jellyfin]` server cannot be read, so that a server
    /// that is down does not stop the others being managed.
    pub async fn refresh_members(&mut self, fleet: &Fleet) {
        if !fleet.has_members() {
            return;
        }
        let (read, views) = fleet.read_members().await;
        self.sessions
            .retain(|s| !crate::jellyfin::fleet::is_member_id(s.id.as_str()));
        self.users
            .retain(|u| !crate::jellyfin::fleet::is_member_id(u.id.as_str()));
        self.sessions.extend(read.sessions);
        self.users.extend(read.users);
        fleet.link_same_users(&mut self.users);
        self.members = views;
    }
}

/// The internal ranges in force: the configured list, or Jellyfin's `LocalNetworkSubnets`
/// (Jellyfin's defaults when that list is empty).
pub async fn internal_ranges(
    client: &Client,
    settings: &Settings,
) -> Result<Vec<IpNet>, PassError> {
    match settings
        .network
        .internal_ranges()
        .expect("validated at load")
    {
        InternalRanges::Fixed(nets) => Ok(nets),
        InternalRanges::FromJellyfin => {
            let net = client.network_configuration().await?;
            Ok(ranges_from_jellyfin(&net.local_network_subnets))
        }
    }
}

/// Parse Jellyfin's `LocalNetworkSubnets`, falling back to its defaults when empty. Entries
/// that do not parse are skipped with a warning (Jellyfin ignores them as well).
pub fn ranges_from_jellyfin(subnets: &[String]) -> Vec<IpNet> {
    let nets: Vec<IpNet> = subnets
        .iter()
        .filter_map(|s| match network::parse_cidr(s) {
            Ok(n) => Some(n),
            Err(e) => {
                warn!(subnet = %s, "ignoring Jellyfin LocalNetworkSubnets entry: {e}");
                None
            }
        })
        .collect();
    if nets.is_empty() {
        network::jellyfin_default_ranges()
    } else {
        nets
    }
}

/// Read everything a plan needs, from every server at once. Fails when the `[jellyfin]`
/// server cannot be read; a member that cannot be read is in it by its last good read.
pub async fn fetch(fleet: &Fleet, settings: &Settings) -> Result<Fetched, PassError> {
    let client = fleet.primary();
    let (primary, (members, views)) = tokio::join!(
        async {
            tokio::try_join!(
                async { client.sessions().await.map_err(PassError::from) },
                async { client.users().await.map_err(PassError::from) },
                async { client.server_configuration().await.map_err(PassError::from) },
                internal_ranges(client, settings),
            )
        },
        fleet.read_members(),
    );
    let (mut sessions, mut users, config, ranges) = primary?;
    sessions.extend(members.sessions);
    users.extend(members.users);
    fleet.link_same_users(&mut users);
    Ok(Fetched {
        sessions,
        users,
        server_limit: config.remote_client_bitrate_limit,
        ranges,
        members: views,
    })
}

/// The read of a pass a webhook asked for: only the `[jellyfin]` server's `/Sessions`, put in
/// place of the model's (the other servers' sessions stay, read by their own watch). The users,
/// the server's settings and the internal ranges stay the model's, read by the poll and kept
/// current by the writer's reports of what it wrote. `Ok(false)`, with the model untouched,
/// when a session names a user the model does not know (an account made since the last
/// read): the caller reads everything then.
pub async fn refresh_sessions(fleet: &Fleet, model: &mut Fetched) -> Result<bool, PassError> {
    let sessions = fleet.primary().sessions().await?;
    let known: std::collections::HashSet<&str> =
        model.users.iter().map(|u| u.id.as_str()).collect();
    if sessions
        .iter()
        .filter_map(|s| s.user())
        .any(|id| !known.contains(id.as_str()))
    {
        return Ok(false);
    }
    model
        .sessions
        .retain(|s| crate::jellyfin::fleet::is_member_id(s.id.as_str()));
    model.sessions.splice(0..0, sessions);
    Ok(true)
}

/// What the previous process remembered (`memory.json` beside the state file), on a clock at
/// [`plan::memory::CLOCK_START`]; empty when there is none. The memory only steers the plan
/// (which clients take pushes, the recent load, the last pushes), so a file that cannot be
/// read is logged and left for the next save to replace.
pub fn load_memory(settings: &Settings) -> Memory {
    let path = settings.memory_file();
    let read = std::fs::read(&path).map_err(|e| (e.kind(), e.to_string()));
    let saved = match read.and_then(|b| {
        serde_json::from_slice(&b).map_err(|e| (std::io::ErrorKind::InvalidData, e.to_string()))
    }) {
        Ok(saved) => saved,
        Err((std::io::ErrorKind::NotFound, _)) => return Memory::default(),
        Err((_, e)) => {
            warn!(file = %path.display(), "ignoring the planner's memory: {e}");
            return Memory::default();
        }
    };
    Memory::restored(
        saved,
        plan::memory::CLOCK_START,
        crate::clock::unix_millis_now(),
    )
}

/// Save `memory` (at `now` on its clock) for the next process; a failure is logged.
pub fn save_memory(settings: &Settings, memory: &Memory, now: std::time::Duration) {
    let saved = memory.saved(now, crate::clock::unix_millis_now());
    let mut json = serde_json::to_vec(&saved).expect("memory serializes");
    json.push(b'\n');
    let path = settings.memory_file();
    if let Err(e) = crate::files::write_private(&path, &json) {
        warn!(file = %path.display(), "cannot save the planner's memory: {e}");
    }
}

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

/// A limit an admin changed by hand, now the user's original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandChange {
    /// The user.
    pub user: UserName,
    /// The original before, bits/s (0 = server default).
    pub old_original: i64,
    /// The value set by hand, the new original.
    pub new_original: i64,
}

/// Take note of limits changed by hand: such a value becomes the user's new original.
/// Returns the changes (the ledger changed when there are any).
pub fn observe_hand_changes(ledger: &mut Ledger, users: &[User]) -> Vec<HandChange> {
    let mut changes = Vec::new();
    for u in users {
        if let Observed::HandChanged { old_original } =
            ledger.observe(&u.id, &u.display_name(), u.remote_limit())
        {
            warn!(
                user = %u.display_name(),
                old_original,
                new_original = u.remote_limit(),
                "limit was changed by hand; taking it as the user's new original"
            );
            changes.push(HandChange {
                user: u.display_name(),
                old_original,
                new_original: u.remote_limit(),
            });
        }
    }
    changes
}

/// Compute the plan for a snapshot: note hand changes in the ledger (saved unless `dry_run`),
/// then plan with the daemon's `memory` at `now` and the budget in force
/// (`settings.budget()`'s, or the meter's). Shared by [`reconcile_once`] and the daemon's
/// engine.
///
/// `fresh`: the snapshot's users were read just now. A stale one (the engine's model while
/// Jellyfin cannot be read) shows limits from before our latest writes: a value that has
/// left the ledger's recent ones would look changed by hand and become a false original, so
/// hand changes are only taken from a fresh read.
#[allow(clippy::too_many_arguments)]
pub fn plan_snapshot(
    fetched: &Fetched,
    fresh: bool,
    ledger: &LedgerHandle,
    memory: &Memory,
    now: std::time::Duration,
    budget_bps: u64,
    overrides: &crate::control::Overrides,
    servers: &[plan::ServerClaim],
    settings: &Settings,
    dry_run: bool,
) -> Result<(Plan, Vec<HandChange>), PassError> {
    let hand_changes = if fresh {
        ledger.change(|l| observe_hand_changes(l, &fetched.users))
    } else {
        Vec::new()
    };
    if !hand_changes.is_empty() && !dry_run {
        ledger.save()?;
    }
    let plan = ledger.read(|l| {
        plan::plan(
            &Snapshot {
                sessions: &fetched.sessions,
                users: &fetched.users,
                server_limit: fetched.server_limit,
                ranges: &fetched.ranges,
                budget_bps,
                overrides,
                servers,
            },
            l,
            memory,
            now,
            settings,
        )
    });
    for w in &plan.warnings {
        warn!("{w}");
    }
    info!(
        algorithm = %plan.algorithm,
        budget = %fmt_mbps(plan.budget),
        streaming = %fmt_mbps(plan.streaming),
        held = %fmt_mbps(plan.held),
        remote_users = plan.claimants(),
        changes = plan.decisions.iter().filter(|d| d.needs_write()).count(),
        pushes = plan.push_count(),
        dry_run,
        decisions = %plan.summary(),
        "planned"
    );
    Ok((plan, hand_changes))
}

/// One pass: fetch, plan, write, push. With `dry_run` nothing is written, not even the ledger,
/// and nothing is pushed.
pub async fn reconcile_once(
    client: &Fleet,
    settings: &Settings,
    ledger: &LedgerHandle,
    dry_run: bool,
) -> Result<PassReport, PassError> {
    let fetched = fetch(client, settings).await?;
    // The schedule was validated when the settings loaded.
    let (budget_bps, entry) =
        crate::budget::feed::static_budget_at(settings, jiff::Timestamp::now())
            .unwrap_or((settings.budget().budget_bps, None));
    let mut notes: Vec<String> = entry
        .map(|e| format!("schedule \"{e}\""))
        .into_iter()
        .collect();
    if settings.bandwidth.meter.is_some() {
        notes.push("static: the meter is followed by the daemon".into());
    }
    // What the other media servers stream outside the house comes off it first, as in the
    // daemon without a meter (a pass has no measurement that would hold it already).
    let (servers_bps, server_notes) = crate::budget::feed::servers_streaming_once(settings).await;
    let budget_bps = budget_bps.saturating_sub(servers_bps);
    notes.extend(server_notes);
    let budget_note = (!notes.is_empty()).then(|| notes.join("; "));
    // What the daemon (or the pass) before this one remembered: the same decisions as it.
    let mut memory = load_memory(settings);
    let now = plan::memory::CLOCK_START;
    // The daemon's overrides (a pause, pins) hold for a pass too.
    let overrides =
        crate::control::load(&settings.overrides_file(), !dry_run).unwrap_or_else(|e| {
            warn!("{e}");
            crate::control::Overrides::default()
        });
    let (plan, _) = plan_snapshot(
        &fetched,
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
