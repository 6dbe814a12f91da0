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
//! stops, and the daemon's passes when the schedule of the engine's own core
//! (`Core`, `src/daemon/engine/logic.rs`) has them (one debounce after a start or stop, the
//! poll an interval after each pass, a plan's wake-up), each acting a read and a write later.
//! The daemon's manager is that core: each webhook, the meter's budget, each pass's read of
//! the simulated servers goes to it, and its effects (writes and pushes, reported back as the
//! writer does; the torrent client's limit, at once on a remote start too; Plex's total; the
//! history's rows) are applied to the simulated world. The trace, the figures and the
//! simulated world are in `src/sim/effectiveness/`. The figures are integrated over time
//! between events, not sampled.
//!
//! `benches/effectiveness.rs` runs the grid (seeds, sizes, push-honouring clients) and prints
//! the tables of `BENCHMARKS.md`; a test runs one seed and asserts the targets.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::adapters::ledger::{Ledger, LedgerHandle};
use crate::config::{Algorithm, Settings};
use crate::core::allocate;
use crate::core::plan::Memory;
use crate::daemon::engine::logic::Core;

mod figures;
mod trace;
mod world;

pub use figures::{Figures, Manager, VIDEO_MIN_BPS, fewest_transcodes};
pub use trace::{ClientKind, Clients, Item, Load, UserTrace, household, trace};

use world::{Recording, World};

const M: u64 = 1_000_000;

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

/// How long a pass takes from its start to its writes: a read of Jellyfin, a write.
const READ_AND_WRITE_MS: u64 = 200;

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
    /// The daemon's [`Schedule`] says a pass is due: it begins (reads Jellyfin).
    Wake,
    /// The pass's read and writes have taken their time: it plans and writes.
    Plan,
    /// `Manager::Poll30`'s fixed poll.
    Poll,
    /// The daemon reads the second Jellyfin's `/Sessions` (`src/daemon/members.rs`).
    MemberPoll,
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
/// Plex is one claimant whose share becomes its total (`src/core/plan/servers.rs`), and a stream
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
/// server on the same link (`[[server]] kind = "jellyfin"`, `src/adapters/jellyfin/fleet.rs`): their
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
/// budget follows a meter read every 5 s (the estimator of `src/adapters/budget/estimate.rs`, with
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
/// the daemon would have written ([`crate::adapters::history::Recorder`] fed every plan, the pushes and,
/// at the end, the plays still open), timed from `start_ms` (unix milliseconds).
pub fn run_recorded(
    algorithm: Algorithm,
    traces: &[UserTrace],
    hours: u64,
    start_ms: u64,
) -> (Figures, Vec<crate::adapters::history::Record>) {
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
) -> (Figures, Option<Vec<crate::adapters::history::Record>>) {
    let Setup { loads, seeding, .. } = setup;
    let mut w = world(manager, traces, hours, &setup);
    // The daemon plans when its schedule says (one debounce after an event, the poll, a
    // plan's wake-up), then takes a read and a write to act.
    let mut driver = Driver {
        wake_at: None,
        in_pass: false,
        on: matches!(manager, Manager::Daemon(_) | Manager::FirstRule(_)),
    };
    let poll = w.settings.daemon.poll_interval();
    let horizon = hours * 3600 * 1000;
    let mut events = fixed_events(traces, loads, horizon, manager, &w);
    // A start or stop on the second Jellyfin that its next read has not seen yet.
    let mut member_changed = false;
    driver.arm(&w.core, &mut events);
    let mut clock = 0;
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
                if w.read_meter(t) {
                    let budget = w.budget_state();
                    w.core.on_budget(&budget, Duration::from_millis(t));
                    driver.arm(&w.core, &mut events);
                }
                continue;
            }
            Event::MemberPoll => {
                if std::mem::take(&mut member_changed) {
                    w.core.on_server_changed(Duration::from_millis(t));
                    driver.arm(&w.core, &mut events);
                }
                continue;
            }
            Event::Wake => {
                if driver.wake_at == Some(t) {
                    driver.wake_at = None;
                    let budget = w.budget_state();
                    w.core.begin(Duration::from_millis(t), false, &budget);
                    driver.in_pass = true;
                    events.insert((t + READ_AND_WRITE_MS, Event::Plan), ());
                }
                continue;
            }
            Event::Plan => {
                let asked = w.manage(manager, t).map(Duration::from_millis);
                w.core.end(Duration::from_millis(t), poll, asked);
                driver.in_pass = false;
                driver.arm(&w.core, &mut events);
                continue;
            }
            Event::Poll => {
                w.manage(manager, t);
                continue;
            }
        }
        if on_member {
            // No webhook: seen at the next read of that server.
            member_changed = true;
        } else {
            let ev = match ev {
                Event::Start(u, _) => w.hook(u, true),
                Event::Stop(u) => w.hook(u, false),
                _ => unreachable!("only starts and stops get here"),
            };
            w.core.on_hook(&ev, Duration::from_millis(t));
            driver.arm(&w.core, &mut events);
        }
    }
    w.measure(clock, horizon);
    w.fig.horizon_ms = horizon;
    let open = w.core.open_plays();
    let rows = w.history.map(|mut h| {
        h.rows.extend(open);
        h.rows
    });
    (w.fig, rows)
}

