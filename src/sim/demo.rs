//! `jellydemon demo`: the real daemon (same engine, writer and HTTP code as `run`) against a
//! built-in simulated Jellyfin ([`super::fake`]) with scripted remote and local streamers who
//! join and leave, so a newcomer sees the whole thing work with one command and no server.
//!
//! The simulation behaves like Jellyfin: a stream's rate is fixed when it starts, at
//! `min(source rate, the user's limit at that moment)` for remote clients; every start and stop
//! is announced to `/hook` the way the Webhook plugin does. A simulated OpenWrt router
//! ([`super::router`]) counts what leaves the house: the remote streams and, when the script
//! says so, a cloud backup; the daemon's budget follows it (`[bandwidth.meter]`). A simulated
//! qBittorrent ([`super::seeder`]) seeds beside, uploading all it is allowed: it gets what
//! the remote streams leave (`[[downloader]]`).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::daemon;
use crate::network;
use crate::sim::fake::{FakeJellyfin, Playback};
use crate::sim::router::FakeRouter;
use crate::sim::seeder::FakeSeeder;

const API_KEY: &str = "demo0000000000000000000000000000";
const M: i64 = 1_000_000;

/// One scripted step.
enum Step {
    Start {
        user: &'static str,
        from: &'static str,
        client: &'static str,
        what: &'static str,
        video: i64,
        audio: i64,
    },
    Stop {
        user: &'static str,
    },
    /// The rest of the house uploads this much from now on.
    House {
        what: &'static str,
        bps: u64,
    },
}

/// The script: users come and go, with the kinds of streams a home server sees.
fn script() -> Vec<Step> {
    use Step::*;
    vec![
        Start {
            user: "alice",
            from: "203.0.113.10",
            client: "Jellyfin Web",
            what: "a 1080p episode",
            video: 9 * M,
            audio: 640_000,
        },
        Start {
            user: "bob",
            from: "2001:db8::20",
            client: "Jellyfin Web",
            what: "a 4K remux",
            video: 72 * M,
            audio: 4 * M,
        },
        Start {
            user: "erin",
            from: "192.168.1.50",
            client: "Jellyfin Web",
            what: "a film on the LAN (not limited)",
            video: 38 * M,
            audio: 1_500_000,
        },
        Start {
            user: "carol",
            from: "198.51.100.7",
            client: "Jellyfin iOS",
            what: "an album (light audio)",
            video: 0,
            audio: 320_000,
        },
        Start {
            user: "admin",
            from: "203.0.113.99",
            client: "Jellyfin Web",
            what: "a 1080p film (own cap 20 Mbps)",
            video: 14 * M,
            audio: 640_000,
        },
        House {
            what: "a 30 Mbps cloud backup starts in the house",
            bps: 30 * M as u64,
        },
        Stop { user: "alice" },
        Start {
            user: "dave",
            from: "::ffff:203.0.113.44",
            client: "Jellyfin Web",
            what: "a 4K HDR film",
            video: 45 * M,
            audio: 1_500_000,
        },
        Stop { user: "bob" },
        Start {
            user: "bob",
            from: "2001:db8::20",
            client: "Jellyfin Android TV",
            what: "the next 4K episode",
            video: 70 * M,
            audio: 4 * M,
        },
        House {
            what: "the backup is done",
            bps: 0,
        },
        Stop { user: "erin" },
        Stop { user: "carol" },
        Stop { user: "admin" },
        Stop { user: "dave" },
        Stop { user: "bob" },
    ]
}

