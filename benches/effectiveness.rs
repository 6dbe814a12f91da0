//! Effectiveness: how well is the link shared? The yardstick of the rule that sets limits.
//!
//! Runs `jellydemon::sim` (the real planner, memory and ledger against Jellyfin's rate model,
//! in simulated time) over a grid: seeds, 8 and 16 remote users, half the clients accepting
//! pushes and none, for every manager, and prints the tables of `BENCHMARKS.md`: the mean over
//! the seeds and the worst seed of each figure.
//!
//! Then the household table: the same traces beside the house's own upload
//! (`sim::household`: a daily 30 Mbps backup, video calls, photo uploads) on the 100 Mbps
//! link, jellydemon with the static budget against jellydemon following a meter.
//!
//! And the transcode table: the play time jellydemon's limits put into video transcodes, and
//! the stalls on a server that transcodes 1 or 2 videos in real time, with jellydemon not
//! told the capacity and told it (`[transcoding] capacity`), beside the least any manager within
//! the budget could stall on the same traces.
//!
//! And the no-push table: what jellydemon serves when no client can be pushed, beside the most
//! any manager whose streams keep their first rate could serve knowing every item in advance
//! (`sim::locked`).
//!
//! And the two-server table: a quarter of the users watching on a Plex server on the same
//! link (`sim::run_beside_plex`), its streams taken off the budget first or Plex managed as
//! one claimant whose share becomes its total, or on a second Jellyfin
//! (`sim::run_beside_second_jellyfin`), against all of them on Jellyfin.
//!
//! Run: `cargo bench --bench effectiveness` (about a minute). `JD_SIM_HOURS` (default 24) and
//! `JD_SIM_SEEDS` (default 5) change the grid; `JD_SIM_TRANSCODES_ONLY=1` prints the no-push
//! and transcode tables alone, `JD_SIM_PLEX_ONLY=1` the two-server table alone.

use jellydemon::config::Algorithm;
use jellydemon::sim::effectiveness::{self as sim, Clients, Figures, Manager, Seeding};
use jellydemon::sim::locked::locked_bound;

/// The seeder table: a greedy torrent client on the same link, not controlled (today) and
/// managed as a `[[downloader]]` with each priority, against the same traces with no seeder.
fn seeder(hours: u64, seeds: u64) {
    println!(
        "\nbeside a greedy seeder on the link (jellydemon equal): mean (worst seed) over {seeds} seeds of {hours} h"
    );
    println!(
        "| users | clients | seeder | streams served / with no seeder | seeder sent / what the streams leave | link over capacity |"
    );
    println!("|---:|---|---|---:|---:|---:|");
    for users in [8usize, 16] {
        for (clients, label) in CLIENTS {
            let traces = traces(users, hours, seeds, clients);
            let m = Manager::Daemon(Algorithm::Equal);
            let alone: Vec<Figures> = traces
                .iter()
                .map(|t| sim::run_seeded(m, t, hours, Seeding::Absent))
                .collect();
            for seeding in [Seeding::Uncontrolled, Seeding::Streams, Seeding::Share] {
                let figs: Vec<Figures> = traces
                    .iter()
                    .map(|t| sim::run_seeded(m, t, hours, seeding))
                    .collect();
                let ratio: Vec<f64> = figs
                    .iter()
                    .zip(&alone)
                    .map(|(f, a)| 100.0 * f.served / a.served.max(1.0))
                    .collect();
                let mean = ratio.iter().sum::<f64>() / ratio.len() as f64;
                let worst = ratio.iter().copied().fold(f64::INFINITY, f64::min);
                let sent = stat(&figs, Figures::seeder_percent, true);
                let over = stat(&figs, Figures::link_over_percent, false);
                println!(
                    "| {users} | {label} | {seeding} | {mean:.1} % ({worst:.1}) | {:.1} % ({:.1}) | {:.2} % ({:.2}) |",
                    sent.0, sent.1, over.0, over.1
                );
            }
        }
    }
}

