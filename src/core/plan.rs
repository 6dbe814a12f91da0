//! From a snapshot of the servers (sessions and users in the core's own terms,
//! `src/core/media.rs`; the server limit), the [`Originals`] of the users
//! jellydemon changed (the ledger's) and the daemon's [`Memory`] to one decision per managed
//! user: the limit it should have now, why, and which
//! running streams to push. Pure: no I/O, so every rule is unit-tested here and shared by
//! `reconcile --once`, the daemon, `check`, the simulation and the tests.
//!
//! A limit only bites when a stream starts, so limits are computed from the rates that run now
//! (the steps are in [`rule`]):
//! 1. classify every session (remote / local / unknown endpoint) and keep the remote ones that
//!    play (paused ones only with `count_paused`); a managed user with k remote streams is one
//!    claimant; streams of users jellydemon does not manage count at their rate;
//! 2. find streams that ignore limits (*uncontrolled*): they count at their real rate and are
//!    never pushed;
//! 3. fair shares `f(u)`, water-filled with each claimant's demand (the source bitrate of what
//!    it plays, times `demand.overhead`) as a cap;
//! 4. held rates `h(s)` and each active user's limit `max(floor, min(share, budget - Σ h of the
//!    others))`;
//! 5. pushes down (a stream above its user's new limit) and up (a stream held well below what
//!    it could now get), within the headroom; then the limits again, beside the rates held
//!    after the pushes; quantization and hysteresis, never past the headroom;
//! 6. every idle managed user at the join share `max(floor, min(fair share with one more
//!    claimant, budget - Σ h))`;
//! 7. users jellydemon changed who are no longer managed get their original back.
//!
//! This file holds what the steps share and runs them in order; the sessions are classified
//! and the claimants found in `plan/claim.rs` (1, 2), the steps for active users are in
//! `plan/active.rs` (2, 4, 5), for idle and released ones in
//! `plan/idle.rs` (6, 7), the transcode step in `plan/direct.rs`; a user's floor and ceiling in
//! `plan/bounds.rs`, the reasons' words in `plan/reasons.rs`, the originals it is given in
//! `plan/originals.rs`, and what a plan returns in `plan/decision.rs`.

mod active;
mod bounds;
mod claim;
mod decision;
mod direct;
mod idle;
pub mod memory;
mod originals;
mod reasons;
pub mod rule;
pub mod servers;
pub mod transcode;

pub use servers::{ServerClaim, ServerShare};

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use smallvec::SmallVec;

use crate::config::{Budget, MAX_JELLYFIN_LIMIT_BPS, Settings, mbps_to_bps};
use crate::core::HashMap;
use crate::core::allocate::{self, Claimant};
use crate::core::control::{Overrides, UserRule};
use crate::core::media::{Account, Playback};
use crate::core::rate::Mbps;
use crate::ids::{ClientAddr, DeviceName, SessionId, UserId};

pub use decision::{
    Decision, DownloaderShare, Plan, Push, Role, SessionView, StreamRef, TranscodeLoad,
    Uncontrolled, Warning, fmt_limit,
};
pub use memory::Memory;
pub use originals::Originals;

use active::{active_decision, held, pinned_decisions};
use bounds::{Bounds, bounds, effective, kept, quantize_keeping};
use claim::{claimants, classify};
use direct::{keep_direct, server_transcodes};
use idle::{idle_decisions, released, same_people, with_same_people};
use reasons::Why;
pub use reasons::{ActiveReason, ActiveTerm, JoinReason, Reason, TranscodeNote};
pub use rule::Direction;

/// Everything a plan is computed from.
pub struct Inputs<'a> {
    /// Every session of the servers (`GET /Sessions`), patched by the webhooks since.
    pub sessions: &'a [Playback],
    /// Every user of the servers (`GET /Users`), with the limits written since.
    pub users: &'a [Account],
    /// The server-wide `RemoteClientBitrateLimit` (bits/s, 0 = none).
    pub server_limit: i64,
    /// The internal ranges in force (configured or imported from Jellyfin).
    pub ranges: &'a [IpNet],
    /// The budget shared among remote streams, bits/s: `settings.budget()`'s static one, or
    /// what the meter (`src/adapters/budget.rs`) leaves beside the rest of the house.
    pub budget_bps: u64,
    /// The owner's overrides in force (`src/core/control.rs`): pause, pins, exemptions, weights,
    /// a reserve taken off the budget.
    pub overrides: &'a Overrides,
    /// The other media servers whose total limit jellydemon sets (`[[server]]
    /// manage_wan_total`), those read lately.
    pub servers: &'a [ServerClaim],
}

