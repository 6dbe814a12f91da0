//! What a pass plans from: a [`Snapshot`] of the servers (sessions, users with their
//! policies, the server-wide limit, the internal ranges, the other servers' reads), how it is
//! read ([`Snapshot::read`], or [`Snapshot::refresh_sessions`] for a webhook's pass), the
//! limits an admin changed by hand in it, and the plan made from it
//! ([`Snapshot::plan`]). Both `reconcile --once` (`src/reconcile.rs`) and the daemon's engine
//! (`src/daemon/engine.rs`) plan through here; the planner itself is pure (`src/core/plan.rs`).

use ipnet::IpNet;
use tracing::{info, warn};

use crate::adapters::jellyfin::fleet::{Fleet, MemberView};
use crate::adapters::jellyfin::{Client, JellyfinError};
use crate::adapters::ledger::{Ledger, LedgerError, LedgerHandle, Observed};
use crate::config::{InternalRanges, Settings};
use crate::core::media::{Account, Playback};
use crate::core::plan::{self, Memory, Plan};
use crate::core::rate::fmt_mbps;
use crate::ids::UserName;
use crate::network;

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
pub struct Snapshot {
    /// Every session.
    pub sessions: Vec<Playback>,
    /// Every user, with its limit.
    pub users: Vec<Account>,
    /// The server-wide `RemoteClientBitrateLimit` (bits/s, 0 = none).
    pub server_limit: i64,
    /// The internal ranges in force (configured or imported from Jellyfin).
    pub ranges: Vec<IpNet>,
    /// The other Jellyfin and Emby servers (`[[server]]`), whose sessions and users are in
    /// the lists above under their own names (`src/adapters/jellyfin/fleet.rs`).
    pub members: Vec<MemberView>,
}

impl Snapshot {
    /// Only the members, while the `[jellyfin]` server has not answered yet: the configured
    /// internal ranges, or Jellyfin's defaults when they are to come from it.
    pub async fn members_only(fleet: &Fleet, settings: &Settings) -> Snapshot {
        let ranges = match settings.network.ranges() {
            InternalRanges::Fixed(nets) => nets.clone(),
            InternalRanges::FromJellyfin => network::jellyfin_default_ranges(),
        };
        let mut f = Snapshot {
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
            .retain(|s| !crate::adapters::jellyfin::fleet::is_member_id(s.id.as_str()));
        self.users
            .retain(|u| !crate::adapters::jellyfin::fleet::is_member_id(u.id.as_str()));
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
    match settings.network.ranges() {
        InternalRanges::Fixed(nets) => Ok(nets.clone()),
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

impl Snapshot {
    /// Read everything a plan needs, from every server at once. Fails when the `[jellyfin]`
    /// server cannot be read; a member that cannot be read is in it by its last good read.
    pub async fn read(fleet: &Fleet, settings: &Settings) -> Result<Snapshot, PassError> {
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
        let (sessions, users, config, ranges) = primary?;
        let mut sessions: Vec<Playback> = sessions.iter().map(Playback::from).collect();
        let mut users: Vec<Account> = users.iter().map(Account::from).collect();
        sessions.extend(members.sessions);
        users.extend(members.users);
        fleet.link_same_users(&mut users);
        Ok(Snapshot {
            sessions,
            users,
            server_limit: config.remote_client_bitrate_limit,
            ranges,
            members: views,
        })
    }

    /// The read of a pass a webhook asked for: only the `[jellyfin]` server's `/Sessions`, put in
    /// place of this snapshot's (the other servers' sessions stay, read by their own watch). The
    /// users, the server's settings and the internal ranges stay, read by the poll and kept
    /// current by the writer's reports of what it wrote. `Ok(false)`, with the snapshot untouched,
    /// when a session names a user it does not know (an account made since the last read): the
    /// caller reads everything then.
    pub async fn refresh_sessions(&mut self, fleet: &Fleet) -> Result<bool, PassError> {
        let model = self;
        let sessions: Vec<Playback> = (fleet.primary().sessions().await?.iter())
            .map(Playback::from)
            .collect();
        let known: std::collections::HashSet<&str> =
            model.users.iter().map(|u| u.id.as_str()).collect();
        if sessions
            .iter()
            .filter_map(|s| s.user_id.as_ref())
            .any(|id| !known.contains(id.as_str()))
        {
            return Ok(false);
        }
        model
            .sessions
            .retain(|s| crate::adapters::jellyfin::fleet::is_member_id(s.id.as_str()));
        model.sessions.splice(0..0, sessions);
        Ok(true)
    }
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
pub fn observe_hand_changes(ledger: &mut Ledger, users: &[Account]) -> Vec<HandChange> {
    let mut changes = Vec::new();
    for u in users {
        if let Observed::HandChanged { old_original } =
            ledger.observe(&u.id, &u.display_name(), u.limit)
        {
            warn!(
                user = %u.display_name(),
                old_original,
                new_original = u.limit,
                "limit was changed by hand; taking it as the user's new original"
            );
            changes.push(HandChange {
                user: u.display_name(),
                old_original,
                new_original: u.limit,
            });
        }
    }
    changes
}

impl Snapshot {
    /// Compute the plan for this snapshot: note hand changes in the ledger (saved unless `dry_run`),
    /// then plan with the daemon's `memory` at `now` and the budget in force
    /// (`settings.budget()`'s, or the meter's). Shared by `reconcile --once` and the daemon's
    /// engine.
    ///
    /// `fresh`: the snapshot's users were read just now. A stale one (the engine's model while
    /// Jellyfin cannot be read) shows limits from before our latest writes: a value that has
    /// left the ledger's recent ones would look changed by hand and become a false original, so
    /// hand changes are only taken from a fresh read.
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        &self,
        fresh: bool,
        ledger: &LedgerHandle,
        memory: &Memory,
        now: std::time::Duration,
        budget_bps: u64,
        overrides: &crate::core::control::Overrides,
        servers: &[plan::ServerClaim],
        settings: &Settings,
        dry_run: bool,
    ) -> Result<(Plan, Vec<HandChange>), PassError> {
        let fetched = self;
        let hand_changes = if fresh {
            ledger.change(|l| observe_hand_changes(l, &fetched.users))
        } else {
            Vec::new()
        };
        if !hand_changes.is_empty() && !dry_run {
            ledger.save()?;
        }
        let originals = ledger.read(Ledger::originals);
        let plan = plan::plan(
            &plan::Inputs {
                sessions: &fetched.sessions,
                users: &fetched.users,
                server_limit: fetched.server_limit,
                ranges: &fetched.ranges,
                budget_bps,
                overrides,
                servers,
            },
            &originals,
            memory,
            now,
            settings,
        );
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
}