/// The household table: link saturation, service, and what the meter costs when the house is
/// quiet, static budget against the meter.
fn household(hours: u64, seeds: u64) {
    println!(
        "\nbeside the house's own upload (jellydemon equal): mean (worst seed) over {seeds} seeds of {hours} h"
    );
    println!(
        "| users | clients | budget | link full | served / ideal | served while the house is quiet | budget changes / hour | writes / hour |"
    );
    println!("|---:|---|---|---:|---:|---:|---:|---:|");
    for users in [8usize, 16] {
        for (clients, label) in CLIENTS {
            let runs: Vec<(Figures, Figures)> = (0..seeds)
                .map(|s| {
                    let seed = 0x5EED_0000 + 97 * s + users as u64;
                    let traces = sim::trace(users, hours, seed, clients);
                    let loads = sim::household(hours, seed);
                    let m = Manager::Daemon(Algorithm::Equal);
                    (
                        sim::run_household(m, &traces, hours, &loads, false),
                        sim::run_household(m, &traces, hours, &loads, true),
                    )
                })
                .collect();
            for (name, pick) in [("static", 0usize), ("meter", 1)] {
                let figs: Vec<Figures> = runs
                    .iter()
                    .map(|r| if pick == 0 { r.0.clone() } else { r.1.clone() })
                    .collect();
                let sat = stat(&figs, Figures::saturated_percent, false);
                let served = stat(&figs, Figures::served_percent, true);
                // Quiet service relative to the static budget's (100 % for the static row).
                let quiet: Vec<f64> = runs
                    .iter()
                    .zip(&figs)
                    .map(|((s, _), f)| 100.0 * f.quiet_served / s.quiet_served.max(1.0))
                    .collect();
                let quiet_mean = quiet.iter().sum::<f64>() / quiet.len() as f64;
                let quiet_worst = quiet.iter().copied().fold(f64::INFINITY, f64::min);
                let changes = stat(&figs, |f| f.budget_changes as f64 / hours as f64, false);
                let writes = stat(&figs, Figures::writes_per_hour, false);
                println!(
                    "| {users} | {label} | {name} | {:.2} % ({:.2}) | {:.1} % ({:.1}) | {:.1} % ({:.1}) | {:.1} ({:.1}) | {:.0} ({:.0}) |",
                    sat.0,
                    sat.1,
                    served.0,
                    served.1,
                    quiet_mean,
                    quiet_worst,
                    changes.0,
                    changes.1,
                    writes.0,
                    writes.1
                );
            }
        }
    }
}

/// The transcode table: how much play time jellydemon's limits put into video transcodes,
/// and how long the viewers stall on a server that runs 1 or 2 in real time
/// (`Figures::stall_percent`), with jellydemon not told the capacity and told it
/// (`[transcoding] capacity`). One run without it serves both capacities.
fn transcodes(hours: u64, seeds: u64) {
    println!(
        "\nvideo transcodes and the stalls beyond the server's capacity: mean (worst seed) over {seeds} seeds of {hours} h"
    );
    println!(
        "| users | clients | server runs | manager | play time transcoded | stalled | least possible | served / ideal | Jain | over budget |"
    );
    println!("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|");
    for users in [8usize, 16] {
        for (clients, label) in CLIENTS {
            let traces = traces(users, hours, seeds, clients);
            let equal = Manager::Daemon(Algorithm::Equal);
            // `demand` sets the same rates as `equal` on these traces (only its writes differ).
            let none: Vec<Figures> = traces
                .iter()
                .map(|t| sim::run(Manager::None, t, hours))
                .collect();
            let untold: Vec<Figures> = traces.iter().map(|t| sim::run(equal, t, hours)).collect();
            for capacity in [1u32, 2] {
                let told: Vec<Figures> = traces
                    .iter()
                    .map(|t| sim::run_capacity(equal, t, hours, capacity))
                    .collect();
                for (manager, figs) in [
                    ("none".to_string(), &none),
                    (format!("{equal}"), &untold),
                    (format!("{equal}, capacity {capacity}"), &told),
                ] {
                    let tr = stat(figs, Figures::transcoded_percent, false);
                    let st = stat(figs, |f| f.stall_percent(capacity), false);
                    // The trace's own bound, the same for every manager.
                    let least = stat(figs, |f| f.least_stall_percent(capacity), false);
                    let served = stat(figs, Figures::served_percent, true);
                    let jain = stat(figs, Figures::jain, true);
                    let over = stat(figs, Figures::over_percent, false);
                    println!(
                        "| {users} | {label} | {capacity} | {manager} | {:.1} % ({:.1}) | {:.1} % ({:.1}) | {:.1} % ({:.1}) | {:.1} % ({:.1}) | {:.3} ({:.3}) | {:.3} % ({:.3}) |",
                        tr.0,
                        tr.1,
                        st.0,
                        st.1,
                        least.0,
                        least.1,
                        served.0,
                        served.1,
                        jain.0,
                        jain.1,
                        over.0,
                        over.1
                    );
                }
            }
        }
    }
}

