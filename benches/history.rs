//! History: what the effectiveness trace costs in the database (`src/adapters/history.rs`).
//!
//! For 8 and 16 remote users, 30 simulated days (one seed of the effectiveness trace per
//! day, jellydemon equal on the 100 Mbps link) go through the real `Recorder` into a fresh
//! database, written in batches of `history::BATCH` rows as the writer thread does. Prints:
//! rows and bytes per day, the cost of a batch on the writer thread, the cost of
//! `History::record` (the only part on the engine's path: a queue push), and
//! `history::stats::load` over the 30 days as `jellydemon stats` (one bucket) and
//! `/api/history` (168 buckets) run it.
//!
//! Run: `cargo bench --bench history` (under a minute once built). `JD_HISTORY_DAYS` (default 30)
//! changes the span.

use std::time::{Duration, Instant};

use jellydemon::adapters::history::{self, Record, Store};
use jellydemon::config::Algorithm;
use jellydemon::sim::effectiveness::{self as sim, Clients};

const DAY_MS: u64 = 24 * 3600 * 1000;
/// 2026-11-01T00:00Z: the first simulated day.
const BASE_MS: u64 = 1_793_491_200_000;

fn main() {
    let days: u64 = std::env::var("JD_HISTORY_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    println!("history of {days} simulated days (24 h of the effectiveness trace per day)");
    println!(
        "| users | rows / day (play updates, samples, decisions) | MB / day | batch of {} rows: mean (max) | per row | record() on the engine's path: p50 (p99) | stats over {days} days: p50 (max) | /api/history: p50 (max) |",
        history::BATCH
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for users in [8usize, 16] {
        one(users, days);
    }
}

fn kinds(rows: &[Record]) -> (usize, usize, usize) {
    let mut n = (0, 0, 0);
    for r in rows {
        match r {
            Record::Play(_) => n.0 += 1,
            Record::Sample(_) => n.1 += 1,
            Record::Decision(_) => n.2 += 1,
            Record::Action(_) => {}
        }
    }
    n
}

fn one(users: usize, days: u64) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("history.sqlite");
    let (mut store, _) = Store::open(&path).expect("a new database");
    let mut batches: Vec<Duration> = Vec::new();
    let mut rows_total = 0usize;
    let mut per_kind = (0, 0, 0);
    let mut day_rows: Vec<Record> = Vec::new();
    for d in 0..days {
        let trace = sim::trace(
            users,
            24,
            0x5EED_0000 + 97 * d + users as u64,
            Clients::HALF_PUSHABLE,
        );
        let (_, rows) = sim::run_recorded(Algorithm::Equal, &trace, 24, BASE_MS + d * DAY_MS);
        let k = kinds(&rows);
        per_kind = (per_kind.0 + k.0, per_kind.1 + k.1, per_kind.2 + k.2);
        rows_total += rows.len();
        for chunk in rows.chunks(history::BATCH) {
            let t = Instant::now();
            store.write(chunk).expect("written");
            batches.push(t.elapsed());
        }
        if d == 0 {
            day_rows = rows;
        }
    }
    let bytes = store.size().expect("a size");
    drop(store);
    let mean_batch = batches.iter().sum::<Duration>() / batches.len() as u32;
    let max_batch = batches.iter().max().copied().unwrap_or_default();
    let per_row = batches.iter().sum::<Duration>() / rows_total.max(1) as u32;

    // The engine's side: queue one day's rows (as fast as it can, far faster than a real
    // engine makes them) into a running writer with its own database.
    let hot = record_cost(dir.path().join("hot.sqlite"), &day_rows);

    let now = BASE_MS + days * DAY_MS;
    let since = now - days * DAY_MS;
    let tz = jiff::tz::TimeZone::UTC;
    let cli = timed(10, || {
        let (stats, _) = history::stats::load(&path, since, now, None, &tz, 1).expect("stats");
        assert_eq!(stats.users.len(), users, "every user streamed");
    });
    let page = timed(10, || {
        let (_, series) = history::stats::load(&path, since, now, None, &tz, 168).expect("stats");
        assert!(!series.is_empty());
    });
    let per_day = |n: usize| n as f64 / days as f64;
    println!(
        "| {users} | {:.0} ({:.0}, {:.0}, {:.0}) | {:.2} | {:.1} ms ({:.1}) | {:.1} µs | {:.0} ns ({:.0}) | {:.0} ms ({:.0}) | {:.0} ms ({:.0}) |",
        per_day(rows_total),
        per_day(per_kind.0),
        per_day(per_kind.1),
        per_day(per_kind.2),
        bytes as f64 / 1e6 / days as f64,
        ms(mean_batch),
        ms(max_batch),
        per_row.as_secs_f64() * 1e6,
        hot.0.as_secs_f64() * 1e9,
        hot.1.as_secs_f64() * 1e9,
        ms(cli.0),
        ms(cli.1),
        ms(page.0),
        ms(page.1),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median and the worst of `n` runs of `f`.
fn timed(n: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut t: Vec<Duration> = (0..n)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    (t[n / 2], t[n - 1])
}

/// The p50 and p99 of one `History::record` call, the writer thread running.
fn record_cost(path: std::path::PathBuf, rows: &[Record]) -> (Duration, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (h, w) = history::start_unobserved(path, Duration::from_secs(30 * 24 * 3600), u64::MAX);
    let mut t: Vec<Duration> = rows
        .iter()
        .map(|r| {
            let r = r.clone();
            let s = Instant::now();
            h.record(r);
            s.elapsed()
        })
        .collect();
    rt.block_on(w.stop(Duration::from_secs(30)));
    t.sort();
    (t[t.len() / 2], t[t.len() * 99 / 100])
}
