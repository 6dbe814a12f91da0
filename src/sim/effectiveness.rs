//! A trace-driven simulation of remote streaming: how well does a manager share the link?
//!
//! The model is Jellyfin's (see the fake server, `src/sim/fake.rs`): a stream's rate is fixed when
//! it starts, at `min(source, the user's limit at that moment, the client's own maximum)`
//! (transcoded down when the source is above); a client that lists `SetMaxStreamingBitrate`
//! re-negotiates at once when pushed, under `min(source, pushed bitrate, limit)`, and keeps the
//! pushed bitrate as its own maximum for later items (the web client saves it as its quality
//! setting); a client that ignores limits always plays the source.
//!
//! Time is simulated (integer milliseconds, no sleeping), events are exact: item starts and
//! stops, the daemon's plan one debounce (plus a read and write round trip) after a start or
//! stop, and its reconciliation poll. The daemon's manager runs the real planner
//! ([`crate::plan::plan`]) with the real [`Memory`] and ledger. The figures are integrated
//! over time between events, not sampled.
//!
//! `benches/effectiveness.rs` runs the grid (seeds, sizes, push-honouring clients) and prints
//! the tables of `BENCHMARKS.md`; a test runs one seed and asserts the targets.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::json;

use crate::allocate::{self, Claimant};
use crate::config::{Algorithm, Settings};
use crate::ids::{DeviceId, SessionId, UserId, UserName};
use crate::jellyfin::{MediaStream, NowPlayingItem, PlayState, Session, TranscodingInfo, User};
use crate::ledger::Ledger;
use crate::network;
use crate::plan::{self, Inputs, Memory, PUSH_COMMAND};

const M: u64 = 1_000_000;

/// One item a user plays: simulated seconds, source bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// When it starts, simulated seconds.
    pub start: u64,
    /// When it ends.
    pub end: u64,
    /// Its source bitrate, bits/s.
    pub source: u64,
}

/// How a user's client treats limits and pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Lists `SetMaxStreamingBitrate`, honours it, and keeps the pushed bitrate as its own
    /// maximum (the web client).
    Pushable,
    /// Obeys the limit in force when an item starts; cannot be pushed (Android TV, mpv-shim).
    Fixed,
    /// Plays the source whatever the limit (Infuse, Kodi in native mode).
    Ignores,
}

/// One remote user's items over the simulated time.
#[derive(Debug, Clone)]
pub struct UserTrace {
    /// The user's name.
    pub name: String,
    /// How the user's client treats limits.
    pub client: ClientKind,
    /// What the user plays, in order, not overlapping.
    pub items: Vec<Item>,
}

/// A tiny deterministic generator (xorshift64), so traces are the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() % 1_000_000) as f64 / 1_000_000.0
    }
}

/// The clients of a trace: which users can be pushed, which ignore limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clients {
    /// Every `n`-th user (starting with the first) has a client that accepts pushes; 0: none.
    pub pushable_every: usize,
    /// The last user of every `n` has a client that ignores limits; 0: none.
    pub ignoring_every: usize,
}

impl Clients {
    /// Half the clients accept pushes, none ignores limits.
    pub const HALF_PUSHABLE: Clients = Clients {
        pushable_every: 2,
        ignoring_every: 0,
    };
    /// No client accepts pushes.
    pub const NONE_PUSHABLE: Clients = Clients {
        pushable_every: 0,
        ignoring_every: 0,
    };

    fn kind(&self, u: usize) -> ClientKind {
        if self.ignoring_every > 0 && u % self.ignoring_every == self.ignoring_every - 1 {
            ClientKind::Ignores
        } else if self.pushable_every > 0 && u.is_multiple_of(self.pushable_every) {
            ClientKind::Pushable
        } else {
            ClientKind::Fixed
        }
    }
}

/// `users` remote users over `hours` simulated hours: sessions arrive about every 80 minutes
/// per user, each plays 1-3 items back to back (episodes 22-45 min, films 90-140 min, a few
/// seconds apart) of one kind: remux 60-80 Mbps (20 %), 4K 35-45 (20 %), 1080p 8-12 (45 %) or
/// audio 0.32 (15 %).
pub fn trace(users: usize, hours: u64, seed: u64, clients: Clients) -> Vec<UserTrace> {
    let mut rng = Rng(seed.max(1));
    let horizon = hours * 3600;
    (0..users)
        .map(|u| {
            let mut items = Vec::new();
            let mut t = (rng.unit() * 3600.0) as u64;
            while t < horizon {
                let kind = rng.unit();
                let source = if kind < 0.2 {
                    (60.0 + rng.unit() * 20.0) as u64 * M
                } else if kind < 0.4 {
                    (35.0 + rng.unit() * 10.0) as u64 * M
                } else if kind < 0.85 {
                    (8.0 + rng.unit() * 4.0) as u64 * M
                } else {
                    320_000
                };
                let film = rng.unit() < 0.3;
                for _ in 0..(1 + rng.next() % 3) {
                    let len = if film {
                        90 + rng.next() % 50
                    } else {
                        22 + rng.next() % 24
                    } * 60;
                    items.push(Item {
                        start: t,
                        end: (t + len).min(horizon),
                        source,
                    });
                    t += len + 5;
                    if t >= horizon {
                        break;
                    }
                }
                t += (rng.unit() * 2.0 * 80.0 * 60.0) as u64;
            }
            UserTrace {
                name: format!("user{u:02}"),
                client: clients.kind(u),
                items,
            }
        })
        .collect()
}

/// Upload of the rest of the house: `bps` from `start` to `end`, simulated seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// When it starts.
    pub start: u64,
    /// When it ends.
    pub end: u64,
    /// Its rate, bits/s.
    pub bps: u64,
}

/// A household's own upload over `hours`: every day a cloud backup of 30 Mbps for an hour
/// (starting at a random hour), six video calls of 3 Mbps (20-60 min, between 08:00 and
/// 20:00) and three photo uploads of 20 Mbps for 3 minutes.
pub fn household(hours: u64, seed: u64) -> Vec<Load> {
    let mut rng = Rng(seed.max(1) ^ 0x40_05E);
    let horizon = hours * 3600;
    let mut loads = Vec::new();
    for day in 0..hours.div_ceil(24) {
        let d = day * 86_400;
        let at = d + rng.next() % 23 * 3600;
        loads.push(Load {
            start: at,
            end: at + 3600,
            bps: 30 * M,
        });
        for _ in 0..6 {
            let at = d + 8 * 3600 + rng.next() % (12 * 3600);
            loads.push(Load {
                start: at,
                end: at + (20 + rng.next() % 41) * 60,
                bps: 3 * M,
            });
        }
        for _ in 0..3 {
            let at = d + rng.next() % 86_400;
            loads.push(Load {
                start: at,
                end: at + 180,
                bps: 20 * M,
            });
        }
    }
    loads.retain(|l| l.start < horizon);
    for l in &mut loads {
        l.end = l.end.min(horizon);
    }
    loads
}

/// Who sets the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// Nobody: every stream plays its source.
    None,
    /// Every 30 s, an equal split of the budget among the users streaming now; nothing for
    /// idle users (the seed design).
    Poll30,
    /// jellydemon's first rule: active users' limits split the whole budget, idle users get
    /// `budget - Σ max(rate, limit)`, pushes only lower rates.
    FirstRule(Algorithm),
    /// jellydemon as it is: the real planner, memory and ledger.
    Daemon(Algorithm),
}

impl std::fmt::Display for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Manager::None => f.write_str("none"),
            Manager::Poll30 => f.write_str("poll every 30 s, active users only"),
            Manager::FirstRule(a) => write!(f, "first rule, {a}"),
            Manager::Daemon(a) => write!(f, "jellydemon {a}"),
        }
    }
}