pub use crate::core::media::PUSH_COMMAND;

/// How long after a push a stream must show its new rate before it is taken for one that
/// ignores the push (a client re-requests playback within a few seconds).
pub const PUSH_SETTLE: Duration = Duration::from_secs(15);

/// After a remote item stops, streams are not pushed up for this long: the next item of an
/// autoplaying client usually starts within seconds and needs the room.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// A stream runs this many percent above a limit before it counts as ignoring it (transcodes
/// overshoot their target a little).
const UNCONTROLLED_MARGIN_PERCENT: u64 = 10;

/// The torrent clients' combined limit: the budget less what the remote streams hold after
/// this plan, never below what they keep.
fn downloaders_share(settings: &Settings, kept: u64, budget: u64, held: u64) -> DownloaderShare {
    use crate::config::DownloaderPriority;
    let left = budget.saturating_sub(held);
    let limit = left.max(kept);
    let reason = if left >= kept {
        format!(
            "what the remote streams leave: {} of {} less {} they hold",
            Mbps(left),
            Mbps(budget),
            Mbps(held)
        )
    } else {
        match settings.bandwidth.downloaders.priority {
            DownloaderPriority::Streams => format!(
                "the minimum of {}: the remote streams hold {} of {}",
                Mbps(kept),
                Mbps(held),
                Mbps(budget)
            ),
            DownloaderPriority::Share => {
                format!("their share of {} beside the remote streams", Mbps(budget))
            }
        }
    };
    DownloaderShare {
        limit,
        kept,
        min: settings.bandwidth.downloaders.min_bps().min(kept),
        reason,
    }
}

/// What every step reads: the inputs, and the settings in bits/s.
struct Context<'a> {
    snapshot: &'a Inputs<'a>,
    originals: &'a Originals,
    memory: &'a Memory,
    /// On the memory's clock.
    now: Duration,
    settings: &'a Settings,
    budget: crate::config::Budget,
    /// Each user's place in `snapshot.users`, by id.
    users: HashMap<&'a UserId, usize>,
}

impl<'a> Context<'a> {
    /// The user with this id.
    fn user(&self, id: &UserId) -> Option<&'a Account> {
        self.users.get(id).map(|&i| &self.snapshot.users[i])
    }

    /// Managed: remote access, not disabled, not excluded.
    fn managed(&self, u: &Account) -> bool {
        let overrides = self.snapshot.overrides;
        !u.disabled
            && u.remote_access
            && !self.settings.users.is_excluded(&u.id, u.name_str())
            && !overrides.paused()
            && overrides.user(u.id.as_str()) != Some(UserRule::Exempt)
    }

    /// The limit the owner pinned a managed user at.
    fn pin(&self, u: &Account) -> Option<u64> {
        match self.snapshot.overrides.user(u.id.as_str()) {
            Some(UserRule::Pin { bps }) => Some(bps.min(MAX_JELLYFIN_LIMIT_BPS)),
            _ => None,
        }
    }

    /// The user's floor and ceiling, from its original limit (the ledger's, else the current).
    fn bounds_of(&self, u: &Account) -> Bounds {
        let original = self.originals.original(&u.id).unwrap_or(u.limit);
        bounds(self.settings, original, self.server_limit_of(u))
    }

    /// The server-wide limit of the user's server (bits/s, 0 = none): a user of another
    /// `[[server]]` has its own (`src/adapters/jellyfin/fleet.rs`).
    fn server_limit_of(&self, u: &Account) -> i64 {
        u.server_limit.unwrap_or(self.snapshot.server_limit)
    }

    fn weight(&self, u: &Account) -> u64 {
        if let Some(UserRule::Weight { weight }) = self.snapshot.overrides.user(u.id.as_str()) {
            return allocate::weight_milli(weight);
        }
        let p = &self.settings.bandwidth.priority;
        allocate::weight_milli(p.weight(u.name_str(), u.admin))
    }

    /// `demand.default_mbps`: the rate of a stream Jellyfin reports none for.
    fn default_rate(&self) -> u64 {
        mbps_to_bps(self.settings.bandwidth.demand.default_mbps)
    }

    /// What a stream would use without a limit: its source (or the default) times the
    /// overhead.
    fn demand(&self, source: Option<u64>) -> u64 {
        let overhead = self.settings.bandwidth.demand.overhead;
        (source.unwrap_or(self.default_rate()) as f64 * overhead).round() as u64
    }
}