/// The simulated world a run starts from: the settings of `manager`'s algorithm, every user
/// idle with no limit, the meter's estimator when the budget follows one.
fn world<'a>(manager: Manager, traces: &'a [UserTrace], hours: u64, setup: &Setup) -> World<'a> {
    let algorithm = match manager {
        Manager::FirstRule(a) | Manager::Daemon(a) => a,
        _ => Algorithm::Equal,
    };
    let settings = std::sync::Arc::new(settings_for(algorithm, setup.seeding, setup.capacity));
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
    let n = traces.len();
    let mut w = World {
        traces,
        settings: settings.clone(),
        budget,
        floor,
        limits: vec![0; n],
        client_max: vec![None; n],
        playing: vec![None; n],
        ledger: LedgerHandle::new(Ledger::in_memory()),
        core: Core::new(settings.clone(), Memory::default(), Duration::ZERO),
        weights,
        fig: Figures {
            hours,
            ..Figures::default()
        },
        link: 0,
        other: 0,
        counter: 0.0,
        estimator: None,
        seeding: setup.seeding,
        seeder_limit: None,
        plex: (0..n)
            .map(|u| setup.plex.get(u).copied().unwrap_or(false))
            .collect(),
        member: (0..n)
            .map(|u| setup.member.get(u).copied().unwrap_or(false))
            .collect(),
        // No limit in Plex until the first plan.
        plex_wan: setup.plex_managed.then_some(u64::MAX),
        history: setup.record_from_ms.map(|start_ms| Recording {
            start_ms,
            rows: Vec::new(),
        }),
    };
    w.link = crate::config::mbps_to_bps(w.settings.bandwidth.total_upload_mbps);
    if setup.meter {
        let m = crate::config::Settings::from_toml_str(
            "[jellyfin]\nurl = \"http://h\"\napi_key = \"k\"\n[bandwidth]\ntotal_upload_mbps = 1\n\
             [bandwidth.meter]\nkind = \"interface\"\ninterface = \"wan\"\n",
        )
        .expect("valid")
        .bandwidth
        .meter
        .expect("a meter");
        let b = &w.settings.bandwidth;
        w.estimator = Some(crate::adapters::budget::estimate::Estimator::new(
            crate::adapters::budget::estimate::Params::new(
                &m,
                b.total_upload_mbps,
                b.reserved_mbps,
            ),
        ));
    }
    w
}

/// The events known from the start: the items' starts and stops, the house's loads, and the
/// reads on a fixed period (the second Jellyfin's, the meter's, the 30-second poll).
fn fixed_events(
    traces: &[UserTrace],
    loads: &[Load],
    horizon: u64,
    manager: Manager,
    w: &World,
) -> BTreeMap<(u64, Event), ()> {
    let mut events: BTreeMap<(u64, Event), ()> = BTreeMap::new();
    let mut every = |period: u64, ev: Event| {
        let mut t = 0;
        while t < horizon {
            events.insert((t, ev), ());
            t += period;
        }
    };
    if w.member.iter().any(|&m| m) && matches!(manager, Manager::Daemon(_)) {
        every(MEMBER_INTERVAL_MS, Event::MemberPoll);
    }
    if w.estimator.is_some() {
        every(METER_INTERVAL_MS, Event::Meter);
    }
    if manager == Manager::Poll30 {
        every(30_000, Event::Poll);
    }
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
    events
}

/// The daemon's engine core's schedule (`src/daemon/schedule.rs`) on the simulation's
/// event queue.
struct Driver {
    /// The time of the Wake event in the queue (a later change of the schedule leaves an
    /// earlier one stale).
    wake_at: Option<u64>,
    /// A pass is under way (the engine runs one at a time; what arrives meanwhile waits).
    in_pass: bool,
    /// The manager plans on the daemon's schedule.
    on: bool,
}

impl Driver {
    /// Put a Wake in the queue for the schedule's next pass.
    fn arm(&mut self, core: &Core, events: &mut BTreeMap<(u64, Event), ()>) {
        if !self.on || self.in_pass {
            return;
        }
        let next = core.next(None).as_millis() as u64;
        if self.wake_at != Some(next) {
            self.wake_at = Some(next);
            events.insert((next, Event::Wake), ());
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod household_tests;

#[cfg(test)]
mod seeder_tests;