/// What a run measured. Durations are simulated milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Time with at least one remote stream.
    pub streamed_ms: u64,
    /// Of which the remote streams together exceeded the budget.
    pub over_ms: u64,
    /// Of which they exceeded it by more than 5 %.
    pub over5_ms: u64,
    /// The highest total, as a share of the budget.
    pub peak: f64,
    /// ∫ min(total, budget) / budget dt.
    pub util_integral: f64,
    /// ∫ Σ min(rate, ideal) dt (bits).
    pub served: f64,
    /// ∫ Σ ideal dt (bits).
    pub ideal: f64,
    /// ∫ Jain(rate / ideal) dt over the time with two streams or more.
    pub jain_integral: f64,
    /// The time with two streams or more, milliseconds.
    pub jain_ms: u64,
    /// Policy writes.
    pub writes: u64,
    /// Pushes sent.
    pub pushes: u64,
    /// Items started.
    pub item_starts: u64,
    /// Simulated hours.
    pub hours: u64,
    /// Time the link itself was full: remote streams and the rest of the house above the
    /// upload capacity.
    pub saturated_ms: u64,
    /// Time with a remote stream while the rest of the house uploaded nothing.
    pub quiet_ms: u64,
    /// ∫ Σ min(rate, ideal) dt over that time (bits).
    pub quiet_served: f64,
    /// Budget changes of the meter.
    pub budget_changes: u64,
    /// With a seeder: ∫ what it sent dt (bits).
    pub seeder_sent: f64,
    /// With a seeder: ∫ what the remote streams leave of the budget dt (bits), over the whole
    /// horizon.
    pub seeder_left: f64,
    /// With a seeder: the time the link is asked for more than its capacity, over the whole
    /// horizon.
    pub link_over_ms: u64,
    /// The simulated horizon, milliseconds.
    pub horizon_ms: u64,
    /// ∫ number of remote streams dt: the play time, stream-milliseconds.
    pub play_ms: u64,
    /// `transcodes_ms[n]`: the time with `n` video transcodes running at once (a video
    /// stream whose rate is below its source is transcoded, [`VIDEO_MIN_BPS`]).
    pub transcodes_ms: Vec<u64>,
    /// `fewest_transcodes_ms[n]`: the time during which any allocation within the budget
    /// that gives every stream at least the floor transcodes `n` videos or more
    /// ([`fewest_transcodes`]): what no manager can go below.
    pub fewest_transcodes_ms: Vec<u64>,
}

/// A source above this is video (the trace's audio plays at 0.32 Mbps): below its source it
/// is a video transcode.
pub const VIDEO_MIN_BPS: u64 = 2 * M;

impl Figures {
    /// Share of the streamed time over budget, in percent.
    pub fn over_percent(&self) -> f64 {
        100.0 * self.over_ms as f64 / self.streamed_ms.max(1) as f64
    }
    /// Share of the streamed time more than 5 % over budget, in percent.
    pub fn over5_percent(&self) -> f64 {
        100.0 * self.over5_ms as f64 / self.streamed_ms.max(1) as f64
    }
    /// Served as a share of the clairvoyant ideal, in percent.
    pub fn served_percent(&self) -> f64 {
        100.0 * self.served / self.ideal.max(1.0)
    }
    /// Jain's fairness index of rate over ideal, averaged over the time with two streams or more
    /// (1 = perfectly fair).
    pub fn jain(&self) -> f64 {
        if self.jain_ms == 0 {
            1.0
        } else {
            self.jain_integral / self.jain_ms as f64
        }
    }
    /// Mean use of the budget while anything streams, in percent.
    pub fn utilization_percent(&self) -> f64 {
        100.0 * self.util_integral / self.streamed_ms.max(1) as f64
    }
    /// Pushes per item started.
    pub fn pushes_per_start(&self) -> f64 {
        self.pushes as f64 / self.item_starts.max(1) as f64
    }
    /// Policy writes per simulated hour.
    pub fn writes_per_hour(&self) -> f64 {
        self.writes as f64 / self.hours.max(1) as f64
    }
    /// What the seeder sent as a share of what the remote streams left it, in percent.
    pub fn seeder_percent(&self) -> f64 {
        100.0 * self.seeder_sent / self.seeder_left.max(1.0)
    }
    /// Share of the whole time the link was asked for more than its capacity, in percent.
    pub fn link_over_percent(&self) -> f64 {
        100.0 * self.link_over_ms as f64 / self.horizon_ms.max(1) as f64
    }
    /// Share of the streamed time with the link full, in percent.
    pub fn saturated_percent(&self) -> f64 {
        100.0 * self.saturated_ms as f64 / self.streamed_ms.max(1) as f64
    }
    /// Share of the play time spent in a video transcode, in percent.
    pub fn transcoded_percent(&self) -> f64 {
        let t: u64 = self
            .transcodes_ms
            .iter()
            .enumerate()
            .map(|(n, ms)| n as u64 * ms)
            .sum();
        100.0 * t as f64 / self.play_ms.max(1) as f64
    }
    /// Share of the play time the viewers stall on a server that transcodes `capacity` videos
    /// in real time, in percent. With `n > capacity` transcodes at once each runs at
    /// `capacity / n` of real time, so each viewer waits `1 - capacity / n` of the time:
    /// together `n - capacity` stream-milliseconds per millisecond.
    pub fn stall_percent(&self, capacity: u32) -> f64 {
        self.stalls(&self.transcodes_ms, capacity)
    }
    /// The least [`Figures::stall_percent`] any manager within the budget could reach on
    /// these traces: the stalls of [`fewest_transcodes`] at each instant.
    pub fn least_stall_percent(&self, capacity: u32) -> f64 {
        self.stalls(&self.fewest_transcodes_ms, capacity)
    }
    /// The stalls, as a share of the play time, when `time_ms[n]` is the time with `n` video
    /// transcodes at once.
    fn stalls(&self, time_ms: &[u64], capacity: u32) -> f64 {
        let c = u64::from(capacity);
        let stalled: u64 = time_ms
            .iter()
            .enumerate()
            .map(|(n, ms)| (n as u64).saturating_sub(c) * ms)
            .sum();
        100.0 * stalled as f64 / self.play_ms.max(1) as f64
    }
}

/// The fewest video transcodes any allocation of `budget` needs when the streams play these
/// `sources` and each gets at least `floor` (or its source, when smaller): the smallest
/// videos play direct for as long as they fit beside the others' floors, every other video
/// transcodes. A source above [`VIDEO_MIN_BPS`] is video; the rest play at their source.
pub fn fewest_transcodes(sources: &[u64], budget: u64, floor: u64) -> usize {
    let mut videos: Vec<u64> = sources
        .iter()
        .copied()
        .filter(|&s| s > VIDEO_MIN_BPS)
        .collect();
    videos.sort_unstable();
    let others: u64 = sources.iter().filter(|&&s| s <= VIDEO_MIN_BPS).sum();
    let mut used = others + videos.iter().map(|&s| s.min(floor)).sum::<u64>();
    let mut direct = 0;
    for &s in &videos {
        let more = s - s.min(floor);
        if used + more > budget {
            break;
        }
        used += more;
        direct += 1;
    }
    videos.len() - direct
}

/// A torrent client seeding on the same link, taking all it is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Seeding {
    /// No seeder at all.
    #[default]
    Absent,
    /// A seeder nobody limits (today without `[[downloader]]`): it takes what TCP gives its
    /// many connections.
    Uncontrolled,
    /// `[[downloader]]` with `priority = "streams"`.
    Streams,
    /// `[[downloader]]` with `priority = "share"`.
    Share,
}

impl std::fmt::Display for Seeding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Seeding::Absent => "no seeder",
            Seeding::Uncontrolled => "seeder, not controlled",
            Seeding::Streams => "seeder, priority streams",
            Seeding::Share => "seeder, priority share",
        })
    }
}

/// The connections a seeder uploads over: on a full link TCP shares per connection, so a
/// torrent client with many peers takes several streams' worth.
const SEEDER_FLOWS: u64 = 8;

/// How long after a PlaybackStart the torrent client's lowered limit bites: the webhook, the
/// write, the client applying it.
const ROOM_DELAY_MS: u64 = 300;

