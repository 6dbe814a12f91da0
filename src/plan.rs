//! From a snapshot of Jellyfin (sessions, users, server limit) and the ledger to one decision
//! per managed user: the limit it should have now, and why. Pure: no I/O, so every rule of
//! DESIGN.md "Behaviour" is unit-tested here and shared by `reconcile --once`, the daemon and
//! the tests.
//!
//! The steps:
//! 1. classify every session (remote / local / unknown endpoint) and keep the remote ones that
//!    play (paused ones only with `count_paused`);
//! 2. group them per user: a managed user with k remote streams is one claimant whose share is
//!    split over k streams; streams of users jellydemon does not manage are subtracted from the
//!    budget at their current rate;
//! 3. allocate with the configured algorithm, quantize, apply hysteresis;
//! 4. hold every idle managed user at the **join share**
//!    `max(floor, min(fair share with one more claimant, budget - committed))`, where
//!    `committed` is what the running streams use now or may take at their next item;
//! 5. give users in the ledger who are no longer managed their original back.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::allocate::{self, Bound, Claimant};
use crate::anon;
use crate::config::{Algorithm, MAX_JELLYFIN_LIMIT_BPS, Settings, mbps_to_bps};
use crate::jellyfin::{RateSource, Session, User};
use crate::ledger::Ledger;
use crate::network::{self, Location};

/// Everything a plan is computed from.
pub struct Snapshot<'a> {
    pub sessions: &'a [Session],
    pub users: &'a [User],
    /// The server-wide `RemoteClientBitrateLimit` (bits/s, 0 = none).
    pub server_limit: i64,
    /// The internal ranges in force (configured or imported from Jellyfin).
    pub ranges: &'a [IpNet],
}

/// What a user is in this plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Streams from outside right now.
    Active { streams: u32 },
    /// Managed, not streaming from outside: held at the join share.
    Idle,
    /// In the ledger but no longer managed: gets the original back.
    Release,
}

/// The command that makes a client re-negotiate its stream under the user's current limit.
pub const PUSH_COMMAND: &str = "SetMaxStreamingBitrate";

/// One of a user's running remote streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRef {
    pub session_id: String,
    /// Its current rate, when known.
    pub rate: Option<u64>,
    /// The session lists `SetMaxStreamingBitrate` in `SupportedCommands`.
    pub supports_push: bool,
}

/// The decision for one user.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Normalized user id.
    pub user_id: String,
    pub user_name: String,
    pub role: Role,
    /// Where the user's remote streams come from.
    pub endpoints: Vec<IpAddr>,
    /// Sum of the current rates of the user's remote streams (bits/s); unknown rates count 0.
    pub stream_rate: u64,
    /// The user's running remote streams (empty unless active).
    pub streams: Vec<StreamRef>,
    /// The limit Jellyfin holds now.
    pub current: i64,
    /// The limit the user should have.
    pub target: i64,
    /// One line a human can read.
    pub reason: String,
}

impl Decision {
    pub fn needs_write(&self) -> bool {
        self.current != self.target
    }
}

/// How one session was seen.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub session_id: String,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub device: String,
    pub location: Location,
    pub playing: bool,
    pub paused: bool,
    pub rate: Option<RateSource>,
    /// Claims bandwidth in this plan.
    pub counted: bool,
}

/// Something the admin should know about a plan. Personal values are formatted through
/// [`crate::anon`], so a warning can be logged as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// A playing session whose endpoint cannot be classified; it was left alone.
    UnknownEndpoint {
        session_id: String,
        user_name: Option<String>,
        device: String,
        error: network::EndpointError,
    },
    /// Every session comes from this one address: a reverse proxy without `KnownProxies`?
    ProxySuspect(IpAddr),
    /// The floors of `users` remote users exceed the budget.
    Overload {
        users: usize,
        floor: u64,
        budget: u64,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::UnknownEndpoint {
                session_id,
                user_name,
                device,
                error,
            } => {
                let why = anon::endpoint_error(error);
                write!(
                    f,
                    "session {} of {} ({}): {why}; cannot tell whether it is remote, left alone",
                    anon::session(session_id),
                    anon::user(user_name.as_deref().unwrap_or("?")),
                    anon::device(device)
                )
            }
            Warning::ProxySuspect(ip) => write!(
                f,
                "every session comes from {}: a reverse proxy without KnownProxies in Jellyfin? \
                 Jellyfin then sees all clients as local and applies no remote limit",
                anon::ip(*ip)
            ),
            Warning::Overload {
                users,
                floor,
                budget,
            } => write!(
                f,
                "overload: {users} remote users at their floor of {} need more than the budget of {}",
                fmt_mbps(*floor),
                fmt_mbps(*budget)
            ),
        }
    }
}