/// A running stream as the planner sees it.
struct Stream {
    session_id: SessionId,
    item_id: Arc<str>,
    device: DeviceName,
    supports_push: bool,
    ip: ClientAddr,
    source: Option<u64>,
    rate: Option<u64>,
    /// The item has a video stream.
    video: bool,
    /// Its source is 4K.
    uhd: bool,
    /// Jellyfin transcodes its video now.
    transcoding: bool,
    /// It would play direct under a limit at its source (the transcode is not for a codec).
    for_bitrate: bool,
}

/// A user's running streams: inline while there is one (nearly always).
type Streams = SmallVec<[Stream; 1]>;

/// What the memory and the originals say about one running stream.
struct Watched {
    /// Its rate for the plan: the current one, or what a push sent a moment ago will make it.
    rate: u64,
    uncontrolled: Option<Uncontrolled>,
    start_bound: Option<u64>,
    /// When its push cooldown ends, if it has not yet.
    cooldown_ends: Option<Duration>,
}

/// An active user: the streams and the figures the steps need.
struct Active<'a> {
    user: &'a Account,
    /// Its place in `snapshot.users`.
    index: usize,
    streams: Streams,
    watched: SmallVec<[Watched; 1]>,
    bounds: Bounds,
    current: i64,
    claimant: Claimant,
    /// Per stream: what it would use (source or default, times the overhead).
    demands: SmallVec<[u64; 1]>,
}

/// Step 2's result.
struct Claimants<'a> {
    active: Vec<Active<'a>>,
    /// Users the owner pinned that stream from outside, with their streams.
    pinned: Vec<(&'a Account, Streams)>,
    /// What the remote streams of users jellydemon does not manage carry.
    unmanaged_bps: u64,
    /// What all remote streams carry now (unknown rates count 0).
    streaming: u64,
}

/// Step 4's result, per active user and stream: flat, user `i`'s streams at
/// `starts[i]..starts[i + 1]` (one allocation per figure, not one per user).
struct Held {
    starts: Vec<usize>,
    running: Vec<rule::Running>,
    /// `h(s)` and the push that gets it there.
    held: Vec<(u64, Option<Direction>)>,
    total: u64,
    /// What each stream counts for in the other users' limits: a pushable one at most at its
    /// share, since it is pushed down when another user's next item needs the room.
    counted: Vec<u64>,
    counted_total: u64,
    wake_at: Option<Duration>,
}

impl Held {
    fn span(&self, i: usize) -> std::ops::Range<usize> {
        self.starts[i]..self.starts[i + 1]
    }
    /// Active user `i`'s streams as step 4 saw them.
    fn running(&self, i: usize) -> &[rule::Running] {
        &self.running[self.span(i)]
    }
    /// Active user `i`'s held rates and pushes.
    fn held(&self, i: usize) -> &[(u64, Option<Direction>)] {
        &self.held[self.span(i)]
    }
    /// What active user `i`'s streams count for in the others' limits.
    fn counted(&self, i: usize) -> &[u64] {
        &self.counted[self.span(i)]
    }
}