/// The no-push table: what jellydemon serves when no client can be pushed, beside the most any
/// manager whose streams keep their first rate could serve on the same traces, knowing every
/// item in advance (`sim::locked`).
fn locked(hours: u64, seeds: u64) {
    println!(
        "\nno client accepts pushes: jellydemon against the most a manager could serve with every stream keeping its first rate, mean (worst seed) over {seeds} seeds of {hours} h"
    );
    println!(
        "| users | jellydemon equal: served / ideal | Jain | over budget | first rates chosen knowing every item: served / ideal | their Jain |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for users in [8usize, 16] {
        let traces = traces(users, hours, seeds, Clients::NONE_PUSHABLE);
        let figs: Vec<Figures> = traces
            .iter()
            .map(|t| sim::run(Manager::Daemon(Algorithm::Equal), t, hours))
            .collect();
        let settings = sim::settings(Algorithm::Equal);
        let b = settings.budget();
        let bounds: Vec<_> = traces
            .iter()
            .map(|t| {
                locked_bound(t, hours, b.budget_bps, b.min_per_user_bps)
                    .expect("the floors fit the budget")
            })
            .collect();
        let bound_served = stat(&bounds, |b| b.served_percent, true);
        let bound_jain = stat(&bounds, |b| b.jain, true);
        let served = stat(&figs, Figures::served_percent, true);
        let jain = stat(&figs, Figures::jain, true);
        let over = stat(&figs, Figures::over_percent, false);
        println!(
            "| {users} | {:.1} % ({:.1}) | {:.3} ({:.3}) | {:.2} % ({:.2}) | {:.1} % ({:.1}) | {:.3} ({:.3}) |",
            served.0,
            served.1,
            jain.0,
            jain.1,
            over.0,
            over.1,
            bound_served.0,
            bound_served.1,
            bound_jain.0,
            bound_jain.1
        );
    }
}

/// The two client mixes of the side tables, with their short labels.
const CLIENTS: [(Clients, &str); 2] = [
    (Clients::HALF_PUSHABLE, "half push"),
    (Clients::NONE_PUSHABLE, "none push"),
];