/// The outcome of planning.
#[derive(Debug, Clone)]
pub struct Plan {
    pub algorithm: Algorithm,
    /// `total_upload - reserved`, bits/s.
    pub budget: u64,
    /// Current rate of remote streams of users jellydemon does not manage.
    pub unmanaged_bps: u64,
    /// What the running remote streams use now or may take at their next item.
    pub committed: u64,
    /// The floors alone exceed the budget.
    pub overloaded: bool,
    /// Active users first, then idle, then released.
    pub decisions: Vec<Decision>,
    pub sessions: Vec<SessionView>,
    /// Things the admin should know (unparseable endpoints, proxy, overload).
    pub warnings: Vec<Warning>,
}

impl Plan {
    /// One line saying who got what and why: every active user with limit and reason, then
    /// the idle users' limit(s). Names go through [`anon`].
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .decisions
            .iter()
            .filter(|d| matches!(d.role, Role::Active { .. }))
            .map(|d| {
                format!(
                    "{} {} ({})",
                    anon::user(&d.user_name),
                    fmt_mbps(d.target.max(0) as u64),
                    d.reason
                )
            })
            .collect();
        let mut idle: Vec<u64> = self
            .decisions
            .iter()
            .filter(|d| d.role == Role::Idle)
            .map(|d| d.target.max(0) as u64)
            .collect();
        if !idle.is_empty() {
            let n = idle.len();
            idle.sort_unstable();
            idle.dedup();
            let values: Vec<String> = idle.into_iter().map(fmt_mbps).collect();
            parts.push(format!("{n} idle at {}", values.join("/")));
        }
        if parts.is_empty() {
            "nobody managed".to_string()
        } else {
            parts.join("; ")
        }
    }

    /// The sum of the active users' limits times their streams.
    pub fn allocated(&self) -> u64 {
        self.decisions
            .iter()
            .map(|d| match d.role {
                Role::Active { streams } => d.target.max(0) as u64 * streams as u64,
                _ => 0,
            })
            .sum()
    }
}

/// Format bits/s as Mbps for humans ("22.5 Mbps").
pub fn fmt_mbps(bps: u64) -> String {
    let m = bps as f64 / 1e6;
    let s = format!("{m:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} Mbps")
}

/// Which cap bounds a user's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CeilingSource {
    MaxPerUser,
    OwnLimit,
    ServerLimit,
    Jellyfin,
}

#[derive(Debug, Clone, Copy)]
struct Bounds {
    floor: u64,
    ceiling: u64,
    source: CeilingSource,
}

/// A user's per-stream floor and ceiling. The ceiling is the smallest of `max_per_user`, the
/// user's original limit when it was > 0 (an admin's own cap is never raised), and the
/// server-wide limit when the original was 0.
fn bounds(settings: &Settings, original: i64, server_limit: i64) -> Bounds {
    let b = settings.budget();
    let mut ceiling = MAX_JELLYFIN_LIMIT_BPS;
    let mut source = CeilingSource::Jellyfin;
    let mut cap = |value: u64, src: CeilingSource| {
        if value < ceiling {
            ceiling = value;
            source = src;
        }
    };
    if let Some(max) = b.max_per_user_bps {
        cap(max, CeilingSource::MaxPerUser);
    }
    if original > 0 {
        cap(original as u64, CeilingSource::OwnLimit);
    } else if server_limit > 0 {
        cap(server_limit as u64, CeilingSource::ServerLimit);
    }
    // Never 0: 0 means "server default" to Jellyfin.
    let ceiling = ceiling.max(1);
    Bounds {
        floor: b.min_per_user_bps.min(ceiling).max(1),
        ceiling,
        source,
    }
}