/// The settings of a simulated household: 100 Mbps up, 10 reserved (a budget of 90), the
/// algorithm, and for `priority` the first two users at weight 2.
pub fn settings(algorithm: Algorithm) -> Settings {
    settings_seeded(algorithm, Seeding::Absent)
}

/// [`settings`] with a `[[downloader]]` for [`Seeding::Streams`] and [`Seeding::Share`].
pub fn settings_seeded(algorithm: Algorithm, seeding: Seeding) -> Settings {
    settings_for(algorithm, seeding, None)
}

/// [`settings_seeded`], with `[transcoding] capacity` when given.
fn settings_for(algorithm: Algorithm, seeding: Seeding, capacity: Option<u32>) -> Settings {
    let transcoding =
        capacity.map_or_else(String::new, |c| format!("[transcoding]\ncapacity = {c}\n"));
    let downloader = match seeding {
        Seeding::Streams | Seeding::Share => format!(
            "[bandwidth.downloaders]\npriority = \"{}\"\n\
             [[downloader]]\nkind = \"qbittorrent\"\nurl = \"http://127.0.0.1:8080\"\n",
            if seeding == Seeding::Share {
                "share"
            } else {
                "streams"
            }
        ),
        _ => String::new(),
    };
    Settings::from_toml_str(&format!(
        r#"
        [jellyfin]
        url = "http://127.0.0.1:8096"
        api_key = "simulation-key-0123456789abcdef"
        [bandwidth]
        total_upload_mbps = 100
        reserved_mbps = 10
        algorithm = "{algorithm}"
        [bandwidth.priority]
        users = {{ user00 = 2.0, user01 = 2.0 }}
        {downloader}
        {transcoding}
        "#
    ))
    .expect("the simulation's settings are valid")
}

/// What one user is playing.
#[derive(Debug, Clone)]
struct Playing {
    item: usize,
    source: u64,
    rate: u64,
}

/// Events, ordered by time then kind (stops before starts at the same instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Stop(usize),
    Start(usize, usize),
    LoadOff(usize),
    LoadOn(usize),
    Meter,
    /// A PlaybackStart's webhook lowers the torrent client's limit.
    Room(usize),
    Plan,
    Poll,
    /// The daemon reads the second Jellyfin's `/Sessions` (`src/daemon/members.rs`).
    MemberPoll,
}

struct World<'a> {
    traces: &'a [UserTrace],
    settings: Settings,
    budget: u64,
    /// The per-user floor (`min_per_user_mbps`).
    floor: u64,
    limits: Vec<i64>,
    client_max: Vec<Option<u64>>,
    playing: Vec<Option<Playing>>,
    ledger: Ledger,
    memory: Memory,
    weights: Vec<u64>,
    fig: Figures,
    /// The link's upload capacity.
    link: u64,
    /// The rest of the house's upload now.
    other: u64,
    /// Bytes sent on the WAN so far (what a meter reads).
    counter: f64,
    /// The meter's estimator, when the budget follows it.
    estimator: Option<crate::budget::estimate::Estimator>,
    /// The seeder on the link.
    seeding: Seeding,
    /// Its limit in force (`None`: unlimited) and the least it keeps (`min_mbps`).
    seeder_limit: Option<u64>,
    seeder_kept: u64,
    /// The history the daemon would write, when asked for ([`run_recorded`]).
    history: Option<Recording>,
    /// Users who watch on Plex ([`run_beside_plex`]).
    plex: Vec<bool>,
    /// Users on a second Jellyfin ([`run_beside_second_jellyfin`]).
    member: Vec<bool>,
    /// Plex's `WanTotalMaxUploadRate` as jellydemon last set it, bits/s (`None`: not
    /// managed, Plex plays every source).
    plex_wan: Option<u64>,
}

/// The history of a simulated run: the real [`crate::history::Recorder`] fed every plan.
struct Recording {
    recorder: crate::history::Recorder,
    /// Unix milliseconds at simulated time 0.
    start_ms: u64,
    rows: Vec<crate::history::Record>,
}

/// What a simulated run has beside the streams.
#[derive(Default)]
struct Setup<'a> {
    /// The house's own upload.
    loads: &'a [Load],
    /// jellydemon's budget follows a meter.
    meter: bool,
    /// A seeder on the link.
    seeding: Seeding,
    /// Record the history from these unix milliseconds.
    record_from_ms: Option<u64>,
    /// jellydemon is told `[transcoding] capacity`.
    capacity: Option<u32>,
    /// Which users watch on a Plex server on the same link instead of Jellyfin.
    plex: &'a [bool],
    /// jellydemon sets Plex's total (`manage_wan_total`).
    plex_managed: bool,
    /// Which users watch on a second Jellyfin server (`[[server]] kind = "jellyfin"`).
    member: &'a [bool],
}

/// Run `manager` over the traces for `hours` simulated hours, the house uploading nothing.
pub fn run(manager: Manager, traces: &[UserTrace], hours: u64) -> Figures {
    run_household(manager, traces, hours, &[], false)
}

/// [`run`], with jellydemon told that the server transcodes `capacity` videos in real time
/// (`[transcoding] capacity`).
pub fn run_capacity(manager: Manager, traces: &[UserTrace], hours: u64, capacity: u32) -> Figures {
    let setup = Setup {
        capacity: Some(capacity),
        ..Setup::default()
    };
    simulate(manager, traces, hours, setup).0
}

/// Run `manager` over the traces beside a greedy seeder on the same 100 Mbps link
/// ([`Seeding`]): what it sends is its limit, or what the link leaves when shared per
/// connection; the remote streams are served what the link gives them.
pub fn run_seeded(manager: Manager, traces: &[UserTrace], hours: u64, seeding: Seeding) -> Figures {
    let setup = Setup {
        seeding,
        ..Setup::default()
    };
    simulate(manager, traces, hours, setup).0
}

/// Run jellydemon over the traces with the users `on_plex` marks watching on a Plex server on
/// the same link, read at every plan (a Plex webhook each start and stop). Plex has no
/// per-user limit: without `managed` it plays their source and jellydemon takes what it
/// streams outside the house off the budget first (`manage_wan_total = false`); with it,
/// Plex is one claimant whose share becomes its total (`src/plan/servers.rs`), and a stream
/// Plex starts gets its source or what the total leaves beside Plex's other streams (at
/// least the per-user floor), kept for the whole item. The figures count every stream,
/// Plex's too, against the same ideal as [`run`].
pub fn run_beside_plex(
    algorithm: Algorithm,
    traces: &[UserTrace],
    hours: u64,
    on_plex: &[bool],
    managed: bool,
) -> Figures {
    let setup = Setup {
        plex: on_plex,
        plex_managed: managed,
        ..Setup::default()
    };
    simulate(Manager::Daemon(algorithm), traces, hours, setup).0
}

/// Run jellydemon over the traces with the users `on_member` marks on a second Jellyfin
/// server on the same link (`[[server]] kind = "jellyfin"`, `src/jellyfin/fleet.rs`): their
/// users are claimants beside the first server's, under the same rule, but their playback
/// events do not reach the webhook: the daemon notices a start or a stop there when it next
/// reads that server's sessions, every [`MEMBER_INTERVAL_MS`] (`src/daemon/members.rs`), and
/// plans then. The figures count every stream against the same ideal as [`run`].
pub fn run_beside_second_jellyfin(
    algorithm: Algorithm,
    traces: &[UserTrace],
    hours: u64,
    on_member: &[bool],
) -> Figures {
    let setup = Setup {
        member: on_member,
        ..Setup::default()
    };
    simulate(Manager::Daemon(algorithm), traces, hours, setup).0
}

/// How often the daemon reads a second Jellyfin's sessions (`[[server]] interval`'s default).
pub const MEMBER_INTERVAL_MS: u64 = 10_000;

/// How often the simulated meter is read.
const METER_INTERVAL_MS: u64 = 5_000;