/// One trace per seed for `users` users (the seeds of every table).
fn traces(users: usize, hours: u64, seeds: u64, clients: Clients) -> Vec<Vec<sim::UserTrace>> {
    (0..seeds)
        .map(|s| sim::trace(users, hours, 0x5EED_0000 + 97 * s + users as u64, clients))
        .collect()
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The two-server table: every fourth user watches on Plex, which has no per-user limit:
/// read-only (jellydemon takes what it streams outside the house off the budget first) and
/// managed (Plex is one claimant whose share becomes its total), or on a second Jellyfin
/// (its users managed, its events seen at its next read), against the same traces with
/// every user on Jellyfin.
fn plex(hours: u64, seeds: u64) {
    println!(
        "\na quarter of the users on a Plex server on the same link, mean (worst seed) over {seeds} seeds of {hours} h"
    );
    println!("| users | clients | where they watch | served / ideal | Jain | over budget |");
    println!("|---:|---|---|---:|---:|---:|");
    for users in [8usize, 16] {
        for (clients, label) in CLIENTS {
            let traces = traces(users, hours, seeds, clients);
            let on_plex: Vec<bool> = (0..users).map(|u| u % 4 == 3).collect();
            let rows: [(&str, Vec<Figures>); 4] = [
                (
                    "all on Jellyfin",
                    traces
                        .iter()
                        .map(|t| sim::run(Manager::Daemon(Algorithm::Equal), t, hours))
                        .collect(),
                ),
                (
                    "a quarter on Plex",
                    traces
                        .iter()
                        .map(|t| sim::run_beside_plex(Algorithm::Equal, t, hours, &on_plex, false))
                        .collect(),
                ),
                (
                    "a quarter on Plex, its total managed",
                    traces
                        .iter()
                        .map(|t| sim::run_beside_plex(Algorithm::Equal, t, hours, &on_plex, true))
                        .collect(),
                ),
                (
                    "a quarter on a second Jellyfin",
                    traces
                        .iter()
                        .map(|t| {
                            sim::run_beside_second_jellyfin(Algorithm::Equal, t, hours, &on_plex)
                        })
                        .collect(),
                ),
            ];
            for (place, figs) in rows {
                let served = stat(&figs, Figures::served_percent, true);
                let jain = stat(&figs, Figures::jain, true);
                let over = stat(&figs, Figures::over_percent, false);
                println!(
                    "| {users} | {label} | {place} | {:.1} % ({:.1}) | {:.3} ({:.3}) | {:.2} % ({:.2}) |",
                    served.0, served.1, jain.0, jain.1, over.0, over.1
                );
            }
        }
    }
}

/// Mean and worst of one figure over the seeds.
fn stat<T>(figs: &[T], f: impl Fn(&T) -> f64, higher_is_better: bool) -> (f64, f64) {
    let values: Vec<f64> = figs.iter().map(f).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let worst = if higher_is_better {
        values.iter().copied().fold(f64::INFINITY, f64::min)
    } else {
        values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    };
    (mean, worst)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench --bench effectiveness`");
        return;
    }
    let hours = env("JD_SIM_HOURS", 24);
    let seeds = env("JD_SIM_SEEDS", 5);
    if std::env::var_os("JD_SIM_PLEX_ONLY").is_some() {
        plex(hours, seeds);
        return;
    }
    locked(hours, seeds);
    transcodes(hours, seeds);
    if std::env::var_os("JD_SIM_TRANSCODES_ONLY").is_some() {
        return;
    }
    household(hours, seeds);
    seeder(hours, seeds);
    plex(hours, seeds);
    let managers = [
        Manager::None,
        Manager::Poll30,
        Manager::FirstRule(Algorithm::Equal),
        Manager::Daemon(Algorithm::Equal),
        Manager::Daemon(Algorithm::Priority),
        Manager::Daemon(Algorithm::Demand),
    ];
    for users in [8usize, 16] {
        for (clients, label) in [
            (Clients::HALF_PUSHABLE, "half the clients accept pushes"),
            (Clients::NONE_PUSHABLE, "no client accepts pushes"),
        ] {
            let traces = traces(users, hours, seeds, clients);
            let items: usize = traces
                .iter()
                .map(|t| t.iter().map(|u| u.items.len()).sum::<usize>())
                .sum();
            println!(
                "\n{users} remote users, {label}: {seeds} seeds of {hours} h, {items} items in all; \
                 mean (worst seed)"
            );
            println!(
                "| manager | over budget | > 5 % over | served / ideal | Jain | pushes / item start | writes / hour | utilization |"
            );
            println!("|---|---:|---:|---:|---:|---:|---:|---:|");
            for m in managers {
                let figs: Vec<Figures> = traces.iter().map(|t| sim::run(m, t, hours)).collect();
                let over = stat(&figs, Figures::over_percent, false);
                let over5 = stat(&figs, Figures::over5_percent, false);
                let served = stat(&figs, Figures::served_percent, true);
                let jain = stat(&figs, Figures::jain, true);
                let pushes = stat(&figs, Figures::pushes_per_start, false);
                let writes = stat(&figs, Figures::writes_per_hour, false);
                let util = stat(&figs, Figures::utilization_percent, true);
                println!(
                    "| {m} | {:.2} % ({:.2}) | {:.2} % ({:.2}) | {:.1} % ({:.1}) | {:.3} ({:.3}) | {:.2} ({:.2}) | {:.0} ({:.0}) | {:.0} % ({:.0}) |",
                    over.0,
                    over.1,
                    over5.0,
                    over5.1,
                    served.0,
                    served.1,
                    jain.0,
                    jain.1,
                    pushes.0,
                    pushes.1,
                    writes.0,
                    writes.1,
                    util.0,
                    util.1
                );
            }
        }
    }
}
