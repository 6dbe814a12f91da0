//! From a snapshot of Jellyfin (sessions, users, server limit), the [`Originals`] of the users
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

pub mod memory;
pub mod rule;
pub mod servers;
pub mod transcode;

pub use servers::{ServerClaim, ServerShare};

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ipnet::IpNet;

use crate::allocate::{self, Bound, Claimant};
use crate::config::{Algorithm, Budget, Capacity, MAX_JELLYFIN_LIMIT_BPS, Settings, mbps_to_bps};
use crate::control::{Overrides, UserRule};
use crate::ids::{ClientAddr, DeviceName, SessionId, UserId, UserName};
use crate::jellyfin::{RateSource, Session, User};
use crate::network::{self, Location};

pub use memory::Memory;
pub use rule::Direction;

/// What the planner needs to know of the users jellydemon changed: their original limits (a
/// user's ceiling is never above its own), and the values written since. The ledger
/// (`src/ledger.rs`) is where they are kept; the planner reads them through this and knows
/// nothing of the file.
pub trait Originals {
    /// `user`'s original limit (bits/s; 0 = the server's), if jellydemon changed the user.
    fn original(&self, user: &UserId) -> Option<i64>;
    /// The values jellydemon set out to write for `user` since its original was recorded,
    /// oldest first (empty when none, and after a change by hand).
    fn written(&self, user: &UserId) -> &[i64];
    /// Every user jellydemon changed, with its original.
    fn changed(&self) -> Box<dyn Iterator<Item = (&UserId, i64)> + '_>;
}

/// Everything a plan is computed from.
pub struct Inputs<'a> {
    /// Every session `GET /Sessions` returned.
    pub sessions: &'a [Session],
    /// Every user `GET /Users` returned.
    pub users: &'a [User],
    /// The server-wide `RemoteClientBitrateLimit` (bits/s, 0 = none).
    pub server_limit: i64,
    /// The internal ranges in force (configured or imported from Jellyfin).
    pub ranges: &'a [IpNet],
    /// The budget shared among remote streams, bits/s: `settings.budget()`'s static one, or
    /// what the meter (`src/budget.rs`) leaves beside the rest of the house.
    pub budget_bps: u64,
    /// The owner's overrides in force (`src/control.rs`): pause, pins, exemptions, weights,
    /// a reserve taken off the budget.
    pub overrides: &'a Overrides,
    /// The other media servers whose total limit jellydemon sets (`[[server]]
    /// manage_wan_total`), those read lately.
    pub servers: &'a [ServerClaim],
}

/// What a user is in this plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Streams from outside right now.
    Active {
        /// How many remote streams.
        streams: u32,
    },
    /// Managed, not streaming from outside: held at the join share.
    Idle,
    /// In the ledger but no longer managed: gets the original back.
    Release,
}

impl Role {
    /// Streams from outside right now (a claimant).
    pub fn is_active(&self) -> bool {
        matches!(self, Role::Active { .. })
    }
    /// "active", "idle" or "release" (metrics labels, the status page).
    pub fn label(&self) -> &'static str {
        match self {
            Role::Active { .. } => "active",
            Role::Idle => "idle",
            Role::Release => "release",
        }
    }
}

/// The command that makes a client re-negotiate its stream under the user's current limit.
pub const PUSH_COMMAND: &str = "SetMaxStreamingBitrate";

/// How long after a push a stream must show its new rate before it is taken for one that
/// ignores the push (a client re-requests playback within a few seconds).
pub const PUSH_SETTLE: Duration = Duration::from_secs(15);

/// After a remote item stops, streams are not pushed up for this long: the next item of an
/// autoplaying client usually starts within seconds and needs the room.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// A stream runs this many percent above a limit before it counts as ignoring it (transcodes
/// overshoot their target a little).
const UNCONTROLLED_MARGIN_PERCENT: u64 = 10;

/// A `SetMaxStreamingBitrate` to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Push {
    /// Down to free room, or up into room that is free.
    pub direction: Direction,
    /// The bitrate sent (the client re-negotiates at most this, and at most its user's limit).
    pub bitrate: u64,
}

/// Why a stream is taken for one whose client ignores limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Uncontrolled {
    /// It started above the highest limit its user can have had then.
    StartedAbove {
        /// That limit, bits/s.
        limit: u64,
    },
    /// It still runs above the bitrate it was pushed to.
    IgnoredPush {
        /// The bitrate pushed, bits/s.
        pushed: u64,
    },
}

impl std::fmt::Display for Uncontrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uncontrolled::StartedAbove { limit } => {
                write!(f, "started above its limit of {}", fmt_mbps(*limit))
            }
            Uncontrolled::IgnoredPush { pushed } => {
                write!(f, "still above the {} it was pushed to", fmt_mbps(*pushed))
            }
        }
    }
}

/// One of a user's running remote streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRef {
    /// The session that plays it.
    pub session_id: SessionId,
    /// The item playing (normalized id, "" when unknown).
    pub item_id: String,
    /// Client and device, e.g. "Jellyfin Web on Firefox".
    pub device: DeviceName,
    /// Its source bitrate (video plus selected audio), when known.
    pub source: Option<u64>,
    /// Its current rate, when known.
    pub rate: Option<u64>,
    /// The session lists `SetMaxStreamingBitrate` in `SupportedCommands`.
    pub supports_push: bool,
    /// `h(s)`: what it will carry after this plan's pushes (unknown rates count at
    /// `demand.default_mbps`).
    pub held: u64,
    /// The push this plan sends it, if any.
    pub push: Option<Push>,
    /// Its client ignores limits.
    pub uncontrolled: Option<Uncontrolled>,
    /// The highest limit its user can have had when its item started; `None`: no limit.
    pub start_bound: Option<u64>,
}

/// The decision for one user.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The user.
    pub user_id: UserId,
    /// The user's name.
    pub user_name: UserName,
    /// What the user is in this plan.
    pub role: Role,
    /// Where the user's remote streams come from.
    pub endpoints: Vec<ClientAddr>,
    /// Sum of the current rates of the user's remote streams (bits/s); unknown rates count 0.
    pub stream_rate: u64,
    /// The user's running remote streams (empty unless active).
    pub streams: Vec<StreamRef>,
    /// The limit Jellyfin holds now.
    pub current: i64,
    /// The limit the user should have.
    pub target: i64,
    /// One line a human can read: which term decided the limit.
    pub reason: String,
}

