//! Daemon benchmarks over loopback, against the fake Jellyfin (results: BENCHMARKS.md).
//! Run: `cargo bench --bench daemon` (or `-- NAME` for the parts named latency, flood, memory,
//! connections). Prints a small report; asserts nothing.
//!
//! 1. Latency from a PlaybackStart webhook to the first policy write arriving at Jellyfin.
//! 2. `/hook` under a PlaybackProgress flood: requests/s, latency percentiles, and how many
//!    `/Sessions` reads the flood caused.
//! 3. Resident memory of the real binary, idle and with 1,000 sessions.
//! 4. Policy writes while nothing changes (many polls of a steady state).
//! 5. A flood of 5,000 connections that trickle headers: open files and resident memory of the
//!    real binary during and after it, and whether `/healthz` still answers; then 1,000 that
//!    hold a `/hook` body of the largest size short of its last byte.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use jellydemon::config::Settings;
use jellydemon::sim::fake::{FakeJellyfin, Playback};
use tokio_util::sync::CancellationToken;

const KEY: &str = "0123456789abcdef0123456789abcdef";
const M: i64 = 1_000_000;

fn config(url: &str, dir: &std::path::Path, daemon: &str) -> String {
    format!(
        "[jellyfin]\nurl = \"{url}\"\napi_key = \"{KEY}\"\n[bandwidth]\ntotal_upload_mbps = 100\n\
         reserved_mbps = 10\n[state]\nfile = \"{}\"\n[daemon]\n{daemon}\n",
        dir.join("state.json").display()
    )
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn start_daemon(settings: Settings) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(jellydemon::daemon::run(
        Arc::new(settings),
        listener,
        stop.clone(),
    ));
    (url, stop)
}

/// Wait until no policy write has arrived for 400 ms (the writer is done).
async fn settle(fake: &FakeJellyfin) {
    settle_every(fake, Duration::from_millis(400)).await;
}

/// Wait until no policy write has arrived for a whole `period`.
async fn settle_every(fake: &FakeJellyfin, period: Duration) {
    let mut last = usize::MAX;
    loop {
        tokio::time::sleep(period).await;
        let n = fake.policy_posts().len();
        if n == last {
            return;
        }
        last = n;
    }
}