/// Compute the plan at time `now` (on the clock of `memory`; one-shot commands pass an empty
/// memory). `originals` are those of the users jellydemon already changed.
pub fn plan(
    snapshot: &Inputs,
    originals: &Originals,
    memory: &Memory,
    now: Duration,
    settings: &Settings,
) -> Plan {
    let reserved = snapshot.overrides.reserve_bps().min(snapshot.budget_bps);
    let mut cx = Context {
        snapshot,
        originals,
        memory,
        now,
        settings,
        budget: Budget {
            budget_bps: snapshot.budget_bps - reserved,
            ..settings.budget()
        },
        users: snapshot
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| (&u.id, i))
            .collect(),
    };
    let algorithm = settings.bandwidth.algorithm;
    let mut warnings = Vec::new();

    // 1. Sessions; a user of another server who is the same person as a `[jellyfin]` user
    //    claims as that user.
    let same = same_people(&cx);
    let (sessions, remote_by_user) = classify(
        snapshot,
        settings.bandwidth.count_paused,
        &same,
        &mut warnings,
    );
    // 2. Claimants, and the streams that ignore limits.
    let Claimants {
        active,
        pinned,
        unmanaged_bps,
        streaming,
    } = claimants(&cx, remote_by_user, &mut warnings);
    // 3. What the torrent clients keep whatever the streams need, then fair shares of the
    //    rest, and the limit for each of a user's streams' next item.
    let claimants: Vec<Claimant> = active.iter().map(|a| a.claimant).collect();
    let budget = cx.budget.budget_bps;
    let paused = snapshot.overrides.paused();
    let others = servers::others(
        settings,
        &claimants,
        snapshot.servers,
        budget.saturating_sub(unmanaged_bps),
    );
    let kept_for_downloaders = others.downloaders.filter(|_| !paused);
    let servers_kept = if paused { 0 } else { others.servers_kept() };
    let servers = if paused { Vec::new() } else { others.servers };
    // The streams' budget, in every step from here on (shares, held rates and the headroom
    // of pushes, the join share), leaves the downloaders and the other servers what they
    // keep.
    cx.budget.budget_bps = budget
        .saturating_sub(kept_for_downloaders.unwrap_or(0))
        .saturating_sub(servers_kept);
    let available = cx.budget.budget_bps.saturating_sub(unmanaged_bps);
    let fair = rule::fair_shares(algorithm, &claimants, available);
    if fair.overloaded {
        warnings.push(Warning::Overload {
            users: active.len(),
            floor: cx.budget.min_per_user_bps,
            budget: available,
        });
    }
    let share: Vec<u64> = active
        .iter()
        .zip(&fair.next_item)
        .map(|(a, s)| rule::per_stream(*s, &a.demands).max(a.bounds.floor))
        .collect();
    // Within what the server transcodes: the fewest streams below their source.
    let (fair, share, transcodes) = keep_direct(&cx, &active, &claimants, available, fair, share);
    // 4. Held rates and pushes.
    let held = held(&cx, &active, &share, unmanaged_bps);
    // 5. Active users' limits.
    let mut decisions: Vec<Decision> = active
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let why = Why {
                term: rule::Term::Share,
                bound: fair.bounds[i],
                share: share[i],
                claimants: claimants.len(),
                available,
                overloaded: fair.overloaded,
                transcodes: transcodes.as_ref().map(|t| (t, i)),
            };
            active_decision(&cx, a, i, &held, why)
        })
        .collect();
    if let Some(t) = transcodes.as_ref().filter(|t| t.load.beyond) {
        for (i, (a, d)) in active.iter().zip(&decisions).enumerate() {
            let target = d.target.max(0) as u64;
            if let Some(s) = (0..a.streams.len()).find(|&s| t.forced(i, s, target)) {
                warnings.push(Warning::TranscodeBeyondCapacity {
                    user_name: a.user.display_name(),
                    device: a.streams[s].device.clone(),
                    transcodes: t.load.count.total(),
                    capacity: t.load.capacity,
                });
            }
        }
    }
    decisions.extend(pinned_decisions(&cx, &pinned));
    sort_by_name(&mut decisions);
    // 6. Idle users' join share.
    decisions.extend(idle_decisions(
        &cx,
        &active,
        &claimants,
        &held,
        available,
        unmanaged_bps,
        &same,
    ));
    //    The same people on other servers get the limit of the one they are.
    decisions = with_same_people(&cx, decisions, &same);
    // 7. Users no longer managed.
    decisions.extend(released(&cx));

    let downloaders =
        kept_for_downloaders.map(|kept| downloaders_share(settings, kept, budget, held.total));
    Plan {
        algorithm,
        budget,
        unmanaged_bps,
        downloaders,
        servers,
        paused,
        reserved,
        held: held.total,
        streaming,
        overloaded: fair.overloaded,
        server_transcodes: server_transcodes(cx.snapshot.sessions),
        transcodes: transcodes.map(|t| t.load),
        wake_at: held.wake_at,
        decisions,
        sessions,
        warnings,
    }
}

/// Sort decisions by their users' names (stably: a name twice keeps its order). The names
/// are sorted, then each decision is moved once to its place.
fn sort_by_name(decisions: &mut Vec<Decision>) {
    let order = crate::ids::name_sort(decisions, |d| d.user_name.as_str());
    let mut slots: Vec<Option<Decision>> = decisions.drain(..).map(Some).collect();
    decisions.extend(
        order
            .into_iter()
            .map(|i| slots[i].take().expect("each place once")),
    );
}

#[cfg(test)]
mod tests;