impl Decision {
    /// The target differs from the limit Jellyfin holds.
    pub fn needs_write(&self) -> bool {
        self.current != self.target
    }
    /// The pushes this decision sends, with their sessions.
    pub fn pushes(&self) -> impl Iterator<Item = (&StreamRef, Push)> {
        self.streams.iter().filter_map(|s| s.push.map(|p| (s, p)))
    }
    /// Something for the writer to do: a limit to write or a stream to push.
    pub fn has_work(&self) -> bool {
        self.needs_write() || self.pushes().next().is_some()
    }
}

/// How one session was seen.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// The session.
    pub session_id: SessionId,
    /// `None` for a session without a user.
    pub user_id: Option<UserId>,
    /// Its user's name (`None` for a session without a user).
    pub user_name: Option<UserName>,
    /// Client and device.
    pub device: DeviceName,
    /// Local, remote, or an endpoint that could not be classified.
    pub location: Location,
    /// Something is playing.
    pub playing: bool,
    /// Playback is paused.
    pub paused: bool,
    /// Its current rate and where that figure comes from, when known.
    pub rate: Option<RateSource>,
    /// Claims bandwidth in this plan.
    pub counted: bool,
}

/// Something the admin should know about a plan. Personal values are typed ([`crate::ids`]) and
/// show as their aliases when anonymizing, so a warning can be logged as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// A playing session whose endpoint cannot be classified; it was left alone.
    UnknownEndpoint {
        /// The session.
        session_id: SessionId,
        /// Its user's name, if any.
        user_name: Option<UserName>,
        /// Client and device.
        device: DeviceName,
        /// Why its endpoint could not be classified.
        error: network::EndpointError,
    },
    /// Every session comes from this one address: a reverse proxy without `KnownProxies`?
    ProxySuspect(ClientAddr),
    /// The floors of `users` remote users exceed the budget.
    Overload {
        /// How many remote users stream.
        users: usize,
        /// The floor of each, bits/s.
        floor: u64,
        /// The budget, bits/s.
        budget: u64,
    },
    /// A user's limit forces a video transcode while the server already transcodes all it
    /// can (`[transcoding] capacity`): the budget cannot keep enough streams direct.
    TranscodeBeyondCapacity {
        /// The user.
        user_name: UserName,
        /// The client and device of the stream that transcodes.
        device: DeviceName,
        /// The video transcodes under this plan.
        transcodes: u32,
        /// What the server runs at once.
        capacity: Capacity,
    },
    /// A remote stream whose client ignores limits.
    Uncontrolled {
        /// The stream's user.
        user_name: UserName,
        /// Client and device.
        device: DeviceName,
        /// The rate it runs at, bits/s.
        rate: u64,
        /// What gave it away.
        why: Uncontrolled,
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
                write!(f, "session {session_id} of ")?;
                match user_name {
                    Some(name) => write!(f, "{name}")?,
                    None => f.write_str("?")?,
                }
                write!(
                    f,
                    " ({device}): {error}; cannot tell whether it is remote, left alone"
                )
            }
            Warning::ProxySuspect(ip) => write!(
                f,
                "every session comes from {ip}: a reverse proxy without KnownProxies in Jellyfin? \
                 Jellyfin then sees all clients as local and applies no remote limit",
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
            Warning::TranscodeBeyondCapacity {
                user_name,
                device,
                transcodes,
                capacity,
            } => write!(
                f,
                "{user_name} on {device}: the limit forces a transcode beyond capacity \
                 ({transcodes} video transcodes, the server runs {}): its viewers stall",
                capacity.describe()
            ),
            Warning::Uncontrolled {
                user_name,
                device,
                rate,
                why,
            } => write!(
                f,
                "{user_name} on {device} streams {} and {why}: this client ignores limits \
                 (Infuse, Kodi in native mode, some TVs do); it is counted at its real rate",
                fmt_mbps(*rate)
            ),
        }
    }
}

/// The outcome of planning.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The algorithm that set the shares.
    pub algorithm: Algorithm,
    /// `total_upload - reserved`, bits/s.
    pub budget: u64,
    /// Current rate of remote streams of users jellydemon does not manage.
    pub unmanaged_bps: u64,
    /// The torrent clients' part (`[[downloader]]`), when there are any (and not paused).
    pub downloaders: Option<DownloaderShare>,
    /// The total limits of the other media servers jellydemon manages (none while paused).
    pub servers: Vec<ServerShare>,
    /// The owner paused the daemon: every original is put back.
    pub paused: bool,
    /// Bits/s of the budget the owner keeps free (already taken off `budget`).
    pub reserved: u64,
    /// `Σ h`: what the remote streams will carry after this plan's pushes.
    pub held: u64,
    /// What the remote streams carry now (unknown rates count 0).
    pub streaming: u64,
    /// The floors alone exceed the budget.
    pub overloaded: bool,
    /// The video transcodes against what the server runs at once, with `[transcoding]
    /// capacity`.
    pub transcodes: Option<TranscodeLoad>,
    /// The video transcodes the server runs now (local ones too), for learning its capacity.
    pub server_transcodes: transcode::Sample,
    /// When to plan again although nothing happens: a stream held low whose push cooldown
    /// ends then (on the clock of the [`Memory`]).
    pub wake_at: Option<Duration>,
    /// Active users first, then idle, then released.
    pub decisions: Vec<Decision>,
    /// How every session was seen.
    pub sessions: Vec<SessionView>,
    /// Things the admin should know (unparseable endpoints, proxy, overload, clients that
    /// ignore limits).
    pub warnings: Vec<Warning>,
}

impl Plan {
    /// Plain sentences saying who got what and why: one per active user ("alice: 24 Mbps,
    /// fair share 24.3 Mbps of 55 Mbps among 3."), then one for the idle users ("6 idle users
    /// held at 20 Mbps."). Names show as aliases when anonymizing.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .decisions
            .iter()
            .filter(|d| d.role.is_active())
            .map(|d| {
                format!(
                    "{}: {}, {}.",
                    d.user_name,
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
            parts.push(idle_sentence(&mut idle));
        }
        if parts.is_empty() {
            "Nobody to manage.".to_string()
        } else {
            parts.join(" ")
        }
    }

    /// Remote users streaming now.
    pub fn claimants(&self) -> usize {
        self.decisions.iter().filter(|d| d.role.is_active()).count()
    }

    /// Every running stream of a managed user, with its decision.
    pub fn streams(&self) -> impl Iterator<Item = (&Decision, &StreamRef)> {
        self.decisions
            .iter()
            .flat_map(|d| d.streams.iter().map(move |s| (d, s)))
    }

    /// Pushes this plan sends.
    pub fn push_count(&self) -> usize {
        self.streams().filter(|(_, s)| s.push.is_some()).count()
    }
}

/// The server's video transcodes in a plan, against its `[transcoding] capacity`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TranscodeLoad {
    /// What the server runs at once.
    pub capacity: Capacity,
    /// The video transcodes under this plan's limits (those no limit changes included).
    pub count: transcode::Count,
    /// More than the server runs in real time.
    pub beyond: bool,
    /// Users given their whole demand so that their streams play direct.
    pub kept_direct: usize,
}