/// `jellydemon run` as a child process with the config at `cfg`.
fn spawn_run(bin: &str, cfg: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(bin)
        .arg("--config")
        .arg(cfg)
        .arg("run")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn latency() {
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    for i in 0..3 {
        fake.add_user(&format!("idle{i}"), |_| {});
    }
    let (jf, _, _jf_stop) = fake.spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let s = Settings::from_toml_str(&config(&jf, dir.path(), "poll_interval = \"1h\"")).unwrap();
    let debounce = s.daemon.debounce;
    let (url, stop) = start_daemon(s).await;
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut samples = Vec::new();
    // `JD_BENCH_ROUNDS` rounds (200 by default): a p99 over fewer is just the slowest one.
    let rounds: usize = std::env::var("JD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for round in 0..rounds {
        let sid = fake.add_session(Some(&alice), Some("203.0.113.5"), "Jellyfin Web", None);
        fake.start_playback(
            &sid,
            Playback::direct("x", Some((5 + round as i64 % 3) * M), None),
        );
        // A short log: the wait below reads it every 0.5 ms, and a copy of a long one would
        // take the CPU the daemon is being timed on.
        fake.clear_requests();
        let before = 0;
        let sent = Instant::now();
        let body =
            serde_json::json!({"NotificationType": "PlaybackStart", "UserId": alice, "Id": sid});
        http.post(format!("{url}/hook"))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let reqs = fake.requests();
            let first = reqs
                .iter()
                .filter(|r| r.method == Method::POST && r.path.ends_with("/Policy"))
                .nth(before);
            if let Some(r) = first {
                samples.push(r.at.duration_since(sent));
                break;
            }
            assert!(Instant::now() < deadline, "no write after a webhook");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        settle(&fake).await;
        fake.remove_session(&sid);
        let body =
            serde_json::json!({"NotificationType": "PlaybackStop", "UserId": alice, "Id": sid});
        http.post(format!("{url}/hook"))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        settle(&fake).await;
    }
    stop.cancel();
    samples.sort();
    let above = |p: f64| pct(&samples, p).saturating_sub(debounce);
    println!(
        "webhook -> first policy write ({} rounds, debounce {:?}): p50 {:?}, p90 {:?}, p99 {:?}, \
         max {:?}; above the debounce window: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        debounce,
        pct(&samples, 0.5),
        pct(&samples, 0.9),
        pct(&samples, 0.99),
        samples.last().unwrap(),
        above(0.5),
        above(0.9),
        above(0.99),
        above(1.0),
    );
}

async fn flood() {
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    let (jf, _, _jf_stop) = fake.spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let s = Settings::from_toml_str(&config(&jf, dir.path(), "poll_interval = \"1h\"")).unwrap();
    let (url, stop) = start_daemon(s).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reads_before = fake.count(&Method::GET, "/Sessions");
    let body = serde_json::json!({"NotificationType": "PlaybackProgress", "UserId": alice,
        "Id": "aa11bb22cc33dd44ee55ff6677889900", "IsPaused": "False"})
    .to_string();
    let run_for = Duration::from_secs(10);
    let workers = 32;
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (http, url, body) = (reqwest::Client::new(), url.clone(), body.clone());
        set.spawn(async move {
            let mut lat = Vec::new();
            while start.elapsed() < run_for {
                let t = Instant::now();
                let r = http
                    .post(format!("{url}/hook"))
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                lat.push(t.elapsed());
            }
            lat
        });
    }
    let mut all: Vec<Duration> = set.join_all().await.into_iter().flatten().collect();
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    let reads = fake.count(&Method::GET, "/Sessions") - reads_before;
    stop.cancel();
    println!(
        "PlaybackProgress flood ({workers} keep-alive clients in the same process, {:.0} s): \
         {:.0} requests/s, latency p50 {:?}, p99 {:?}; /Sessions reads caused: {reads}",
        secs,
        all.len() as f64 / secs,
        pct(&all, 0.5),
        pct(&all, 0.99),
    );
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A free loopback port (bound and released; the daemon binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How long after a flood closes its memory is read: long enough for an allocator that
/// returns freed pages after a delay to have done so.
const AFTER: Duration = Duration::from_secs(12);

async fn connection_flood() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    use tokio::io::AsyncWriteExt;
    let mut l = getrlimit(Resource::Nofile);
    l.current = l.maximum;
    setrlimit(Resource::Nofile, l).unwrap();
    let fake = FakeJellyfin::new(KEY);
    fake.add_user("alice", |_| {});
    let (jf, _, _jf_stop) = fake.spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let port = free_port();
    std::fs::write(
        &cfg,
        config(&jf, dir.path(), &format!("listen = \"127.0.0.1:{port}\"")),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_jellydemon");
    let mut child = spawn_run(bin, &cfg);
    let pid = child.id().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle_rss, idle_fds) = (rss_kib(pid), open_files(pid));
    let stop = CancellationToken::new();
    let mut tricklers = tokio::task::JoinSet::new();
    for _ in 0..5_000 {
        let stop = stop.clone();
        tricklers.spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                return;
            };
            let _ = s.write_all(b"GET / HTTP/1.1\r\n").await;
            while !stop.is_cancelled() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if s.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return;
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (busy_rss, busy_fds) = (rss_kib(pid), open_files(pid));
    let started = Instant::now();
    let healthz = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status().as_u16());
    let healthz_took = started.elapsed();
    stop.cancel();
    tricklers.abort_all();
    while tricklers.join_next().await.is_some() {}
    tokio::time::sleep(AFTER).await;
    let (after_rss, after_fds) = (rss_kib(pid), open_files(pid));
    println!(
        "flood of 5,000 connections trickling headers (http_max_connections 256): open files \
         {idle_fds} idle, {busy_fds} during, {after_fds} after; resident memory {:.1} MiB idle, \
         {:.1} MiB during, {:.1} MiB {AFTER:?} after; /healthz during it: {healthz:?} in \
         {healthz_took:?}",
        idle_rss as f64 / 1024.0,
        busy_rss as f64 / 1024.0,
        after_rss as f64 / 1024.0
    );

    // Then 1,000 clients send `/hook` a body of the largest size allowed, all but its last
    // byte, and hold it: the daemon buffers 64 KiB on each connection it serves.
    let stop = CancellationToken::new();
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..1_000 {
        let stop = stop.clone();
        slow.spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                return;
            };
            let len = 64 * 1024;
            let head =
                format!("POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len}\r\n\r\n");
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 4096];
            let mut sent = 0;
            while sent + chunk.len() < len && !stop.is_cancelled() {
                if s.write_all(&chunk).await.is_err() {
                    return;
                }
                sent += chunk.len();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            stop.cancelled().await;
        });
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let busy_rss = rss_kib(pid);
    stop.cancel();
    slow.abort_all();
    while slow.join_next().await.is_some() {}
    tokio::time::sleep(AFTER).await;
    let after_rss = rss_kib(pid);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait().await;
    println!(
        "then 1,000 clients holding a 64 KiB /hook body short of its last byte: resident memory \
         {:.1} MiB during, {:.1} MiB {AFTER:?} after (idle before both floods: {:.1} MiB)",
        busy_rss as f64 / 1024.0,
        after_rss as f64 / 1024.0,
        idle_rss as f64 / 1024.0
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn memory_and_steady_writes() {
    let fake = FakeJellyfin::new(KEY);
    let mut users = Vec::new();
    for i in 0..50 {
        users.push(fake.add_user(&format!("user{i}"), |_| {}));
    }
    let (jf, _, _jf_stop) = fake.spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        config(
            &jf,
            dir.path(),
            "listen = \"127.0.0.1:0\"\npoll_interval = \"1s\"",
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_jellydemon");
    let mut child = spawn_run(bin, &cfg);
    let pid = child.id().unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let idle = rss_kib(pid);
    for i in 0..1000 {
        let u = &users[i % users.len()];
        let playing = (i % 2 == 0).then(|| Playback::direct("x", Some(8 * M), Some(640_000)));
        fake.add_session(
            Some(u),
            Some(&format!("203.0.{}.{}", i / 250, i % 250)),
            "Jellyfin Web",
            playing,
        );
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let busy = rss_kib(pid);
    // 10 remote streams of 50 users, the rest gone. Wait until the
    // writes (and the pushes they cause) have settled, then count writes over 60 polls.
    for s in fake.sessions().into_iter().skip(10) {
        fake.remove_session(&s.id);
    }
    settle_every(&fake, Duration::from_secs(5)).await;
    let writes_before = fake.policy_posts().len();
    let polls_before = fake.count(&Method::GET, "/Sessions");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after_burst_writes = fake.policy_posts().len() - writes_before;
    let after_burst_polls = fake.count(&Method::GET, "/Sessions") - polls_before;
    let peak = rss_kib(pid);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait().await;

    // The same 10 streams seen by a daemon that never saw the burst: a steady state.
    let mut child = spawn_run(bin, &cfg);
    settle_every(&fake, Duration::from_secs(5)).await;
    let writes_before = fake.policy_posts().len();
    let polls_before = fake.count(&Method::GET, "/Sessions");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let steady_writes = fake.policy_posts().len() - writes_before;
    let polls = fake.count(&Method::GET, "/Sessions") - polls_before;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status();
    let _ = child.wait().await;
    println!(
        "resident memory of jellydemon run: idle {:.1} MiB; with 1,000 sessions (50 users) {:.1} MiB; \
         at the end {:.1} MiB",
        idle as f64 / 1024.0,
        busy as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!(
        "policy writes during a steady state: {steady_writes} over {polls} polls \
         (a steady hour at the default 5-minute poll is 12 polls); right after the burst of \
         1,000 sessions, while the anticipated load decays: {after_burst_writes} over \
         {after_burst_polls} polls"
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing special. Only run
    // the (slow) measurements when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench --bench daemon`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `cargo bench --bench daemon -- NAME` runs the parts whose name contains NAME.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    rt.block_on(async {
        if wanted("latency") {
            latency().await;
        }
        if wanted("flood") {
            flood().await;
        }
        if wanted("memory") {
            memory_and_steady_writes().await;
        }
        if wanted("connections") {
            connection_flood().await;
        }
    });
}