/// Run `manager` over the traces beside the house's own `loads`; with `meter`, jellydemon's
/// budget follows a meter read every 5 s (the estimator of `src/budget/estimate.rs`, with
/// the defaults of `[bandwidth.meter]`).
pub fn run_household(
    manager: Manager,
    traces: &[UserTrace],
    hours: u64,
    loads: &[Load],
    meter: bool,
) -> Figures {
    let setup = Setup {
        loads,
        meter,
        ..Setup::default()
    };
    simulate(manager, traces, hours, setup).0
}

/// Run jellydemon (`algorithm`) over the traces as [`run`] does, and return the history rows
/// the daemon would have written ([`crate::history::Recorder`] fed every plan, the pushes and,
/// at the end, the plays still open), timed from `start_ms` (unix milliseconds).
pub fn run_recorded(
    algorithm: Algorithm,
    traces: &[UserTrace],
    hours: u64,
    start_ms: u64,
) -> (Figures, Vec<crate::history::Record>) {
    let setup = Setup {
        record_from_ms: Some(start_ms),
        ..Setup::default()
    };
    let (fig, rows) = simulate(Manager::Daemon(algorithm), traces, hours, setup);
    (fig, rows.unwrap_or_default())
}

fn simulate(
    manager: Manager,
    traces: &[UserTrace],
    hours: u64,
    setup: Setup,
) -> (Figures, Option<Vec<crate::history::Record>>) {
    let Setup {
        loads,
        meter,
        seeding,
        record_from_ms,
        capacity,
        plex,
        plex_managed,
        member,
    } = setup;
    let algorithm = match manager {
        Manager::FirstRule(a) | Manager::Daemon(a) => a,
        _ => Algorithm::Equal,
    };
    let settings = settings_for(algorithm, seeding, capacity);
    let budget = settings.budget().budget_bps;
    let floor = settings.budget().min_per_user_bps;
    let weights = traces
        .iter()
        .map(|t| match algorithm {
            Algorithm::Priority => {
                allocate::weight_milli(settings.bandwidth.priority.weight(&t.name, false))
            }
            _ => 1000,
        })
        .collect();
    // The daemon reacts one debounce after an event, plus a read and a write.
    let reaction = settings.daemon.debounce.as_millis() as u64 + 200;
    let poll = settings.daemon.poll_interval().as_millis() as u64;
    let n = traces.len();
    let mut w = World {
        traces,
        settings,
        budget,
        floor,
        limits: vec![0; n],
        client_max: vec![None; n],
        playing: vec![None; n],
        ledger: Ledger::in_memory(),
        memory: Memory::default(),
        weights,
        fig: Figures {
            hours,
            ..Figures::default()
        },
        link: 0,
        other: 0,
        counter: 0.0,
        estimator: None,
        seeding,
        seeder_limit: None,
        seeder_kept: 0,
        plex: (0..n)
            .map(|u| plex.get(u).copied().unwrap_or(false))
            .collect(),
        member: (0..n)
            .map(|u| member.get(u).copied().unwrap_or(false))
            .collect(),
        // No limit in Plex until the first plan.
        plex_wan: plex_managed.then_some(u64::MAX),
        history: record_from_ms.map(|start_ms| Recording {
            recorder: crate::history::Recorder::default(),
            start_ms,
            rows: Vec::new(),
        }),
    };
    w.link = crate::config::mbps_to_bps(w.settings.bandwidth.total_upload_mbps);
    if meter {
        let m = crate::config::Settings::from_toml_str(
            "[jellyfin]\nurl = \"http://h\"\napi_key = \"k\"\n[bandwidth]\ntotal_upload_mbps = 1\n\
             [bandwidth.meter]\nkind = \"interface\"\ninterface = \"wan\"\n",
        )
        .expect("valid")
        .bandwidth
        .meter
        .expect("a meter");
        let b = &w.settings.bandwidth;
        w.estimator = Some(crate::budget::estimate::Estimator::new(
            crate::budget::estimate::Params::new(&m, b.total_upload_mbps, b.reserved_mbps),
        ));
    }
    let horizon = hours * 3600 * 1000;
    let mut events: BTreeMap<(u64, Event), ()> = BTreeMap::new();
    for (u, t) in traces.iter().enumerate() {
        for (i, item) in t.items.iter().enumerate() {
            events.insert((item.start * 1000, Event::Start(u, i)), ());
            events.insert((item.end * 1000, Event::Stop(u)), ());
        }
    }
    for (i, l) in loads.iter().enumerate() {
        events.insert((l.start * 1000, Event::LoadOn(i)), ());
        events.insert((l.end * 1000, Event::LoadOff(i)), ());
    }
    if w.member.iter().any(|&m| m) && matches!(manager, Manager::Daemon(_)) {
        let mut t = 0;
        while t < horizon {
            events.insert((t, Event::MemberPoll), ());
            t += MEMBER_INTERVAL_MS;
        }
    }
    // A start or stop on the second Jellyfin that its next read has not seen yet.
    let mut member_changed = false;
    if w.estimator.is_some() {
        let mut t = 0;
        while t < horizon {
            events.insert((t, Event::Meter), ());
            t += METER_INTERVAL_MS;
        }
    }
    match manager {
        Manager::Daemon(_) | Manager::FirstRule(_) => {
            let mut t = 0;
            while t < horizon {
                events.insert((t, Event::Poll), ());
                t += poll;
            }
        }
        Manager::Poll30 => {
            let mut t = 0;
            while t < horizon {
                events.insert((t, Event::Poll), ());
                t += 30_000;
            }
        }
        Manager::None => {}
    }
    let mut clock = 0;
    let mut plan_at: Option<u64> = None;
    while let Some(((t, ev), ())) = events.pop_first() {
        if t >= horizon {
            break;
        }
        w.measure(clock, t);
        clock = t;
        let on_member = match ev {
            Event::Start(u, _) | Event::Stop(u) => w.member[u],
            _ => false,
        };
        match ev {
            Event::Start(u, i) => {
                w.start(u, i);
                w.fig.item_starts += 1;
                if matches!(seeding, Seeding::Streams | Seeding::Share)
                    && matches!(manager, Manager::Daemon(_))
                {
                    events.insert((t + ROOM_DELAY_MS, Event::Room(u)), ());
                }
            }
            Event::Room(u) => {
                w.make_room(u);
                continue;
            }
            Event::Stop(u) => w.playing[u] = None,
            Event::LoadOn(i) => {
                w.other += loads[i].bps;
                continue;
            }
            Event::LoadOff(i) => {
                w.other = w.other.saturating_sub(loads[i].bps);
                continue;
            }
            Event::Meter => {
                if w.read_meter(t) && plan_at.is_none() {
                    plan_at = Some(t + reaction);
                    events.insert((t + reaction, Event::Plan), ());
                }
                continue;
            }
            Event::MemberPoll => {
                if std::mem::take(&mut member_changed) && plan_at.is_none() {
                    plan_at = Some(t + reaction);
                    events.insert((t + reaction, Event::Plan), ());
                }
                continue;
            }
            Event::Plan | Event::Poll => {
                if ev == Event::Plan {
                    plan_at = None;
                }
                if let Some(wake) = w.manage(manager, t).filter(|w| *w > t) {
                    events.insert((wake, Event::Plan), ());
                }
                continue;
            }
        }
        if on_member {
            // No webhook: seen at the next read of that server.
            member_changed = true;
        } else if matches!(manager, Manager::Daemon(_) | Manager::FirstRule(_)) && plan_at.is_none()
        {
            plan_at = Some(t + reaction);
            events.insert((t + reaction, Event::Plan), ());
        }
    }
    w.measure(clock, horizon);
    w.fig.horizon_ms = horizon;
    let rows = w.history.map(|mut h| {
        let open = h.recorder.open_plays();
        h.rows.extend(open);
        h.rows
    });
    (w.fig, rows)
}