/// What the transcode step decided, for the reasons and warnings.
struct Transcodes {
    load: TranscodeLoad,
    /// Per active user: given its whole demand to play direct.
    promoted: Vec<bool>,
    videos: Vec<Vec<Option<transcode::Video>>>,
}

impl Transcodes {
    /// Stream `s` of active user `i` transcodes because its user's limit `target` is below
    /// its source.
    fn forced(&self, i: usize, s: usize, target: u64) -> bool {
        forces_transcode(std::slice::from_ref(&self.videos[i][s]), target)
    }
}

/// Step 3b, with `[transcoding] capacity`: when the shares would leave more video transcodes
/// than the server runs, keep the streams with the smallest demand direct
/// ([`transcode::keep_direct`]). Returns the shares to plan with (`fair` and `share` as
/// they are without a capacity).
fn keep_direct(
    cx: &Context,
    active: &[Active],
    claimants: &[Claimant],
    available: u64,
    fair: rule::FairShares,
    share: Vec<u64>,
) -> (rule::FairShares, Vec<u64>, Option<Transcodes>) {
    let learned = cx.memory.learned_capacity();
    let Some(capacity) = cx.settings.transcoding.capacity(learned) else {
        return (fair, share, None);
    };
    let push = cx.settings.daemon.push;
    // Per active user: the video of each stream, and what its streams hold whatever its
    // share (the floor of those a push lowers, the rate of the others).
    let (videos, kept): (Vec<Vec<Option<transcode::Video>>>, Vec<u64>) = active
        .iter()
        .map(|a| {
            let mut kept = 0;
            let videos = a
                .streams
                .iter()
                .zip(&a.watched)
                .map(|(s, w)| {
                    let obeys = w.uncontrolled.is_none();
                    kept += if push.down() && s.supports_push && obeys {
                        a.bounds.floor
                    } else {
                        w.rate
                    };
                    let rises = obeys && s.supports_push && push.up();
                    // The capacity is the `[jellyfin]` server's: another server's streams
                    // take none of it.
                    let here = !crate::ids::is_member_id(s.session_id.as_str());
                    Some(transcode::Video {
                        source: s.source.filter(|_| s.video && here)?,
                        uhd: s.uhd,
                        stuck: s.transcoding && !(rises && s.for_bitrate),
                        obeys,
                    })
                })
                .collect();
            (videos, kept)
        })
        .unzip();
    let ours: std::collections::HashSet<&SessionId> = active
        .iter()
        .flat_map(|a| a.streams.iter().map(|s| &s.session_id))
        .collect();
    let mut fixed = transcode::Count::default();
    for s in running_transcodes(cx.snapshot.sessions).filter(|s| !ours.contains(&s.id)) {
        fixed.add(s.source_is_4k());
    }
    let demands: Vec<Vec<u64>> = active.iter().map(|a| a.demands.clone()).collect();
    let floors: Vec<u64> = active.iter().map(|a| a.bounds.floor).collect();
    let input = transcode::Input {
        algorithm: cx.settings.bandwidth.algorithm,
        claimants,
        demands: &demands,
        videos: &videos,
        floors: &floors,
        kept: &kept,
        available,
        fixed,
        capacity,
    };
    let out = transcode::keep_direct(&input, fair);
    (
        out.fair,
        out.share,
        Some(Transcodes {
            load: TranscodeLoad {
                capacity,
                count: out.count,
                beyond: out.beyond,
                kept_direct: out.promoted.iter().filter(|p| **p).count(),
            },
            promoted: out.promoted,
            videos,
        }),
    )
}

/// The sessions whose video the `[jellyfin]` server transcodes now (playing, not paused):
/// what takes its capacity (another `[[server]]`'s transcodes run on that server).
fn running_transcodes(sessions: &[Session]) -> impl Iterator<Item = &Session> {
    sessions.iter().filter(|s| {
        s.is_playing()
            && !s.is_paused()
            && s.transcodes_video()
            && !crate::ids::is_member_id(s.id.as_str())
    })
}

/// The video transcodes running now, whether one runs slower than its source, and whether
/// Jellyfin reported the frame rates of all.
fn server_transcodes(sessions: &[Session]) -> transcode::Sample {
    let running: Vec<Option<bool>> = running_transcodes(sessions)
        .map(Session::transcode_behind)
        .collect();
    transcode::Sample {
        running: running.len() as u32,
        behind: running.contains(&Some(true)),
        measured: running.iter().all(Option::is_some),
    }
}

/// What the torrent clients together may upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloaderShare {
    /// Their combined upload limit, bits/s: what the remote streams leave, never below
    /// `kept`.
    pub limit: u64,
    /// What the streams leave them whatever they need: `min_mbps` (`priority = "streams"`)
    /// or their weighted share (`"share"`).
    pub kept: u64,
    /// `min_mbps`: the least they keep even for a moment, when a newcomer's stream starts
    /// before the next plan shares the budget again.
    pub min: u64,
    /// Why, in a sentence.
    pub reason: String,
}

/// The torrent clients' combined limit: the budget less what the remote streams hold after
/// this plan, never below what they keep.
fn downloaders_share(settings: &Settings, kept: u64, budget: u64, held: u64) -> DownloaderShare {
    use crate::config::DownloaderPriority;
    let left = budget.saturating_sub(held);
    let limit = left.max(kept);
    let reason = if left >= kept {
        format!(
            "what the remote streams leave: {} of {} less {} they hold",
            fmt_mbps(left),
            fmt_mbps(budget),
            fmt_mbps(held)
        )
    } else {
        match settings.bandwidth.downloaders.priority {
            DownloaderPriority::Streams => format!(
                "the minimum of {}: the remote streams hold {} of {}",
                fmt_mbps(kept),
                fmt_mbps(held),
                fmt_mbps(budget)
            ),
            DownloaderPriority::Share => format!(
                "their share of {} beside the remote streams",
                fmt_mbps(budget)
            ),
        }
    };
    DownloaderShare {
        limit,
        kept,
        min: settings.bandwidth.downloaders.min_bps().min(kept),
        reason,
    }
}

