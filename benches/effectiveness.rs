//! Effectiveness simulation: how well is the link actually shared?
//!
//! A reproducible trace of remote users starting and stopping items (remuxes, 1080p and 4K
//! streams, light audio) is played against the fake Jellyfin, whose model is Jellyfin's: a
//! stream's rate is fixed when it starts, at `min(source rate, the user's limit at that moment)`
//! (transcoded down when the source is above), and web clients honour a
//! `SetMaxStreamingBitrate` push by re-negotiating. The same trace runs with no manager, with a
//! poll-only manager (every 30 s, an equal split among the users streaming now, nothing for
//! idle users), and with the real jellydemon daemon (in-process, webhooks for every start and
//! stop) for each algorithm. Time is accelerated: one simulated minute lasts `REAL_MS_PER_MIN`
//! real milliseconds, and the daemon's debounce and poll interval are scaled alike.
//!
//! Run: `cargo bench --bench effectiveness` (prints a table; results in BENCHMARKS.md).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jellydemon::config::Settings;
use jellydemon::fake::{FakeJellyfin, Playback};
use tokio_util::sync::CancellationToken;

const KEY: &str = "0123456789abcdef0123456789abcdef";
const M: i64 = 1_000_000;
const BUDGET_MBPS: i64 = 90; // total 100, reserved 10
/// Simulated seconds per step of the simulation clock.
const STEP_S: u64 = 10;
/// Real milliseconds per simulated minute.
const REAL_MS_PER_MIN: u64 = 150;

#[derive(Clone, Copy, Debug)]
struct Item {
    start: u64, // simulated seconds
    end: u64,
    source: i64, // bits/s
}

#[derive(Clone, Debug)]
struct UserTrace {
    name: String,
    web: bool,
    items: Vec<Item>,
}

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

