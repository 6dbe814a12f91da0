//! What a plan decides: one [`Decision`] per managed user, the pushes, the warnings, and the
//! [`Plan`] that holds them. Data only; `src/core/plan.rs` computes it.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Algorithm, Capacity};
use crate::core::media::RateSource;
use crate::core::rate::Mbps;
use crate::ids::{ClientAddr, DeviceName, SessionId, UserId, UserName};
use crate::network::{self, Location};

use super::ServerShare;
use super::reasons::{Reason, idle_sentence};
use super::rule::Direction;
use super::transcode;

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
                write!(f, "started above its limit of {}", Mbps(*limit))
            }
            Uncontrolled::IgnoredPush { pushed } => {
                write!(f, "still above the {} it was pushed to", Mbps(*pushed))
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
    pub item_id: Arc<str>,
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
    /// Which term decided the limit (in words when shown).
    pub reason: Reason,
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
                Mbps(*floor),
                Mbps(*budget)
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
                Mbps(*rate)
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
    /// ends then (on the clock of the [`Memory`](super::Memory)).
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
                    Mbps(d.target.max(0) as u64),
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

/// A limit as Jellyfin means it: 0 is "server default", not "unlimited".
pub fn fmt_limit(bps: i64) -> String {
    if bps <= 0 {
        "0 (server default)".to_string()
    } else {
        Mbps(bps as u64).to_string()
    }
}