pub use crate::units::fmt_mbps;

/// A limit as Jellyfin means it: 0 is "server default", not "unlimited".
pub fn fmt_limit(bps: i64) -> String {
    if bps <= 0 {
        "0 (server default)".to_string()
    } else {
        fmt_mbps(bps as u64)
    }
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

/// Round `exact` down to the step within the bounds, but never below `keep` when `keep` fits
/// under `exact`: a stream running at `keep` is then not pushed for a rounding difference.
fn quantize_keeping(exact: u64, step: u64, b: Bounds, keep: u64) -> u64 {
    let q = allocate::quantize(exact, step, b.floor, b.ceiling);
    if keep > q && keep <= exact {
        keep.min(b.ceiling)
    } else {
        q
    }
}

/// The limit Jellyfin applies for a user's value: its own when > 0, else the server's;
/// `None` when neither limits.
fn effective(limit: i64, server_limit: i64) -> Option<u64> {
    match (limit > 0, server_limit > 0) {
        (true, _) => Some(limit as u64),
        (false, true) => Some(server_limit as u64),
        _ => None,
    }
}

/// What every step reads: the inputs, and the settings in bits/s.
struct Context<'a> {
    snapshot: &'a Inputs<'a>,
    originals: &'a dyn Originals,
    memory: &'a Memory,
    /// On the memory's clock.
    now: Duration,
    settings: &'a Settings,
    budget: crate::config::Budget,
    users: HashMap<&'a UserId, &'a User>,
}

impl Context<'_> {
    /// Managed: remote access, not disabled, not excluded.
    fn managed(&self, u: &User) -> bool {
        let overrides = self.snapshot.overrides;
        !u.is_disabled()
            && u.remote_access()
            && !self.settings.users.is_excluded(&u.id, u.name_str())
            && !overrides.paused()
            && overrides.user(u.id.as_str()) != Some(UserRule::Exempt)
    }

    /// The limit the owner pinned a managed user at.
    fn pin(&self, u: &User) -> Option<u64> {
        match self.snapshot.overrides.user(u.id.as_str()) {
            Some(UserRule::Pin { bps }) => Some(bps.min(MAX_JELLYFIN_LIMIT_BPS)),
            _ => None,
        }
    }

    /// The user's floor and ceiling, from its original limit (the ledger's, else the current).
    fn bounds_of(&self, user_id: &UserId, current: i64) -> Bounds {
        let original = self.originals.original(user_id).unwrap_or(current);
        let server_limit = self
            .users
            .get(user_id)
            .map_or(self.snapshot.server_limit, |u| self.server_limit_of(u));
        bounds(self.settings, original, server_limit)
    }

    /// The server-wide limit of the user's server (bits/s, 0 = none): a user of another
    /// `[[server]]` has its own (`src/jellyfin/fleet.rs`).
    fn server_limit_of(&self, u: &User) -> i64 {
        u.server_limit.unwrap_or(self.snapshot.server_limit)
    }

    fn weight(&self, u: &User) -> u64 {
        if let Some(UserRule::Weight { weight }) = self.snapshot.overrides.user(u.id.as_str()) {
            return allocate::weight_milli(weight);
        }
        let p = &self.settings.bandwidth.priority;
        allocate::weight_milli(p.weight(u.name_str(), u.is_admin()))
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
    item_id: String,
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
    user: &'a User,
    streams: Vec<Stream>,
    watched: Vec<Watched>,
    bounds: Bounds,
    current: i64,
    claimant: Claimant,
    /// Per stream: what it would use (source or default, times the overhead).
    demands: Vec<u64>,
}

/// Step 2's result.
struct Claimants<'a> {
    active: Vec<Active<'a>>,
    /// Users the owner pinned that stream from outside, with their streams.
    pinned: Vec<(&'a User, Vec<Stream>)>,
    /// What the remote streams of users jellydemon does not manage carry.
    unmanaged_bps: u64,
    /// What all remote streams carry now (unknown rates count 0).
    streaming: u64,
}

/// Step 4's result, per active user and stream.
struct Held {
    running: Vec<Vec<rule::Running>>,
    /// `h(s)` and the push that gets it there.
    held: Vec<Vec<(u64, Option<Direction>)>>,
    total: u64,
    /// What each stream counts for in the other users' limits: a pushable one at most at its
    /// share, since it is pushed down when another user's next item needs the room.
    counted: Vec<Vec<u64>>,
    counted_total: u64,
    wake_at: Option<Duration>,
}