struct Stream {
    session_id: String,
    supports_push: bool,
    ip: IpAddr,
    rate: Option<u64>,
}

/// Compute the plan. `ledger` supplies the originals of users jellydemon already changed.
pub fn plan(snapshot: &Snapshot, ledger: &Ledger, settings: &Settings) -> Plan {
    let bw = &settings.bandwidth;
    let budget = settings.budget();
    let default_demand = mbps_to_bps(bw.demand.default_mbps);
    let users: HashMap<String, &User> = snapshot.users.iter().map(|u| (u.key(), u)).collect();
    let managed = |u: &User| {
        !u.is_disabled()
            && u.remote_access()
            && !settings.users.is_excluded(&u.id, u.display_name())
    };
    let mut warnings = Vec::new();

    // 1. Sessions.
    let mut views = Vec::with_capacity(snapshot.sessions.len());
    let mut remote_by_user: BTreeMap<String, Vec<Stream>> = BTreeMap::new();
    for s in snapshot.sessions {
        let location = network::classify(s.remote_end_point.as_deref(), snapshot.ranges);
        let user_id = s.user_key();
        let playing = s.is_playing();
        let paused = s.is_paused();
        let rate = s.stream_rate();
        let counts_as_playing = playing && (!paused || bw.count_paused);
        let mut counted = false;
        if let (Some(uid), true) = (&user_id, counts_as_playing) {
            match &location {
                Location::Remote(ip) => {
                    counted = true;
                    remote_by_user.entry(uid.clone()).or_default().push(Stream {
                        session_id: s.id.clone(),
                        supports_push: s.supports(PUSH_COMMAND),
                        ip: *ip,
                        rate: rate.map(RateSource::bps),
                    });
                }
                Location::Unknown(e) => warnings.push(Warning::UnknownEndpoint {
                    session_id: s.id.clone(),
                    user_name: s.user_name.clone(),
                    device: s.device_label(),
                    error: e.clone(),
                }),
                Location::Local(_) => {}
            }
        }
        views.push(SessionView {
            session_id: s.id.clone(),
            user_id,
            user_name: s.user_name.clone(),
            device: s.device_label(),
            location,
            playing,
            paused,
            rate,
            counted,
        });
    }
    if let Some(ip) = network::proxy_suspect(
        views
            .iter()
            .filter_map(|v| v.location.ip().map(|ip| (ip, v.device.as_str()))),
    ) {
        warnings.push(Warning::ProxySuspect(ip));
    }

    // 2. Claimants.
    struct Active<'a> {
        user: &'a User,
        streams: Vec<Stream>,
        bounds: Bounds,
        current: i64,
        claimant: Claimant,
    }
    let mut active: Vec<Active> = Vec::new();
    let mut unmanaged_bps: u64 = 0;
    for (uid, streams) in remote_by_user {
        match users.get(&uid) {
            Some(u) if managed(u) => {
                let current = u.remote_limit();
                let original = ledger.original(&uid).unwrap_or(current);
                let b = bounds(settings, original, snapshot.server_limit);
                let k = streams.len() as u64;
                let demand: u64 = streams
                    .iter()
                    .map(|s| {
                        (s.rate.unwrap_or(default_demand) as f64 * bw.demand.overhead).round()
                            as u64
                    })
                    .sum();
                let claimant = Claimant {
                    weight_milli: allocate::weight_milli(
                        bw.priority.weight(u.display_name(), u.is_admin()),
                    ),
                    floor: b.floor.saturating_mul(k),
                    ceiling: b.ceiling.saturating_mul(k),
                    demand,
                };
                active.push(Active {
                    user: u,
                    streams,
                    bounds: b,
                    current,
                    claimant,
                });
            }
            _ => {
                unmanaged_bps += streams
                    .iter()
                    .map(|s| s.rate.unwrap_or(default_demand))
                    .sum::<u64>();
            }
        }
    }
    let available = budget.budget_bps.saturating_sub(unmanaged_bps);

    // 3. Allocation, quantization, hysteresis.
    let claimants: Vec<Claimant> = active.iter().map(|a| a.claimant).collect();
    let alloc = allocate::allocate(bw.algorithm, &claimants, available);
    if alloc.overloaded {
        warnings.push(Warning::Overload {
            users: active.len(),
            floor: budget.min_per_user_bps,
            budget: available,
        });
    }
    let n = active.len();
    let mut targets: Vec<u64> = Vec::with_capacity(n);
    let mut reasons: Vec<String> = Vec::with_capacity(n);
    for (i, a) in active.iter().enumerate() {
        let k = a.streams.len() as u64;
        let per_stream = allocate::quantize(
            alloc.shares[i] / k,
            budget.step_bps,
            a.bounds.floor,
            a.bounds.ceiling,
        );
        targets.push(per_stream);
        reasons.push(active_reason(
            bw.algorithm,
            alloc.bounds[i],
            alloc.shares[i],
            a.bounds,
            k,
            n,
            available,
            alloc.overloaded,
        ));
    }
    // Hysteresis: keep a current value close to the target. Values below their target are kept
    // first (that frees budget); a value above its target is kept only while the total stays
    // within the budget.
    let mut total: u64 = targets
        .iter()
        .zip(&active)
        .map(|(t, a)| t * a.streams.len() as u64)
        .sum();
    for keep_higher in [false, true] {
        for (i, a) in active.iter().enumerate() {
            let new = targets[i];
            let Ok(cur) = u64::try_from(a.current) else {
                continue;
            };
            if cur == 0
                || cur == new
                || (cur > new) != keep_higher
                || cur < a.bounds.floor
                || cur > a.bounds.ceiling
                || !allocate::within_hysteresis(cur, new, bw.hysteresis_percent)
            {
                continue;
            }
            let k = a.streams.len() as u64;
            if cur < new {
                total -= (new - cur) * k;
            } else if total + (cur - new) * k <= available {
                total += (cur - new) * k;
            } else {
                continue;
            }
            targets[i] = cur;
            reasons[i] = format!(
                "kept: {} is within {}% of the computed {}",
                fmt_mbps(cur),
                bw.hysteresis_percent,
                fmt_mbps(new)
            );
        }
    }

    // 4. Committed bandwidth and the join share for idle users.
    let committed: u64 = unmanaged_bps
        + active
            .iter()
            .zip(&targets)
            .map(|(a, t)| {
                a.streams
                    .iter()
                    .map(|s| s.rate.unwrap_or(0).max(*t))
                    .sum::<u64>()
            })
            .sum::<u64>();
    let headroom = budget.budget_bps.saturating_sub(committed);
    let mut decisions: Vec<Decision> = active
        .iter()
        .zip(targets.iter().zip(reasons))
        .map(|(a, (t, reason))| {
            let mut endpoints: Vec<IpAddr> = a.streams.iter().map(|s| s.ip).collect();
            endpoints.sort_unstable();
            endpoints.dedup();
            Decision {
                user_id: a.user.key(),
                user_name: a.user.display_name().to_string(),
                role: Role::Active {
                    streams: a.streams.len() as u32,
                },
                endpoints,
                stream_rate: a.streams.iter().filter_map(|s| s.rate).sum(),
                streams: a
                    .streams
                    .iter()
                    .map(|s| StreamRef {
                        session_id: s.session_id.clone(),
                        rate: s.rate,
                        supports_push: s.supports_push,
                    })
                    .collect(),
                current: a.current,
                target: *t as i64,
                reason,
            }
        })
        .collect();
    decisions.sort_by_key(|d| d.user_name.to_lowercase());

    let active_ids: std::collections::HashSet<String> =
        decisions.iter().map(|d| d.user_id.clone()).collect();
    let mut join_cache: HashMap<(u64, u64, u64), u64> = HashMap::new();
    let mut idle: Vec<Decision> = Vec::new();
    let mut sorted_users: Vec<&User> = snapshot.users.iter().collect();
    sorted_users.sort_by_key(|u| u.display_name().to_lowercase());
    for u in sorted_users {
        let uid = u.key();
        if active_ids.contains(&uid) || !managed(u) {
            continue;
        }
        let current = u.remote_limit();
        let original = ledger.original(&uid).unwrap_or(current);
        let b = bounds(settings, original, snapshot.server_limit);
        let weight = allocate::weight_milli(bw.priority.weight(u.display_name(), u.is_admin()));
        let fair = *join_cache
            .entry((weight, b.floor, b.ceiling))
            .or_insert_with(|| {
                let mut with_newcomer = claimants.clone();
                with_newcomer.push(Claimant {
                    weight_milli: weight,
                    floor: b.floor,
                    ceiling: b.ceiling,
                    demand: b.ceiling,
                });
                *allocate::allocate(bw.algorithm, &with_newcomer, available)
                    .shares
                    .last()
                    .expect("newcomer share")
            });
        let join = fair.min(headroom).max(b.floor);
        let mut target = allocate::quantize(join, budget.step_bps, b.floor, b.ceiling);
        let mut reason = format!(
            "join share: min(fair share with one more {}, headroom {}), floor {}",
            fmt_mbps(fair),
            fmt_mbps(headroom),
            fmt_mbps(b.floor)
        );
        if target == b.ceiling && join > b.ceiling {
            reason = format!("join share capped by {}", ceiling_label(b.source));
        }
        if current > 0 {
            let cur = current as u64;
            if cur != target
                && cur >= b.floor
                && cur <= b.ceiling
                && allocate::within_hysteresis(cur, target, bw.hysteresis_percent)
            {
                reason = format!(
                    "kept: {} is within {}% of the join share {}",
                    fmt_mbps(cur),
                    bw.hysteresis_percent,
                    fmt_mbps(target)
                );
                target = cur;
            }
        }
        idle.push(Decision {
            user_id: uid,
            user_name: u.display_name().to_string(),
            role: Role::Idle,
            endpoints: Vec::new(),
            stream_rate: 0,
            streams: Vec::new(),
            current,
            target: target as i64,
            reason,
        });
    }
    decisions.extend(idle);

    // 5. Users jellydemon changed but no longer manages get their original back.
    for (uid, entry) in ledger.entries() {
        let Some(u) = users.get(uid) else {
            continue;
        };
        if managed(u) {
            continue;
        }
        decisions.push(Decision {
            user_id: uid.clone(),
            user_name: u.display_name().to_string(),
            role: Role::Release,
            endpoints: Vec::new(),
            stream_rate: 0,
            streams: Vec::new(),
            current: u.remote_limit(),
            target: entry.original,
            reason: "no longer managed: original limit restored".into(),
        });
    }

    Plan {
        algorithm: bw.algorithm,
        budget: budget.budget_bps,
        unmanaged_bps,
        committed,
        overloaded: alloc.overloaded,
        decisions,
        sessions: views,
        warnings,
    }
}