/// Run the demo until `shutdown` is cancelled or `duration` has passed. `listener` serves the
/// status page (bound by the caller, so that a busy port is the caller's exit code 7).
pub async fn run(
    listener: TcpListener,
    step: Duration,
    duration: Option<Duration>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let fake = FakeJellyfin::new(API_KEY);
    for name in ["admin", "alice", "bob", "carol", "dave", "erin"] {
        fake.add_user(name, |p| {
            if name == "admin" {
                p.insert("IsAdministrator".into(), serde_json::json!(true));
                p.insert("RemoteClientBitrateLimit".into(), serde_json::json!(20 * M));
            }
        });
    }
    let listen = listener.local_addr()?;
    let (jellyfin_url, _, fake_stop) = fake.spawn().await;
    let router = FakeRouter::new("jellydemon", "demo-router-password");
    let router_url = router
        .spawn(fake_stop.clone())
        .await
        .context("cannot start the simulated router")?;
    let seeder = FakeSeeder::new();
    let seeder_url = seeder
        .spawn(fake_stop.clone())
        .await
        .context("cannot start the simulated torrent client")?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let settings = demo_settings(&jellyfin_url, &router_url, &seeder_url, listen, dir.path())?;
    let addr = listen;
    banner(addr);

    let daemon_stop = CancellationToken::new();
    let daemon = tokio::spawn(daemon::run(
        Arc::new(settings),
        listener,
        daemon_stop.clone(),
    ));
    let hook = format!("http://{addr}/hook");
    let state_url = format!("http://{addr}/api/state");
    let mut last_summary: Option<String> = None;
    let http = reqwest::Client::new();
    let names: Vec<(String, String)> = fake.users().into_iter().map(|u| (u.name, u.id)).collect();
    let id_of = |n: &str| {
        names
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, id)| id.clone())
            .expect("scripted user exists")
    };
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut sessions: Vec<(&'static str, String)> = Vec::new();
    let house = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let wan = spawn_wan(&fake, &router, &house, &seeder, &fake_stop);
    let watcher = spawn_watcher(state_url.clone(), daemon_stop.clone());
    'outer: loop {
        for s in script() {
            tokio::select! {
                _ = shutdown.cancelled() => break 'outer,
                _ = sleep_until_opt(deadline) => break 'outer,
                _ = tokio::time::sleep(step) => {}
            }
            let Some((kind, user, session)) = act(&fake, &house, &mut sessions, &id_of, s) else {
                continue;
            };
            let body = serde_json::json!({
                "NotificationType": kind, "UserId": id_of(user), "Id": session,
            });
            let before = recomputes(&http, &state_url).await;
            if let Err(e) = http.post(&hook).body(body.to_string()).send().await {
                eprintln!("demo: cannot reach the daemon: {e}");
                continue;
            }
            show_decision(&http, &state_url, before, &mut last_summary).await;
        }
    }
    daemon_stop.cancel();
    let out = daemon.await.context("daemon task")??;
    fake_stop.cancel();
    let _ = tokio::join!(wan, watcher);
    println!(
        "\nDemo over. Originals restored in the simulated server and the torrent client \
         (upload limit {}; {} failure(s)).",
        if seeder.up_limit() == 0 {
            "unlimited again".to_string()
        } else {
            format!("{} bytes/s", seeder.up_limit())
        },
        out.restore_failures
    );
    Ok(())
}

/// What the demo is, where its page is and how it stops.
fn banner(addr: std::net::SocketAddr) {
    println!(
        "jellydemon demo: a simulated Jellyfin with 6 users, 100 Mbps upload (10 reserved), algorithm \"equal\";"
    );
    println!(
        "a simulated router measures the upload, and the budget leaves room for the rest of the house;"
    );
    println!(
        "a simulated qBittorrent seeds all it is allowed, and gets what the remote streams leave."
    );
    println!("Status page: http://{addr}/   (metrics: /metrics, state: /api/state)");
    println!("Ctrl-C stops it and puts every original limit back.\n");
}