/// `users` remote users over `hours` simulated hours: sessions arrive about every 80 minutes
/// per user, each plays 1-3 items back to back (episodes 22-45 min, films 90-140 min) of one
/// kind: remux 60-80 Mbps, 4K 35-45, 1080p 8-12, or audio 0.32.
fn trace(users: usize, hours: u64, seed: u64) -> Vec<UserTrace> {
    let mut rng = Rng(seed);
    let horizon = hours * 3600;
    (0..users)
        .map(|u| {
            let mut items = Vec::new();
            let mut t = (rng.unit() * 3600.0) as u64;
            while t < horizon {
                let kind = rng.unit();
                let source = if kind < 0.2 {
                    (60.0 + rng.unit() * 20.0) as i64 * M
                } else if kind < 0.4 {
                    (35.0 + rng.unit() * 10.0) as i64 * M
                } else if kind < 0.85 {
                    (8.0 + rng.unit() * 4.0) as i64 * M
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
                    t += len + 5; // a few seconds between items
                    if t >= horizon {
                        break;
                    }
                }
                t += (rng.unit() * 2.0 * 80.0 * 60.0) as u64; // gap until the next session
            }
            UserTrace {
                name: format!("user{u:02}"),
                web: u % 2 == 0,
                items,
            }
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Manager {
    None,
    Poll30,
    Jellydemon(&'static str),
}

#[derive(Default, Debug)]
struct Figures {
    samples: u64,
    over: u64,
    peak: f64,
    util_sum: f64,
    util_n: u64,
    jain_sum: f64,
    jain_n: u64,
    writes: usize,
}

fn real(sim_s: u64) -> Duration {
    Duration::from_micros(sim_s * REAL_MS_PER_MIN * 1000 / 60)
}

async fn run(manager: Manager, traces: &[UserTrace], hours: u64) -> Figures {
    let fake = FakeJellyfin::new(KEY);
    let ids: Vec<String> = traces
        .iter()
        .map(|t| fake.add_user(&t.name, |_| {}))
        .collect();
    let (jf, _, jf_stop) = fake.spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let mut daemon: Option<(String, CancellationToken, tokio::task::JoinHandle<_>)> = None;
    if let Manager::Jellydemon(alg) = manager {
        let settings = Settings::from_toml_str(&format!(
            "[jellyfin]\nurl = \"{jf}\"\napi_key = \"{KEY}\"\n[bandwidth]\ntotal_upload_mbps = 100\n\
             reserved_mbps = 10\nalgorithm = \"{alg}\"\n[state]\nfile = \"{}\"\n[daemon]\n\
             debounce = \"{}ms\"\npoll_interval = \"{}ms\"\nmax_writes_per_second = 1000\n\
             restore_on_exit = false\n",
            dir.path().join("state.json").display(),
            real(1).as_millis().max(1),
            real(300).as_millis().max(1000),
        ))
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let task = tokio::spawn(jellydemon::daemon::run(
            Arc::new(settings),
            listener,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
        daemon = Some((url, stop, task));
    }
    let http = reqwest::Client::new();
    let hook = |body: serde_json::Value| {
        let http = http.clone();
        let url = daemon.as_ref().map(|d| d.0.clone());
        async move {
            if let Some(url) = url {
                let _ = http.post(url).body(body.to_string()).send().await;
            }
        }
    };

    // Per user: the session currently playing (id) and which item.
    let mut playing: HashMap<usize, (String, usize)> = HashMap::new();
    let mut fig = Figures::default();
    let mut poll_writes = 0;
    let start = tokio::time::Instant::now();
    let horizon = hours * 3600;
    let mut t = 0;
    while t < horizon {
        for (u, tr) in traces.iter().enumerate() {
            // Stop an item that ended.
            if let Some((sid, idx)) = playing.get(&u).cloned()
                && tr.items[idx].end <= t
            {
                fake.remove_session(&sid);
                playing.remove(&u);
                hook(serde_json::json!({"NotificationType": "PlaybackStop", "UserId": ids[u], "Id": sid})).await;
            }
            // Start an item that begins now.
            if !playing.contains_key(&u)
                && let Some(idx) = tr.items.iter().position(|i| i.start <= t && t < i.end)
            {
                let client = if tr.web {
                    "Jellyfin Web"
                } else {
                    "Jellyfin Android TV"
                };
                let sid = fake.add_session(
                    Some(&ids[u]),
                    Some(&format!("203.0.113.{}", 10 + u)),
                    client,
                    None,
                );
                fake.start_playback(
                    &sid,
                    Playback::direct("item", Some(tr.items[idx].source), None),
                );
                playing.insert(u, (sid.clone(), idx));
                hook(serde_json::json!({"NotificationType": "PlaybackStart", "UserId": ids[u], "Id": sid})).await;
            }
        }
        // The poll-only manager: every 30 s, an equal split among the users streaming now.
        if manager == Manager::Poll30 && t % 30 == 0 && !playing.is_empty() {
            let share = BUDGET_MBPS * M / playing.len() as i64;
            for u in playing.keys() {
                if fake.limit(&ids[*u]) != share {
                    fake.set_limit_by_hand(&ids[*u], share);
                    poll_writes += 1;
                }
            }
        }
        // Measure.
        let rates: Vec<f64> = fake
            .sessions()
            .iter()
            .filter_map(|s| s.playing.as_ref())
            .map(|p| p.wire_rate() as f64)
            .collect();
        if !rates.is_empty() {
            let total: f64 = rates.iter().sum();
            let budget = (BUDGET_MBPS * M) as f64;
            fig.samples += 1;
            if total > budget * 1.001 {
                fig.over += 1;
            }
            fig.peak = fig.peak.max(total / budget);
            fig.util_sum += total.min(budget) / budget;
            fig.util_n += 1;
            if rates.len() >= 2 {
                let sq: f64 = rates.iter().map(|r| r * r).sum();
                fig.jain_sum += total * total / (rates.len() as f64 * sq);
                fig.jain_n += 1;
            }
        }
        t += STEP_S;
        tokio::time::sleep_until(start + real(t)).await;
    }
    fig.writes = fake.policy_posts().len() + poll_writes;
    if let Some((_, stop, task)) = daemon {
        stop.cancel();
        let _ = task.await;
    }
    jf_stop.cancel();
    fig
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench --bench effectiveness`");
        return;
    }
    let hours: u64 = std::env::var("JD_SIM_HOURS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for users in [8usize, 16] {
        let traces = trace(users, hours, 0x5EED_0000 + users as u64);
        let items: usize = traces.iter().map(|t| t.items.len()).sum();
        println!(
            "\n{users} remote users, {hours} simulated hours, {items} items, budget {BUDGET_MBPS} Mbps, \
                  step {STEP_S} s, 1 simulated minute = {REAL_MS_PER_MIN} ms"
        );
        println!(
            "| manager | over budget | peak load | utilization | Jain fairness | policy writes |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for m in [
            Manager::None,
            Manager::Poll30,
            Manager::Jellydemon("equal"),
            Manager::Jellydemon("priority"),
            Manager::Jellydemon("demand"),
        ] {
            let f = rt.block_on(run(m, &traces, hours));
            let name = match m {
                Manager::None => "none".to_string(),
                Manager::Poll30 => "poll every 30 s, active users only".to_string(),
                Manager::Jellydemon(a) => format!("jellydemon {a}"),
            };
            let writes = f.writes;
            println!(
                "| {name} | {} s ({:.1} %) | {:.0} % | {:.0} % | {:.2} | {writes} |",
                f.over * STEP_S,
                100.0 * f.over as f64 / f.samples.max(1) as f64,
                100.0 * f.peak,
                100.0 * f.util_sum / f.util_n.max(1) as f64,
                f.jain_sum / f.jain_n.max(1) as f64,
            );
        }
    }
}