fn ceiling_label(source: CeilingSource) -> &'static str {
    match source {
        CeilingSource::MaxPerUser => "max_per_user",
        CeilingSource::OwnLimit => "the user's own limit",
        CeilingSource::ServerLimit => "the server-wide limit",
        CeilingSource::Jellyfin => "Jellyfin's maximum",
    }
}

#[allow(clippy::too_many_arguments)]
fn active_reason(
    algorithm: Algorithm,
    bound: Bound,
    share: u64,
    b: Bounds,
    streams: u64,
    claimants: usize,
    available: u64,
    overloaded: bool,
) -> String {
    let what = match bound {
        Bound::Fair => format!(
            "{} share {} of {} among {claimants}",
            algorithm,
            fmt_mbps(share),
            fmt_mbps(available)
        ),
        Bound::Floor if overloaded => format!(
            "floor {} (overload: floors exceed the budget)",
            fmt_mbps(b.floor)
        ),
        Bound::Floor => format!("floor {}", fmt_mbps(b.floor)),
        Bound::Ceiling => format!(
            "capped by {} ({})",
            ceiling_label(b.source),
            fmt_mbps(b.ceiling)
        ),
        Bound::Demand => format!("its demand {}", fmt_mbps(share)),
    };
    if streams > 1 {
        format!("{what}, split over {streams} streams")
    } else {
        what
    }
}

#[cfg(test)]
mod tests;