/// One step of the script played on the simulated server and house, told on the terminal;
/// the webhook it makes the plugin send (event, user, session), if any.
fn act(
    fake: &FakeJellyfin,
    house: &std::sync::atomic::AtomicU64,
    sessions: &mut Vec<(&'static str, String)>,
    id_of: &impl Fn(&str) -> String,
    s: Step,
) -> Option<(&'static str, &'static str, String)> {
    Some(match s {
        Step::Start {
            user,
            from,
            client,
            what,
            video,
            audio,
        } => {
            let uid = id_of(user);
            let sid = fake.add_session(Some(&uid), Some(from), client, None);
            let item = Playback::direct(what, (video > 0).then_some(video), Some(audio));
            let rate = fake.start_playback(&sid, item.clone());
            let limit = fake.limit(&uid);
            println!(
                "▶ {user} starts {what} from {from}: source {:.1} Mbps, streams at {:.1} Mbps (limit at start: {})",
                item.source_rate() as f64 / 1e6,
                rate as f64 / 1e6,
                if limit > 0 {
                    format!("{:.1} Mbps", limit as f64 / 1e6)
                } else {
                    "none".into()
                },
            );
            sessions.push((user, sid.clone()));
            ("PlaybackStart", user, sid)
        }
        Step::House { what, bps } => {
            house.store(bps, std::sync::atomic::Ordering::SeqCst);
            println!("⌂ {what}");
            return None;
        }
        Step::Stop { user } => {
            // A stop of someone who is not playing: nothing happens.
            let pos = sessions.iter().position(|(u, _)| *u == user)?;
            let (_, sid) = sessions.remove(pos);
            fake.stop_playback(&sid);
            fake.remove_session(&sid);
            println!("■ {user} stops");
            ("PlaybackStop", user, sid)
        }
    })
}

/// The daemon's configuration for the demo: the simulated Jellyfin, router and qBittorrent,
/// its state in `dir`, listening at `listen`.
fn demo_settings(
    jellyfin_url: &str,
    router_url: &str,
    seeder_url: &str,
    listen: std::net::SocketAddr,
    dir: &std::path::Path,
) -> Result<Settings, crate::config::ConfigError> {
    Settings::from_toml_str(&format!(
        r#"
[jellyfin]
url = "{jellyfin_url}"
api_key = "{API_KEY}"
[bandwidth]
total_upload_mbps = 100
reserved_mbps = 10
algorithm = "equal"
[state]
file = "{}"
[bandwidth.meter]
kind = "openwrt"
interface = "wan"
url = "{router_url}"
username = "jellydemon"
password = "demo-router-password"
interval = "1s"
rise = "1s"
fall = "3s"
window = "3s"
[bandwidth.downloaders]
interval = "1s"
[[downloader]]
kind = "qbittorrent"
name = "seeder"
url = "{seeder_url}"
[daemon]
listen = "{listen}"
poll_interval = "10s"
debounce = "300ms"
"#,
        dir.join("state.json").display()
    ))
}

/// What leaves the house, every 200 ms: the remote streams as they play now and the house's
/// own upload, on a 100 Mbps link where the seeder gets the room they leave.
fn spawn_wan(
    fake: &FakeJellyfin,
    router: &FakeRouter,
    house: &Arc<std::sync::atomic::AtomicU64>,
    seeder: &FakeSeeder,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (fake, router, house, seeder, stop) = (
        fake.clone(),
        router.clone(),
        house.clone(),
        seeder.clone(),
        stop.clone(),
    );
    let ranges = network::jellyfin_default_ranges();
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let remote: i64 = fake
                .sessions()
                .iter()
                .filter(|s| {
                    s.remote_end_point
                        .as_deref()
                        .and_then(|e| e.parse::<std::net::IpAddr>().ok())
                        .is_some_and(|ip| !network::is_internal(ip.to_canonical(), &ranges))
                })
                .filter_map(|s| s.playing.as_ref().map(Playback::wire_rate))
                .sum();
            let others = remote.max(0) as u64 + house.load(std::sync::atomic::Ordering::SeqCst);
            seeder.set_room(100_000_000u64.saturating_sub(others));
            router.set_rate(others + seeder.rate_bps());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Say when the budget changes and why, and the seeder's limit, from `/api/state` every
/// 250 ms until `stop`.
fn spawn_watcher(state_url: String, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let http = reqwest::Client::new();
    tokio::spawn(async move {
        let mut last: Option<String> = None;
        let mut seeding: Option<u64> = None;
        while !stop.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let Some(s) = state(&http, &state_url).await else {
                continue;
            };
            let cause = s["budget"]["cause"].as_str().map(str::to_string);
            if cause != last
                && s["budget"]["source"] != "static"
                && let Some(c) = &cause
            {
                println!("  ↳ budget: {c}");
            }
            last = cause;
            let limit = s["downloaders"][0]["limit_bps"].as_u64();
            if limit.is_some() && limit != seeding {
                let mbps = |b: Option<u64>| b.map_or("–".into(), crate::core::rate::fmt_mbps);
                println!(
                    "  ↳ seeder: limit {}, uploading {}",
                    mbps(limit),
                    mbps(s["downloaders"][0]["rate_bps"].as_u64())
                );
                seeding = limit;
            }
        }
    })
}

/// The daemon's `/api/state`, or `None` when it does not answer.
async fn state(http: &reqwest::Client, state_url: &str) -> Option<serde_json::Value> {
    http.get(state_url).send().await.ok()?.json().await.ok()
}

/// How many plans the daemon has made.
async fn recomputes(http: &reqwest::Client, state_url: &str) -> Option<u64> {
    state(http, state_url).await?["poll"]["recomputes"].as_u64()
}

/// Show the decision an event caused, once the debounce window has closed and the plan is
/// made (waiting at most 2 s), unless it says what the last one said.
async fn show_decision(
    http: &reqwest::Client,
    state_url: &str,
    before: Option<u64>,
    last_summary: &mut Option<String>,
) {
    let waited = tokio::time::Instant::now();
    let mut latest = None;
    while waited.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(s) = state(http, state_url).await
            && s["poll"]["recomputes"].as_u64() > before
        {
            latest = Some(s);
            break;
        }
    }
    if let Some(state) = latest
        && let Some(summary) = state["recent"][0]["summary"].as_str()
        && Some(summary) != last_summary.as_deref()
    {
        println!("  ↳ limits: {summary}");
        *last_summary = Some(summary.to_string());
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