impl World<'_> {
    /// Jellyfin starts an item: the rate is fixed now.
    fn start(&mut self, u: usize, i: usize) {
        let source = self.traces[u].items[i].source;
        let rate = match self.traces[u].client {
            _ if self.plex[u] => self.plex_rate(u, source),
            ClientKind::Ignores => source,
            ClientKind::Fixed => self.capped(u, source, None),
            ClientKind::Pushable => self.capped(u, source, self.client_max[u]),
        };
        self.playing[u] = Some(Playing {
            item: i,
            source,
            rate,
        });
    }

    /// What Plex gives a stream it starts: its source, or what its total leaves beside its
    /// other streams (at least the per-user floor).
    fn plex_rate(&self, u: usize, source: u64) -> u64 {
        let Some(total) = self.plex_wan else {
            return source;
        };
        let others: u64 = (0..self.playing.len())
            .filter(|&v| v != u && self.plex[v])
            .filter_map(|v| self.playing[v].as_ref().map(|p| p.rate))
            .sum();
        source.min(total.saturating_sub(others).max(self.floor))
    }

    /// `min(source, the user's limit, the client's own maximum)`.
    fn capped(&self, u: usize, source: u64, client_max: Option<u64>) -> u64 {
        let mut rate = source;
        if self.limits[u] > 0 {
            rate = rate.min(self.limits[u] as u64);
        }
        if let Some(max) = client_max {
            rate = rate.min(max);
        }
        rate
    }

    /// Set a user's limit as the writer would (recording the intent first).
    fn write(&mut self, u: usize, target: i64) {
        if self.limits[u] != target {
            let id = self.user_id(u);
            // The simulated Jellyfin answers at once: the write is settled as it is made.
            let ticket = self.ledger.record_intent(
                &id,
                &UserName::new(&self.traces[u].name),
                self.limits[u],
                target,
                0,
            );
            self.ledger.settle(&id, ticket, 0);
            self.limits[u] = target;
            self.fig.writes += 1;
        }
    }

    /// A push to user `u`'s stream: a client that accepts it re-negotiates now.
    fn push(&mut self, u: usize, bitrate: u64) {
        if self.traces[u].client != ClientKind::Pushable {
            return;
        }
        self.fig.pushes += 1;
        self.client_max[u] = Some(bitrate);
        if let Some(p) = self.playing[u].clone() {
            let rate = self.capped(u, p.source, Some(bitrate));
            self.playing[u] = Some(Playing { rate, ..p });
        }
    }

    /// Let the manager act at `now`; returns when it wants to act again.
    fn manage(&mut self, manager: Manager, now: u64) -> Option<u64> {
        match manager {
            Manager::None => None,
            Manager::Poll30 => {
                let active: Vec<usize> = (0..self.playing.len())
                    .filter(|u| self.playing[*u].is_some())
                    .collect();
                if !active.is_empty() {
                    let share = (self.budget / active.len() as u64) as i64;
                    for u in active {
                        self.write(u, share);
                    }
                }
                None
            }
            Manager::FirstRule(algorithm) => {
                self.first_rule(algorithm);
                None
            }
            Manager::Daemon(_) => self.daemon(now),
        }
    }

    /// One plan of the real planner, then its writes and pushes; returns the plan's wake-up.
    fn daemon(&mut self, now: u64) -> Option<u64> {
        let sessions: Vec<Session> = (0..self.playing.len())
            .filter(|&u| !self.plex[u])
            .filter_map(|u| self.playing[u].as_ref().map(|p| self.session(u, p)))
            .collect();
        let users: Vec<User> = (0..self.traces.len())
            .filter(|&u| !self.plex[u])
            .map(|u| self.user(u))
            .collect();
        // What Plex streams outside the house: a claimant's reading when its total is managed,
        // else taken off the budget first (src/budget/feed.rs).
        let on_plex: u64 = (0..self.traces.len())
            .filter(|&u| self.plex[u])
            .filter_map(|u| self.playing[u].as_ref().map(|p| p.rate))
            .sum();
        let servers: Vec<plan::ServerClaim> = self
            .plex_wan
            .map(|_| plan::ServerClaim {
                name: "plex".into(),
                streaming_bps: on_plex,
            })
            .into_iter()
            .collect();
        let off_budget = if self.plex_wan.is_some() { 0 } else { on_plex };
        let ranges = network::jellyfin_default_ranges();
        let plan = plan::plan(
            &Inputs {
                sessions: &sessions,
                users: &users,
                server_limit: 0,
                ranges: &ranges,
                budget_bps: self
                    .estimator
                    .as_ref()
                    .map_or(self.budget, |e| e.reading().budget_bps)
                    .saturating_sub(off_budget),
                overrides: &crate::control::Overrides::NONE,
                servers: &servers,
            },
            &self.ledger,
            &self.memory,
            Duration::from_millis(now),
            &self.settings,
        );
        self.memory.observe(&plan, Duration::from_millis(now));
        if let Some(h) = &mut self.history {
            let b = &self.settings.bandwidth;
            let budget = crate::budget::feed::BudgetState {
                budget_bps: plan.budget,
                static_bps: self.budget,
                source: "static",
                cause: crate::budget::feed::configured(b.total_upload_mbps, b.reserved_mbps),
                meter: None,
                servers: Vec::new(),
                claims: Vec::new(),
            };
            let rows = h
                .recorder
                .plan(h.start_ms + now, &sessions, &users, &plan, &budget);
            h.rows.extend(rows);
        }
        if let Some(s) = plan.servers.first() {
            self.plex_wan = Some(s.limit);
        }
        if let Some(d) = &plan.downloaders {
            self.seeder_limit = Some(d.limit);
            self.seeder_kept = d.min;
        }
        let index: HashMap<UserId, usize> = (0..self.traces.len())
            .map(|u| (self.user_id(u), u))
            .collect();
        for d in &plan.decisions {
            let u = index[&d.user_id];
            self.write(u, d.target);
            for (s, p) in d.pushes() {
                self.memory
                    .record_push(&s.session_id, Duration::from_millis(now), p.bitrate);
                if let Some(h) = &mut self.history {
                    h.recorder.pushed(s.session_id.as_str());
                }
                self.push(u, p.bitrate);
            }
        }
        plan.wake_at.map(|w| w.as_millis() as u64)
    }

    /// The daemon's answer to user `u`'s PlaybackStart: the seeder's limit lowered by what the
    /// item needs (its source times the overhead, at most the user's limit).
    fn make_room(&mut self, u: usize) {
        let (Some(limit), Some(p)) = (self.seeder_limit, self.playing[u].as_ref()) else {
            return;
        };
        let overhead = self.settings.bandwidth.demand.overhead;
        let mut room = (p.source as f64 * overhead).round() as u64;
        if self.limits[u] > 0 {
            room = room.min(self.limits[u] as u64);
        }
        self.seeder_limit = Some(limit.saturating_sub(room).max(self.seeder_kept));
    }

    /// What each remote stream and the seeder get on the link now: everyone their demand when
    /// the link has room, else max-min fair per connection (a stream one, the house one, the
    /// seeder [`SEEDER_FLOWS`]). Returns the streams' rates (in `self.playing` order of the
    /// playing users) and the seeder's.
    fn on_the_link(&self, streams: &[(usize, &Playing)]) -> (Vec<u64>, u64) {
        let seeder_demand = match (self.seeding, self.seeder_limit) {
            (Seeding::Absent, _) => return (streams.iter().map(|(_, p)| p.rate).collect(), 0),
            (_, Some(l)) if self.seeding != Seeding::Uncontrolled => l,
            _ => self.link,
        };
        let total: u64 =
            streams.iter().map(|(_, p)| p.rate).sum::<u64>() + self.other + seeder_demand;
        if total <= self.link {
            return (streams.iter().map(|(_, p)| p.rate).collect(), seeder_demand);
        }
        let mut claimants: Vec<Claimant> = streams
            .iter()
            .map(|(_, p)| Claimant {
                weight_milli: 1000,
                floor: 0,
                ceiling: p.rate,
                demand: p.rate,
            })
            .collect();
        claimants.push(Claimant {
            weight_milli: 1000,
            floor: 0,
            ceiling: self.other,
            demand: self.other,
        });
        claimants.push(Claimant {
            weight_milli: 1000 * SEEDER_FLOWS,
            floor: 0,
            ceiling: seeder_demand,
            demand: seeder_demand,
        });
        let a = allocate::allocate(Algorithm::Priority, &claimants, self.link).shares;
        let seeder = a[a.len() - 1];
        (a[..streams.len()].to_vec(), seeder)
    }

    /// A `/Sessions` entry for what user `u` plays.
    fn session(&self, u: usize, p: &Playing) -> Session {
        let pushable = self.traces[u].client == ClientKind::Pushable;
        Session {
            id: SessionId::new(format!("{}{:032x}", self.prefix(u), u + 1)),
            user_id: Some(self.user_id(u)),
            user_name: Some(self.user_name(u)),
            remote_end_point: Some(format!("203.0.113.{}", 10 + u)),
            client: Some(
                if pushable {
                    "Jellyfin Web"
                } else {
                    "Jellyfin Android TV"
                }
                .into(),
            ),
            device_name: Some(format!("device {u}")),
            device_id: Some(DeviceId::new(format!("device-{u}"))),
            now_playing_item: Some(NowPlayingItem {
                id: Some(format!("{:016x}{:016x}", u + 1, p.item + 1)),
                name: None,
                item_type: Some("Episode".into()),
                media_streams: vec![MediaStream {
                    stream_type: Some("Video".into()),
                    bit_rate: Some(p.source as i64),
                    ..MediaStream::default()
                }],
            }),
            play_state: Some(PlayState::default()),
            transcoding_info: (p.rate < p.source).then_some(TranscodingInfo {
                bitrate: Some(p.rate as i64),
                is_video_direct: Some(p.source <= VIDEO_MIN_BPS),
                transcode_reasons: vec!["ContainerBitrateExceedsLimit".into()],
                ..TranscodingInfo::default()
            }),
            supported_commands: if pushable {
                vec![PUSH_COMMAND.to_string()]
            } else {
                Vec::new()
            },
            last_activity_date: None,
        }
    }

    fn user(&self, u: usize) -> User {
        User {
            id: self.user_id(u),
            name: Some(self.user_name(u)),
            policy: Some(json!({
                "IsAdministrator": false,
                "IsDisabled": false,
                "EnableRemoteAccess": true,
                "RemoteClientBitrateLimit": self.limits[u],
                "AuthenticationProviderId": "a",
                "PasswordResetProviderId": "b"
            })),
            // A second server's user carries its server's limit (none here).
            server_limit: self.member[u].then_some(0),
            same_as: None,
        }
    }

    /// The second Jellyfin's users' ids and names are namespaced as `src/jellyfin/fleet.rs`
    /// does it.
    fn prefix(&self, u: usize) -> &'static str {
        if self.member[u] { "den:" } else { "" }
    }

    fn user_id(&self, u: usize) -> UserId {
        UserId::new(format!("{}{:032x}", self.prefix(u), 0xa000 + u))
    }

    fn user_name(&self, u: usize) -> UserName {
        let name = &self.traces[u].name;
        UserName::new(if self.member[u] {
            format!("{name}@den")
        } else {
            name.clone()
        })
    }

    /// The first rule, kept for comparison: the active users' limits split the budget
    /// (demand: by the current rate), idle users get the fair share with one more bounded by
    /// `budget - Σ max(rate, limit)`, and streams above their new limit are pushed down.
    fn first_rule(&mut self, algorithm: Algorithm) {
        let b = self.settings.budget();
        let overhead = self.settings.bandwidth.demand.overhead;
        let hysteresis = self.settings.bandwidth.hysteresis_percent;
        let floor = b.min_per_user_bps;
        let ceiling = crate::config::MAX_JELLYFIN_LIMIT_BPS;
        let active: Vec<usize> = (0..self.playing.len())
            .filter(|u| self.playing[*u].is_some())
            .collect();
        let claimants: Vec<Claimant> = active
            .iter()
            .map(|&u| Claimant {
                weight_milli: self.weights[u],
                floor,
                ceiling,
                demand: (self.playing[u].as_ref().map_or(0, |p| p.rate) as f64 * overhead).round()
                    as u64,
            })
            .collect();
        let alloc = allocate::allocate(algorithm, &claimants, b.budget_bps);
        let mut targets: Vec<u64> = alloc
            .shares
            .iter()
            .map(|s| allocate::quantize(*s, b.step_bps, floor, ceiling))
            .collect();
        let mut total: u64 = targets.iter().sum();
        for (i, &u) in active.iter().enumerate() {
            let cur = self.limits[u].max(0) as u64;
            let new = targets[i];
            if cur >= floor
                && cur != new
                && allocate::within_hysteresis(cur, new, hysteresis)
                && (cur < new || total + (cur - new) <= b.budget_bps)
            {
                total = total + cur - new;
                targets[i] = cur;
            }
        }
        let committed: u64 = active
            .iter()
            .zip(&targets)
            .map(|(&u, t)| self.playing[u].as_ref().map_or(0, |p| p.rate).max(*t))
            .sum();
        for (i, &u) in active.iter().enumerate() {
            self.write(u, targets[i] as i64);
            if self.playing[u]
                .as_ref()
                .is_some_and(|p| p.rate > targets[i])
            {
                self.push(u, targets[i]);
            }
        }
        let headroom = b.budget_bps.saturating_sub(committed);
        for u in 0..self.playing.len() {
            if self.playing[u].is_some() {
                continue;
            }
            let mut with = claimants.clone();
            with.push(Claimant {
                weight_milli: self.weights[u],
                floor,
                ceiling,
                demand: ceiling,
            });
            let fair = *allocate::allocate(algorithm, &with, b.budget_bps)
                .shares
                .last()
                .expect("one more");
            let join =
                allocate::quantize(fair.min(headroom).max(floor), b.step_bps, floor, ceiling);
            let cur = self.limits[u].max(0) as u64;
            let keep = cur >= floor
                && allocate::within_hysteresis(cur, join, hysteresis)
                && (cur <= join || cur <= headroom);
            self.write(u, if keep { cur } else { join } as i64);
        }
    }

    /// The meter is read at `now`: the estimator gets the WAN's counter and Jellyfin's
    /// streams as the daemon estimates them (rates x overhead). Returns whether the budget
    /// changed (the daemon then re-plans).
    fn read_meter(&mut self, now: u64) -> bool {
        let overhead = self.settings.bandwidth.demand.overhead;
        let jellyfin: u64 = self
            .playing
            .iter()
            .flatten()
            .map(|p| (p.rate as f64 * overhead) as u64)
            .sum();
        let sample = crate::budget::estimate::Sample {
            at: Duration::from_millis(now),
            bytes: self.counter as u64,
            wraps_at: None,
        };
        let Some(e) = self.estimator.as_mut() else {
            return false;
        };
        let changed = e.sample(sample, jellyfin).is_some();
        self.fig.budget_changes += u64::from(changed);
        changed
    }

    /// Integrate the figures over `[from, to)`, during which nothing changes.
    fn measure(&mut self, from: u64, to: u64) {
        let dt = to.saturating_sub(from);
        if dt == 0 {
            return;
        }
        let streams: Vec<(usize, &Playing)> = self
            .playing
            .iter()
            .enumerate()
            .filter_map(|(u, p)| p.as_ref().map(|p| (u, p)))
            .collect();
        let (delivered, seeder) = self.on_the_link(&streams);
        let remote: u64 = delivered.iter().sum();
        self.counter += (remote + self.other + seeder) as f64 * dt as f64 / 1000.0 / 8.0;
        if self.seeding != Seeding::Absent {
            let wanted: u64 = streams.iter().map(|(_, p)| p.rate).sum::<u64>()
                + self.other
                + match (self.seeding, self.seeder_limit) {
                    (Seeding::Uncontrolled, _) | (_, None) => self.link,
                    (_, Some(l)) => l,
                };
            let f = &mut self.fig;
            f.seeder_sent += dt as f64 * seeder as f64;
            f.seeder_left += dt as f64 * self.budget.saturating_sub(remote) as f64;
            if wanted > self.link {
                f.link_over_ms += dt;
            }
        }
        if streams.is_empty() {
            return;
        }
        let budget = self.budget as f64;
        let total: f64 = streams.iter().map(|(_, p)| p.rate as f64).sum();
        let quiet = self.other == 0;
        let saturated = total + self.other as f64 > self.link as f64 * 1.001;
        let transcodes = streams
            .iter()
            .filter(|(_, p)| p.source > VIDEO_MIN_BPS && p.rate < p.source)
            .count();
        let f = &mut self.fig;
        f.streamed_ms += dt;
        f.play_ms += dt * streams.len() as u64;
        if f.transcodes_ms.len() <= transcodes {
            f.transcodes_ms.resize(transcodes + 1, 0);
        }
        f.transcodes_ms[transcodes] += dt;
        let sources: Vec<u64> = streams.iter().map(|(_, p)| p.source).collect();
        let fewest = fewest_transcodes(&sources, self.budget, self.floor);
        if f.fewest_transcodes_ms.len() <= fewest {
            f.fewest_transcodes_ms.resize(fewest + 1, 0);
        }
        f.fewest_transcodes_ms[fewest] += dt;
        if saturated {
            f.saturated_ms += dt;
        }
        if quiet {
            f.quiet_ms += dt;
        }
        if total > budget * 1.001 {
            f.over_ms += dt;
        }
        if total > budget * 1.05 {
            f.over5_ms += dt;
        }
        f.peak = f.peak.max(total / budget);
        f.util_integral += dt as f64 * total.min(budget) / budget;
        // The clairvoyant ideal: weighted max-min water-filling of the sources.
        let claimants: Vec<Claimant> = streams
            .iter()
            .map(|(u, p)| Claimant {
                weight_milli: self.weights[*u],
                floor: 0,
                ceiling: p.source,
                demand: p.source,
            })
            .collect();
        let ideal = allocate::allocate(Algorithm::Priority, &claimants, self.budget).shares;
        let mut sum = 0.0;
        let mut sq = 0.0;
        for (((_, _), i), got) in streams.iter().zip(&ideal).zip(&delivered) {
            let i = (*i).max(1) as f64;
            let got = *got as f64;
            f.served += dt as f64 * got.min(i);
            if quiet {
                f.quiet_served += dt as f64 * got.min(i);
            }
            f.ideal += dt as f64 * i;
            let x = got / i;
            sum += x;
            sq += x * x;
        }
        if streams.len() >= 2 {
            f.jain_integral += dt as f64 * sum * sum / (streams.len() as f64 * sq);
            f.jain_ms += dt;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The yardstick in `cargo test`: the bench's first seed, 24 simulated hours, 8 and 16
    /// users, half the clients accepting pushes and none. The targets of `BENCHMARKS.md`;
    /// Jain, met on average only with pushes, is held at the level measured so a regression
    /// shows.
    #[test]
    fn the_rule_meets_the_effectiveness_targets() {
        for users in [8, 16] {
            for clients in [Clients::HALF_PUSHABLE, Clients::NONE_PUSHABLE] {
                let traces = trace(users, 24, 0x5EED_0000 + users as u64, clients);
                let first = run(Manager::FirstRule(Algorithm::Equal), &traces, 24);
                let now = run(Manager::Daemon(Algorithm::Equal), &traces, 24);
                let pushes = clients.pushable_every > 0;
                let case = format!("{users} users, pushes {pushes}: {now:?}");
                assert!(
                    now.over_percent() <= if pushes { 1.0 } else { 3.0 },
                    "over budget: {case}"
                );
                assert!(now.served_percent() >= 70.0, "served: {case}");
                assert!(
                    now.served_percent() >= 1.6 * first.served_percent(),
                    "served against the first rule's {first:?}: {case}"
                );
                assert!(now.pushes_per_start() <= 1.2, "pushes: {case}");
                assert!(
                    now.writes_per_hour() <= 2.0 * first.writes_per_hour(),
                    "writes against the first rule's {first:?}: {case}"
                );
                assert!(
                    now.jain() >= if pushes { 0.94 } else { 0.9 },
                    "fairness: {case}"
                );
            }
        }
    }

    /// A quarter of the users on a second Jellyfin, whose starts and stops the daemon sees
    /// at its next read of that server (no webhook): served and over budget as with one server
    /// (the targets of `BENCHMARKS.md`), on the bench's first seed.
    #[test]
    fn a_second_jellyfin_is_served_as_one_server() {
        for users in [8, 16] {
            for clients in [Clients::HALF_PUSHABLE, Clients::NONE_PUSHABLE] {
                let traces = trace(users, 24, 0x5EED_0000 + users as u64, clients);
                let one = run(Manager::Daemon(Algorithm::Equal), &traces, 24);
                let on_member: Vec<bool> = (0..users).map(|u| u % 4 == 3).collect();
                let two = run_beside_second_jellyfin(Algorithm::Equal, &traces, 24, &on_member);
                let pushes = clients.pushable_every > 0;
                let case = format!("{users} users, pushes {pushes}: {two:?} against {one:?}");
                assert!(
                    two.served_percent() >= one.served_percent() - 1.0,
                    "served: {case}"
                );
                assert!(
                    two.over_percent() <= one.over_percent() + 0.25
                        && two.over_percent() <= if pushes { 1.0 } else { 3.0 },
                    "over budget: {case}"
                );
            }
        }
    }

    #[test]
    fn the_model_is_jellyfins() {
        // One user, a 70 Mbps item, a pushable client, no manager: the source plays.
        let t = vec![UserTrace {
            name: "solo".into(),
            client: ClientKind::Pushable,
            items: vec![Item {
                start: 0,
                end: 3600,
                source: 70 * M,
            }],
        }];
        let f = run(Manager::None, &t, 1);
        assert_eq!(f.streamed_ms, 3_600_000);
        assert_eq!(f.over_ms, 0);
        assert!((f.served_percent() - 100.0).abs() < 1e-9);
        // Two at once over a 90 Mbps budget without a manager: over the whole time.
        let mut two = t.clone();
        two.push(UserTrace {
            name: "duo".into(),
            ..t[0].clone()
        });
        let f = run(Manager::None, &two, 1);
        assert_eq!(f.over_ms, f.streamed_ms);
        // With jellydemon both start at once on the idle link and are pushed to 45 each half a
        // second later.
        let f = run(Manager::Daemon(Algorithm::Equal), &two, 1);
        assert!(f.over_percent() < 1.0, "{f:?}");
        assert!(f.served_percent() > 90.0, "{f:?}");
    }

    /// A stream below its source transcodes; beyond the capacity the transcodes share the
    /// server and their viewers wait.
    #[test]
    fn transcodes_beyond_the_capacity_stall_their_viewers() {
        let f = Figures {
            play_ms: 3000,
            transcodes_ms: vec![0, 1000, 1000],
            ..Figures::default()
        };
        assert!((f.transcoded_percent() - 100.0).abs() < 1e-9);
        assert!((f.stall_percent(1) - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(f.stall_percent(2), 0.0);
        // Two 70 Mbps remuxes over a 90 Mbps budget: no manager, both play the source.
        let one = |name: &str| UserTrace {
            name: name.into(),
            client: ClientKind::Pushable,
            items: vec![Item {
                start: 0,
                end: 3600,
                source: 70 * M,
            }],
        };
        let two = vec![one("a"), one("b")];
        let f = run(Manager::None, &two, 1);
        assert_eq!(f.play_ms, 2 * 3_600_000);
        assert_eq!(f.transcoded_percent(), 0.0);
        // jellydemon pushes both to 45 Mbps: two transcodes, half the time waiting on a
        // server that runs one.
        let f = run(Manager::Daemon(Algorithm::Equal), &two, 1);
        assert!(f.transcoded_percent() > 99.0, "{f:?}");
        assert!((f.stall_percent(1) - 50.0).abs() < 1.0, "{f:?}");
        assert!(f.stall_percent(2) < 1e-9, "{f:?}");
    }

    /// The bound keeps the smallest videos direct beside the others' floors: what no manager
    /// within the budget goes below, and what the two remuxes above cannot avoid.
    #[test]
    fn the_fewest_transcodes_keep_the_smallest_videos_direct() {
        // 90 Mbps, floor 2: audio plays at its source; 10 + 40 direct beside the remux's
        // floor (52.32), the remux cannot be added.
        let sources = [320_000, 10 * M, 40 * M, 70 * M];
        assert_eq!(fewest_transcodes(&sources, 90 * M, 2 * M), 1);
        // Everything fits: nothing needs a transcode.
        assert_eq!(fewest_transcodes(&[10 * M, 40 * M], 90 * M, 2 * M), 0);
        // The floors alone fill it: every video transcodes.
        assert_eq!(fewest_transcodes(&[10 * M; 3], 6 * M, 2 * M), 3);
        // Two 70 Mbps remuxes over 90: one must transcode, so a server that runs one never
        // stalls, while jellydemon (without a capacity) splits the link and stalls half.
        let one = |name: &str| UserTrace {
            name: name.into(),
            client: ClientKind::Pushable,
            items: vec![Item {
                start: 0,
                end: 3600,
                source: 70 * M,
            }],
        };
        let f = run(Manager::Daemon(Algorithm::Equal), &[one("a"), one("b")], 1);
        assert_eq!(f.fewest_transcodes_ms, vec![0, 3_600_000]);
        assert_eq!(f.least_stall_percent(1), 0.0);
        assert!(f.stall_percent(1) > 49.0, "{f:?}");
        // Told the capacity, it keeps one remux direct and reaches the bound.
        let told = run_capacity(
            Manager::Daemon(Algorithm::Equal),
            &[one("a"), one("b")],
            1,
            1,
        );
        assert_eq!(told.stall_percent(1), 0.0, "{told:?}");
    }

    /// The history bench's rows are the daemon's: one play per item that started, every push
    /// counted against a play, a sample at least every five minutes and a poll, all timed from
    /// the start.
    #[test]
    fn a_recorded_run_keeps_what_the_daemon_would() {
        use crate::history::{Record, SAMPLE_AT_LEAST};
        let traces = trace(8, 6, 0x5EED_0008, Clients::HALF_PUSHABLE);
        let start_ms = 1_793_491_200_000;
        let (fig, rows) = run_recorded(Algorithm::Equal, &traces, 6, start_ms);
        let mut plays: HashMap<String, &crate::history::plays::Play> = HashMap::new();
        let mut samples = Vec::new();
        for r in &rows {
            match r {
                Record::Play(p) => {
                    plays.insert(p.key.clone(), p);
                }
                Record::Sample(s) => samples.push(s.t_ms),
                Record::Decision(d) => assert!(d.t_ms >= start_ms),
                Record::Action(_) => panic!("nobody acted"),
            }
        }
        let started = traces
            .iter()
            .flat_map(|t| &t.items)
            .filter(|i| i.start < 6 * 3600)
            .count();
        // An item shorter than one plan's reaction is never seen by a plan.
        assert!(
            plays.len() <= started && plays.len() >= started * 9 / 10,
            "{} of {started}",
            plays.len()
        );
        assert!(plays.values().all(|p| p.remote && p.start_ms >= start_ms));
        let pushes: u64 = plays.values().map(|p| u64::from(p.pushes)).sum();
        assert_eq!(pushes, fig.pushes);
        // A quiet link is sampled at the first plan after five minutes: the poll's.
        let poll = settings(Algorithm::Equal).daemon.poll_interval();
        let gap = samples.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(gap <= (SAMPLE_AT_LEAST + poll).as_millis() as u64, "{gap}");
    }

    #[test]
    fn traces_are_reproducible() {
        let a = trace(8, 6, 7, Clients::HALF_PUSHABLE);
        let b = trace(8, 6, 7, Clients::HALF_PUSHABLE);
        assert_eq!(
            a.iter().map(|u| u.items.clone()).collect::<Vec<_>>(),
            b.iter().map(|u| u.items.clone()).collect::<Vec<_>>()
        );
        assert_eq!(a[0].client, ClientKind::Pushable);
        assert_eq!(a[1].client, ClientKind::Fixed);
    }
}

#[cfg(test)]
mod household_tests {
    use super::*;

    /// The meter against the static budget on the bench's first seed, a household uploading
    /// beside the remote streams (`household`): the link is full far less often, and what
    /// the remote streams get while the house is quiet hardly changes. The targets of
    /// `BENCHMARKS.md`: a tenth of the static budget's saturation with pushes; without
    /// pushes, streams locked at their start rate keep the link full until their item ends, so
    /// the bound is a fifth (measured: 0 % and 14 %).
    #[test]
    fn the_meter_keeps_the_link_from_filling() {
        for users in [8, 16] {
            for clients in [Clients::HALF_PUSHABLE, Clients::NONE_PUSHABLE] {
                let seed = 0x5EED_0000 + users as u64;
                let traces = trace(users, 24, seed, clients);
                let loads = household(24, seed);
                let daemon = Manager::Daemon(Algorithm::Equal);
                let fixed = run_household(daemon, &traces, 24, &loads, false);
                let metered = run_household(daemon, &traces, 24, &loads, true);
                let pushes = clients.pushable_every > 0;
                let case = format!("{users} users, pushes {pushes}: {fixed:?} {metered:?}");
                assert!(fixed.saturated_ms > 0, "the house fills the link: {case}");
                let bound = if pushes { 0.1 } else { 0.2 };
                assert!(
                    (metered.saturated_ms as f64) <= bound * fixed.saturated_ms as f64,
                    "saturation: {case}"
                );
                let loss = 1.0 - metered.quiet_served / fixed.quiet_served;
                assert!(loss <= 0.10, "quiet loss {loss}: {case}");
            }
        }
    }

    #[test]
    fn households_are_reproducible_and_inside_the_horizon() {
        let a = household(48, 3);
        assert_eq!(a, household(48, 3));
        assert_eq!(
            a.iter().filter(|l| l.bps == 30 * M).count(),
            2,
            "a backup a day"
        );
        assert!(a.iter().all(|l| l.start < l.end && l.end <= 48 * 3600));
    }
}

#[cfg(test)]
mod seeder_tests {
    use super::*;

    /// The targets of `BENCHMARKS.md` for a greedy seeder on the link, on the bench's first
    /// seed: with `priority = "streams"` the remote streams are served at least 95 % of what
    /// they get with no seeder at all, the seeder sends at least 90 % of what the streams
    /// leave, and the link is asked for more than its capacity at most 1 % of the time.
    /// Uncontrolled (today), the seeder fills the link and the streams lose a third or more.
    #[test]
    fn a_seeder_gets_what_the_streams_leave() {
        for users in [8, 16] {
            for clients in [Clients::HALF_PUSHABLE, Clients::NONE_PUSHABLE] {
                let traces = trace(users, 24, 0x5EED_0000 + users as u64, clients);
                let m = Manager::Daemon(Algorithm::Equal);
                let alone = run_seeded(m, &traces, 24, Seeding::Absent);
                let today = run_seeded(m, &traces, 24, Seeding::Uncontrolled);
                let streams = run_seeded(m, &traces, 24, Seeding::Streams);
                let case = format!("{users} users, {clients:?}: {streams:?}");
                assert!(streams.served >= 0.95 * alone.served, "served: {case}");
                assert!(streams.seeder_percent() >= 90.0, "seeder: {case}");
                assert!(streams.link_over_percent() <= 1.0, "over: {case}");
                assert!(today.served <= 0.8 * alone.served, "today: {today:?}");
                assert!(today.link_over_percent() >= 99.0, "today: {today:?}");
                // Shared, the seeder is one claimant: it gets more, the streams less.
                let share = run_seeded(m, &traces, 24, Seeding::Share);
                assert!(share.seeder_sent > streams.seeder_sent, "share: {share:?}");
                assert!(share.served >= 0.6 * alone.served, "share: {share:?}");
            }
        }
    }
}