/// Compute the plan at time `now` (on the clock of `memory`; one-shot commands pass an empty
/// memory). `originals` are those of the users jellydemon already changed.
pub fn plan(
    snapshot: &Inputs,
    originals: &dyn Originals,
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
        users: snapshot.users.iter().map(|u| (&u.id, u)).collect(),
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
    decisions.sort_by_cached_key(|d| d.user_name.as_str().to_lowercase());
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

/// Step 1: classify every session (remote / local / unknown endpoint) and keep, per user, the
/// remote ones that play (paused ones only with `count_paused`).
fn classify(
    snapshot: &Inputs,
    count_paused: bool,
    same: &HashMap<UserId, UserId>,
    warnings: &mut Vec<Warning>,
) -> (Vec<SessionView>, BTreeMap<UserId, Vec<Stream>>) {
    let mut views = Vec::with_capacity(snapshot.sessions.len());
    let mut remote_by_user: BTreeMap<UserId, Vec<Stream>> = BTreeMap::new();
    for s in snapshot.sessions {
        let location = network::classify(s.remote_end_point.as_deref(), snapshot.ranges);
        let user_id = s.user().cloned();
        let playing = s.is_playing();
        let paused = s.is_paused();
        let rate = s.stream_rate();
        let device = s.device_label();
        let counts_as_playing = playing && (!paused || count_paused);
        let mut counted = false;
        if let (Some(uid), true) = (&user_id, counts_as_playing) {
            match &location {
                Location::Remote(ip) => {
                    counted = true;
                    let claimant = same.get(uid).unwrap_or(uid);
                    remote_by_user
                        .entry(claimant.clone())
                        .or_default()
                        .push(Stream {
                            session_id: s.id.clone(),
                            item_id: s.item_key(),
                            device: device.clone(),
                            supports_push: s.supports(PUSH_COMMAND),
                            ip: *ip,
                            source: s.source_rate(),
                            rate: rate.map(RateSource::bps),
                            video: s.source_video().is_some(),
                            uhd: s.source_is_4k(),
                            transcoding: s.transcodes_video(),
                            for_bitrate: s.transcode_for_bitrate(),
                        });
                }
                Location::Unknown(e) => warnings.push(Warning::UnknownEndpoint {
                    session_id: s.id.clone(),
                    user_name: s.user_name.clone(),
                    device: device.clone(),
                    error: e.clone(),
                }),
                Location::Local(_) => {}
            }
        }
        views.push(SessionView {
            session_id: s.id.clone(),
            user_id,
            user_name: s.user_name.clone(),
            device,
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
            .filter_map(|v| v.location.ip().map(|ip| (ip, &v.device))),
    ) {
        warnings.push(Warning::ProxySuspect(ip));
    }
    (views, remote_by_user)
}

/// Step 2: a managed user with k remote streams is one claimant; streams of other users count
/// at their rate. Each stream is checked against the memory for a client ignoring limits.
fn claimants<'a>(
    cx: &Context<'a>,
    remote_by_user: BTreeMap<UserId, Vec<Stream>>,
    warnings: &mut Vec<Warning>,
) -> Claimants<'a> {
    let mut out = Claimants {
        active: Vec::new(),
        pinned: Vec::new(),
        unmanaged_bps: 0,
        streaming: 0,
    };
    for (uid, streams) in remote_by_user {
        out.streaming += streams.iter().filter_map(|s| s.rate).sum::<u64>();
        let Some(u) = cx.users.get(&uid).copied().filter(|u| cx.managed(u)) else {
            out.unmanaged_bps += streams
                .iter()
                .map(|s| s.rate.unwrap_or(cx.default_rate()))
                .sum::<u64>();
            continue;
        };
        if let Some(pin) = cx.pin(u) {
            // Outside the water-filling: the pin is what they may take.
            out.unmanaged_bps += streams
                .iter()
                .map(|s| s.rate.unwrap_or(cx.default_rate()).min(pin))
                .sum::<u64>();
            out.pinned.push((u, streams));
            continue;
        }
        let current = u.remote_limit();
        let bounds = cx.bounds_of(&uid, current);
        // The highest limit the user can have had when a new item started: from the memory
        // of the last plan when there is one; else, when jellydemon has written the user
        // since its original was set, the largest of those values (a change by hand clears
        // them: then nobody knows).
        let recent = cx.memory.recent_limit(&uid, current).or_else(|| {
            let original = cx.originals.original(&uid)?;
            let written = cx.originals.written(&uid);
            (!written.is_empty()).then(|| {
                written
                    .iter()
                    .copied()
                    .fold(current.max(original), i64::max)
            })
        });
        let server_limit = cx.server_limit_of(u);
        let watched: Vec<Watched> = streams
            .iter()
            .map(|s| watch(cx, s, recent, server_limit))
            .collect();
        for (s, w) in streams.iter().zip(&watched) {
            if let Some(why) = w.uncontrolled {
                warnings.push(Warning::Uncontrolled {
                    user_name: u.display_name(),
                    device: s.device.clone(),
                    rate: s.rate.unwrap_or(0),
                    why,
                });
            }
        }
        let demands: Vec<u64> = streams.iter().map(|s| cx.demand(s.source)).collect();
        let k = streams.len() as u64;
        let claimant = Claimant {
            weight_milli: cx.weight(u),
            floor: bounds.floor.saturating_mul(k),
            ceiling: bounds.ceiling.saturating_mul(k),
            demand: demands.iter().sum(),
        };
        out.active.push(Active {
            user: u,
            streams,
            watched,
            bounds,
            current,
            claimant,
            demands,
        });
    }
    out
}

/// What the memory (or, for one-shot commands, `recent`, the highest limit the user can have
/// had lately) says about a stream: does its client ignore limits, is a push on its way, when
/// does its push cooldown end.
fn watch(cx: &Context, s: &Stream, recent: Option<i64>, server_limit: i64) -> Watched {
    let now = cx.now;
    let memo = cx.memory.stream(&s.session_id, &s.item_id);
    let start_bound = match memo {
        Some(m) => m.start_bound,
        None => recent.and_then(|r| effective(r, server_limit)),
    };
    let above = |limit: u64| {
        s.rate.is_some_and(|r| {
            r as u128 * 100 > limit as u128 * (100 + UNCONTROLLED_MARGIN_PERCENT) as u128
        })
    };
    let last_push = memo.and_then(|m| m.last_push);
    // Before any push the limit in force at the start bounds the stream; after one, the
    // bitrate pushed (once the client has had time to re-negotiate).
    let uncontrolled = memo
        .and_then(|m| m.uncontrolled)
        .or_else(|| match last_push {
            None => start_bound
                .filter(|limit| above(*limit))
                .map(|limit| Uncontrolled::StartedAbove { limit }),
            Some((at, pushed)) => (now.saturating_sub(at) >= PUSH_SETTLE && above(pushed))
                .then_some(Uncontrolled::IgnoredPush { pushed }),
        });
    let rate = s.rate.unwrap_or(cx.default_rate());
    // A push sent a moment ago may not show yet: count the stream at what it will carry once
    // it lands, and do not push it again.
    let rate = match last_push.filter(|(at, _)| now.saturating_sub(*at) < PUSH_SETTLE) {
        Some((_, bitrate)) if uncontrolled.is_none() => s.source.unwrap_or(rate).min(bitrate),
        _ => rate,
    };
    Watched {
        rate,
        uncontrolled,
        start_bound,
        cooldown_ends: last_push
            .map(|(at, _)| at + cx.settings.daemon.push_cooldown)
            .filter(|end| *end > now),
    }
}

/// Step 4: held rates. Streams that cannot be pushed keep their rate, the others share what
/// is left, each at most its source and its user's `share`; the pushes follow from them.
fn held(cx: &Context, active: &[Active], share: &[u64], unmanaged_bps: u64) -> Held {
    let daemon = &cx.settings.daemon;
    let threshold = daemon.push_threshold_percent;
    let grace_ends = cx
        .memory
        .last_stop()
        .map(|t| t + STOP_GRACE)
        .filter(|end| *end > cx.now);
    let running: Vec<Vec<rule::Running>> = active
        .iter()
        .zip(share)
        .map(|(a, &share)| {
            let k = a.streams.len() as u64;
            a.streams
                .iter()
                .zip(&a.watched)
                .map(|(s, w)| {
                    let pushable =
                        daemon.push.down() && s.supports_push && w.uncontrolled.is_none();
                    rule::Running {
                        rate: w.rate,
                        cap: s.source.map_or(share, |src| src.min(share)),
                        floor: a.bounds.floor,
                        weight_milli: (a.claimant.weight_milli / k).max(1),
                        down: pushable,
                        up: pushable
                            && daemon.push.up()
                            && w.cooldown_ends.is_none()
                            && grace_ends.is_none()
                            && s.source.is_some(),
                    }
                })
                .collect()
        })
        .collect();
    let flat: Vec<rule::Running> = running.iter().flatten().copied().collect();
    let mut flat_held =
        rule::held_rates(&flat, cx.budget.budget_bps, unmanaged_bps, threshold).into_iter();
    let held: Vec<Vec<(u64, Option<Direction>)>> = running
        .iter()
        .map(|r| flat_held.by_ref().take(r.len()).collect())
        .collect();
    let total = unmanaged_bps + held.iter().flatten().map(|(h, _)| h).sum::<u64>();
    let counted: Vec<Vec<u64>> = held
        .iter()
        .zip(&running)
        .map(|(h, r)| {
            h.iter()
                .zip(r)
                .map(|((h, _), r)| if r.down { (*h).min(r.cap) } else { *h })
                .collect()
        })
        .collect();
    let counted_total = unmanaged_bps + counted.iter().flatten().sum::<u64>();
    // When a stream held low waits only for its cooldown or the grace after a stop, plan again
    // when they end.
    let wake_at = active
        .iter()
        .zip(&running)
        .flat_map(|(a, r)| a.watched.iter().zip(r))
        .filter(|(_, r)| {
            r.down && daemon.push.up() && rule::worth_raising(r.rate, r.cap, threshold)
        })
        .filter_map(|(w, _)| match (w.cooldown_ends, grace_ends) {
            (None, None) => None,
            (a, b) => a.max(b),
        })
        .min();
    Held {
        running,
        held,
        total,
        counted,
        counted_total,
        wake_at,
    }
}

/// How an active user's share came about, for its reason.
struct Why<'a> {
    term: rule::Term,
    bound: Bound,
    share: u64,
    claimants: usize,
    available: u64,
    overloaded: bool,
    /// With a transcode capacity: the step's result, and this user's index in it.
    transcodes: Option<(&'a Transcodes, usize)>,
}

/// Step 5: an active user's limit, `max(floor, min(share, budget - Σ h of the others))`, its
/// streams' pushes, quantization and hysteresis (never past the headroom).
fn active_decision(cx: &Context, a: &Active, i: usize, h: &Held, why: Why) -> Decision {
    let b = cx.budget.budget_bps;
    let hysteresis = cx.settings.bandwidth.hysteresis_percent;
    let least = h.counted[i].iter().copied().min().unwrap_or(0);
    let most = h.held[i].iter().map(|(h, _)| *h).max().unwrap_or(0);
    // The user's next item replaces one of its streams: the one that holds least is the worst
    // case.
    let others = h.counted_total - least;
    let (exact, term) = rule::active_limit(why.share, b, others, a.bounds.floor);
    let pushes = h.held[i].iter().any(|(_, d)| d.is_some());
    let mut limit = quantize_keeping(exact, cx.budget.step_bps, a.bounds, most);
    // With a transcode capacity, neither rounding nor the hysteresis leaves a video below its
    // source when the exact limit lets it play direct.
    let videos = why
        .transcodes
        .map(|(t, i)| t.videos[i].as_slice())
        .unwrap_or_default();
    let direct_at = videos
        .iter()
        .flatten()
        .filter(|v| v.obeys && !v.stuck && v.source <= exact)
        .map(|v| v.source)
        .max();
    if let Some(d) = direct_at
        && limit < d
    {
        limit = exact;
    }
    let k = a.streams.len() as u64;
    let mut target = limit;
    let mut reason = active_reason(
        cx.settings.bandwidth.algorithm,
        &Why { term, ..why },
        a.bounds,
        others,
    );
    if let Some(cur) = kept(a.current, target, a.bounds, hysteresis)
        .filter(|&c| !pushes && (c <= target || c <= b.saturating_sub(others)) && c >= most)
        .filter(|&c| direct_at.is_none_or(|d| c >= d))
    {
        reason = format!(
            "kept: {} is within {hysteresis}% of the computed {}",
            fmt_mbps(cur),
            fmt_mbps(target)
        );
        target = cur;
    }
    if k > 1 {
        reason = format!("{reason}, for each of {k} streams");
    }
    if let Some((t, i)) = why.transcodes {
        let capacity = t.load.capacity.describe();
        if t.promoted[i] && direct_at.is_some() {
            reason = format!("{reason}; kept direct play: the server transcodes {capacity}");
        } else if t.load.beyond && forces_transcode(videos, target) {
            reason = format!(
                "{reason}; forces a transcode beyond capacity ({} video transcodes, the server \
                 runs {capacity})",
                t.load.count.total()
            );
        }
    }
    let limit = target;
    let streams: Vec<StreamRef> = a
        .streams
        .iter()
        .zip(&a.watched)
        .zip(&h.held[i])
        .map(|((s, w), &(held, direction))| {
            // The client re-negotiates at most the bitrate sent (and keeps it as its own
            // maximum) under its user's new limit, so it carries the smaller of the two: a
            // push above the limit would restart the stream at the limit. A push that would
            // not change what it carries is not sent.
            let carried = if direction.is_some() {
                held.min(limit)
            } else {
                held
            };
            let push = direction
                .filter(|d| match d {
                    Direction::Down => carried < w.rate,
                    Direction::Up => carried > w.rate,
                })
                .map(|direction| Push {
                    direction,
                    bitrate: carried,
                });
            StreamRef {
                session_id: s.session_id.clone(),
                item_id: s.item_id.clone(),
                device: s.device.clone(),
                source: s.source,
                rate: s.rate,
                supports_push: s.supports_push,
                held: if push.is_some() { carried } else { held },
                push,
                uncontrolled: w.uncontrolled,
                start_bound: w.start_bound,
            }
        })
        .collect();
    for s in &streams {
        if let Some(p) = s.push {
            let source = if s.source == Some(p.bitrate) {
                ", its source rate"
            } else {
                ""
            };
            reason = format!(
                "{reason}; stream pushed {} to {}{source}",
                p.direction.label(),
                fmt_mbps(p.bitrate)
            );
        }
    }
    let mut endpoints: Vec<ClientAddr> = a.streams.iter().map(|s| s.ip).collect();
    endpoints.sort_unstable();
    endpoints.dedup();
    Decision {
        user_id: a.user.id.clone(),
        user_name: a.user.display_name(),
        role: Role::Active { streams: k as u32 },
        endpoints,
        stream_rate: a.streams.iter().filter_map(|s| s.rate).sum(),
        streams,
        current: a.current,
        target: target as i64,
        reason,
    }
}

/// A limit of `target` makes one of these videos transcode (its client obeys, and it does not
/// transcode anyway).
fn forces_transcode(videos: &[Option<transcode::Video>], target: u64) -> bool {
    videos
        .iter()
        .flatten()
        .any(|v| v.obeys && !v.stuck && target < v.source)
}

/// The users the owner pinned: their limit is the pin, active or idle; their streams are not
/// pushed (a pin is the owner's word, not a share to balance).
fn pinned_decisions(cx: &Context, pinned: &[(&User, Vec<Stream>)]) -> Vec<Decision> {
    pinned
        .iter()
        .filter_map(|(u, streams)| {
            let pin = cx.pin(u)?;
            let set = cx.snapshot.overrides.users.get(u.id.as_str())?;
            let mut endpoints: Vec<ClientAddr> = streams.iter().map(|s| s.ip).collect();
            endpoints.sort_unstable();
            endpoints.dedup();
            Some(Decision {
                user_id: u.id.clone(),
                user_name: u.display_name(),
                role: if streams.is_empty() {
                    Role::Idle
                } else {
                    Role::Active {
                        streams: streams.len() as u32,
                    }
                },
                endpoints,
                stream_rate: streams.iter().filter_map(|s| s.rate).sum(),
                streams: streams
                    .iter()
                    .map(|s| StreamRef {
                        session_id: s.session_id.clone(),
                        item_id: s.item_id.clone(),
                        device: s.device.clone(),
                        source: s.source,
                        rate: s.rate,
                        supports_push: s.supports_push,
                        held: s.rate.unwrap_or(cx.default_rate()).min(pin),
                        push: None,
                        uncontrolled: None,
                        start_bound: None,
                    })
                    .collect(),
                current: u.remote_limit(),
                target: pin as i64,
                reason: format!("pinned at {} by {}", fmt_mbps(pin), set.by),
            })
        })
        .collect()
}

/// Step 6: every idle managed user at the join share, `max(floor, min(fair share with one
/// more claimant, budget - Σ h))`, beside what the streams will hold once the newcomer is
/// there (the pushable ones at most at their user's share with one more, since they are
/// pushed down when it starts).
///
/// A newcomer whose client cannot be pushed keeps its first rate for the whole item (an
/// episode, a film), so while others stream it gets the share it would have once more users
/// arrive: at least one more, or as many as streamed at once on average lately; and it leaves
/// those users at least their floors.
fn idle_decisions(
    cx: &Context,
    active: &[Active],
    claimants: &[Claimant],
    h: &Held,
    available: u64,
    unmanaged_bps: u64,
    same: &HashMap<UserId, UserId>,
) -> Vec<Decision> {
    let b = cx.budget.budget_bps;
    let algorithm = cx.settings.bandwidth.algorithm;
    let hysteresis = cx.settings.bandwidth.hysteresis_percent;
    let expected = cx.memory.mean_claimants(cx.now);
    let phantom = Claimant {
        weight_milli: 1000,
        floor: cx.budget.min_per_user_bps,
        ceiling: MAX_JELLYFIN_LIMIT_BPS,
        demand: MAX_JELLYFIN_LIMIT_BPS,
    };
    let join_for = |newcomer: Claimant, fixed: bool| -> (u64, u64) {
        let shares = rule::with_newcomer(algorithm, claimants, newcomer, available);
        let beside: u64 = active
            .iter()
            .enumerate()
            .flat_map(|(i, a)| {
                let cap = rule::per_stream(shares.next_item[i], &a.demands).max(a.bounds.floor);
                h.held[i]
                    .iter()
                    .zip(&h.running[i])
                    .map(move |((h, _), r)| if r.down { (*h).min(cap) } else { *h })
            })
            .sum();
        let mut share = shares.next_item.last().copied().unwrap_or(0);
        let mut reserved = 0;
        if fixed {
            let floor_more = usize::from(!claimants.is_empty());
            let more = expected.saturating_sub(claimants.len() + 1).max(floor_more);
            let mut with = claimants.to_vec();
            with.push(newcomer);
            with.extend(std::iter::repeat_n(phantom, more));
            share = share
                .min(rule::fair_shares(algorithm, &with, available).next_item[claimants.len()]);
            reserved = phantom.floor * more as u64;
        }
        (share, unmanaged_bps + beside + reserved)
    };
    let active_ids: std::collections::HashSet<&UserId> =
        active.iter().map(|a| &a.user.id).collect();
    let mut join_cache: HashMap<(u64, u64, u64, bool), (u64, u64)> = HashMap::new();
    let mut sorted_users: Vec<&User> = cx.snapshot.users.iter().collect();
    sorted_users.sort_by_cached_key(|u| u.name_str().to_lowercase());
    let mut idle = Vec::new();
    for u in sorted_users {
        let uid = &u.id;
        if active_ids.contains(uid) || !cx.managed(u) || same.contains_key(uid) {
            continue;
        }
        if cx.pin(u).is_some() {
            idle.extend(pinned_decisions(cx, &[(u, Vec::new())]));
            continue;
        }
        let current = u.remote_limit();
        let bounds = cx.bounds_of(uid, current);
        let weight = cx.weight(u);
        let newcomer = Claimant {
            weight_milli: weight,
            floor: bounds.floor,
            ceiling: bounds.ceiling,
            demand: bounds.ceiling,
        };
        // Whether its client can be pushed is known from its last stream; a user never seen streaming may have such a client.
        let fixed = cx.memory.user_pushable(uid) != Some(true) || !cx.settings.daemon.push.down();
        let (with_one_more, beside) = *join_cache
            .entry((weight, bounds.floor, bounds.ceiling, fixed))
            .or_insert_with(|| join_for(newcomer, fixed));
        let (exact, term) = rule::join_share(with_one_more, b, beside, bounds.floor);
        let mut target =
            allocate::quantize(exact, cx.budget.step_bps, bounds.floor, bounds.ceiling);
        let mut reason = match term {
            _ if target == bounds.ceiling && exact > bounds.ceiling => format!(
                "join share capped by {} of {}",
                ceiling_label(bounds.source),
                fmt_mbps(bounds.ceiling)
            ),
            rule::Term::Share => format!(
                "join share: the fair share with one more, {} of {}",
                fmt_mbps(with_one_more),
                fmt_mbps(available)
            ),
            rule::Term::Headroom => format!(
                "join share: the headroom beside {} held by remote streams",
                fmt_mbps(beside)
            ),
            rule::Term::Floor => format!(
                "join share: the floor, {} held by remote streams leave less",
                fmt_mbps(beside)
            ),
        };
        if let Some(cur) = kept(current, target, bounds, hysteresis)
            .filter(|&c| c <= target || c <= b.saturating_sub(beside))
        {
            reason = format!(
                "kept: {} is within {hysteresis}% of the join share {}",
                fmt_mbps(cur),
                fmt_mbps(target)
            );
            target = cur;
        }
        idle.push(Decision {
            user_id: uid.clone(),
            user_name: u.display_name(),
            role: Role::Idle,
            endpoints: Vec::new(),
            stream_rate: 0,
            streams: Vec::new(),
            current,
            target: target as i64,
            reason,
        });
    }
    idle
}

/// Step 7: users jellydemon changed but no longer manages get their original back.
fn released(cx: &Context) -> Vec<Decision> {
    cx.originals
        .changed()
        .filter_map(|(uid, original)| {
            let u = cx.users.get(uid).filter(|u| !cx.managed(u))?;
            Some(Decision {
                user_id: uid.clone(),
                user_name: u.display_name(),
                role: Role::Release,
                endpoints: Vec::new(),
                stream_rate: 0,
                streams: Vec::new(),
                current: u.remote_limit(),
                target: original,
                reason: "no longer managed: original limit restored".into(),
            })
        })
        .collect()
}

/// Each managed user of another server who is the same person as a managed `[jellyfin]`
/// server user ([`User::same_as`], `match_users_by_name`), with that user's id.
fn same_people(cx: &Context) -> HashMap<UserId, UserId> {
    cx.snapshot
        .users
        .iter()
        .filter(|u| cx.managed(u))
        .filter_map(|u| {
            let primary = cx.users.get(u.same_as.as_ref()?)?;
            cx.managed(primary)
                .then(|| (u.id.clone(), primary.id.clone()))
        })
        .collect()
}

/// The decisions with one more for each of `same`'s users: the limit of the user they are
/// the same person as, written just before that user's (whose streams, on both servers, it
/// pushes after both writes).
fn with_same_people(
    cx: &Context,
    decisions: Vec<Decision>,
    same: &HashMap<UserId, UserId>,
) -> Vec<Decision> {
    if same.is_empty() {
        return decisions;
    }
    let mut by_primary: BTreeMap<&UserId, Vec<&User>> = BTreeMap::new();
    for (member, primary) in same {
        if let Some(u) = cx.users.get(member) {
            by_primary.entry(primary).or_default().push(u);
        }
    }
    let mut out = Vec::with_capacity(decisions.len() + same.len());
    for d in decisions {
        for u in by_primary.remove(&d.user_id).unwrap_or_default() {
            out.push(Decision {
                user_id: u.id.clone(),
                user_name: u.display_name(),
                role: Role::Idle,
                endpoints: Vec::new(),
                stream_rate: 0,
                streams: Vec::new(),
                current: u.remote_limit(),
                target: d.target,
                reason: format!(
                    "the same person as {} (match_users_by_name): {}",
                    d.user_name, d.reason
                ),
            });
        }
        out.push(d);
    }
    out
}

/// "1 idle user held at 8.5 Mbps." / "4 idle users held at 20 Mbps and 2 at 90 Mbps."
fn idle_sentence(limits: &mut [u64]) -> String {
    limits.sort_unstable();
    let mut groups: Vec<(usize, u64)> = Vec::new();
    for &l in limits.iter() {
        match groups.last_mut() {
            Some((n, v)) if *v == l => *n += 1,
            _ => groups.push((1, l)),
        }
    }
    // The most common limit first.
    groups.sort_by_key(|&(n, v)| (std::cmp::Reverse(n), v));
    let (n, v) = groups[0];
    let mut s = format!(
        "{n} idle user{} held at {}",
        if n == 1 { "" } else { "s" },
        fmt_mbps(v)
    );
    let rest: Vec<String> = groups[1..]
        .iter()
        .map(|&(n, v)| format!("{n} at {}", fmt_mbps(v)))
        .collect();
    match rest.len() {
        0 => {}
        1 => s.push_str(&format!(" and {}", rest[0])),
        _ => {
            let (last, first) = rest.split_last().expect("two or more");
            s.push_str(&format!(", {} and {last}", first.join(", ")));
        }
    }
    s.push('.');
    s
}

/// The current value, when the hysteresis keeps it instead of `target`: close enough, within
/// the bounds, and not 0 ("server default" is never close to anything). The caller adds the
/// rule's own condition (never past the headroom).
fn kept(current: i64, target: u64, b: Bounds, percent: f64) -> Option<u64> {
    let cur = u64::try_from(current).ok()?;
    (cur != target
        && cur >= b.floor
        && cur <= b.ceiling
        && allocate::within_hysteresis(cur, target, percent))
    .then_some(cur)
}

fn ceiling_label(source: CeilingSource) -> &'static str {
    match source {
        CeilingSource::MaxPerUser => "max_per_user",
        CeilingSource::OwnLimit => "the user's own limit",
        CeilingSource::ServerLimit => "the server-wide limit",
        CeilingSource::Jellyfin => "Jellyfin's maximum",
    }
}

/// Which term bound an active user's limit, in words.
fn active_reason(algorithm: Algorithm, why: &Why, b: Bounds, held_by_others: u64) -> String {
    match why.term {
        rule::Term::Headroom => format!(
            "headroom beside {} held by others",
            fmt_mbps(held_by_others)
        ),
        rule::Term::Floor if why.overloaded => format!(
            "floor {}: overload, the floors exceed the budget",
            fmt_mbps(b.floor)
        ),
        rule::Term::Floor => format!(
            "floor {}: {} held by others leave less",
            fmt_mbps(b.floor),
            fmt_mbps(held_by_others)
        ),
        rule::Term::Share if why.share >= b.ceiling => format!(
            "capped by {} of {}",
            ceiling_label(b.source),
            fmt_mbps(b.ceiling)
        ),
        rule::Term::Share => match (algorithm, why.bound) {
            (Algorithm::Demand, Bound::Demand) => {
                format!("its demand {}", fmt_mbps(why.share))
            }
            _ => format!(
                "fair share {} of {} among {}",
                fmt_mbps(why.share),
                fmt_mbps(why.available),
                why.claimants
            ),
        },
    }
}

#[cfg(test)]
mod tests;
