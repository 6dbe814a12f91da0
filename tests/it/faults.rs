//! Fault suite: Jellyfin answering 401, closing connections, restarting with different sessions;
//! a corrupt, truncated or missing state file at start; SIGKILL at random points of a write
//! storm, 20 times over. No original limit is ever lost and the system converges.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{Harness, KEY, M, assert_originals, eventually, limits_now};
use jellydemon::sim::fake::{FakeJellyfin, Playback};
use reqwest::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A TCP proxy in front of the fake: forwards, or (while closed) drops every open connection
/// and accepts and drops new ones, as a crashing or restarting server does.
struct Proxy {
    url: String,
    closing: Arc<AtomicBool>,
    /// Cancelled to cut the connections that are open (reqwest keeps them alive).
    cut: Arc<std::sync::Mutex<CancellationToken>>,
}

impl Proxy {
    fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let mut cut = self.cut.lock().unwrap();
        cut.cancel();
        *cut = CancellationToken::new();
    }
    fn open(&self) {
        self.closing.store(false, Ordering::SeqCst);
    }
}

async fn proxy(upstream: std::net::SocketAddr) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let closing = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
    let (flag, cuts) = (closing.clone(), cut.clone());
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            if flag.load(Ordering::SeqCst) {
                drop(inbound); // connection closed without an answer
                continue;
            }
            let token = cuts.lock().unwrap().clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = token.cancelled() => {}
                    }
                }
            });
        }
    });
    Proxy { url, closing, cut }
}

/// A harness whose config points at a proxy in front of the fake.
async fn behind_proxy(fake: FakeJellyfin) -> (Harness, Proxy) {
    let h = Harness::start(fake, "", "").await;
    let upstream: std::net::SocketAddr = h.url.trim_start_matches("http://").parse().unwrap();
    let p = proxy(upstream).await;
    let cfg = std::fs::read_to_string(&h.config_path)
        .unwrap()
        .replace(&h.url, &p.url);
    std::fs::write(&h.config_path, cfg).unwrap();
    (h, p)
}

fn two_users(fake: &FakeJellyfin) -> (String, String) {
    (fake.add_user("alice", |_| {}), fake.add_user("bob", |_| {}))
}

#[tokio::test]
async fn a_revoked_key_is_reported_and_the_daemon_recovers_when_it_is_back() {
    let fake = FakeJellyfin::new(KEY);
    let (alice, bob) = two_users(&fake);
    let h = Harness::start(fake, "", "").await;
    let d = h
        .daemon("poll_interval = \"1s\"\nunhealthy_after = \"2s\"\nrestore_on_exit = false")
        .await;
    eventually("startup", || h.fake.limit(&bob) == 55 * M).await;
    h.fake.fail_all(401);
    let st = d
        .wait_for(|s| {
            s["poll"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("401"))
        })
        .await;
    assert!(
        st["poll"]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 401")
    );
    h.fake.clear_faults();
    let s = h
        .fake
        .add_session(Some(&alice), Some("203.0.113.5"), "Jellyfin Web", None);
    h.fake
        .start_playback(&s, Playback::direct("x", Some(8 * M), None));
    // bob (never seen streaming) gets the share with one more user after him.
    eventually("converged", || h.fake.limit(&bob) == 23 * M).await;
    d.stop().await;
}

#[tokio::test]
async fn closed_connections_and_a_restart_with_different_sessions_converge() {
    let fake = FakeJellyfin::new(KEY);
    let (alice, bob) = two_users(&fake);
    let s = fake.add_session(Some(&alice), Some("203.0.113.5"), "Jellyfin Web", None);
    fake.start_playback(&s, Playback::direct("x", Some(8 * M), None));
    let (h, p) = behind_proxy(fake).await;
    let d = h
        .daemon("poll_interval = \"1s\"\ndebounce = \"50ms\"\nrestore_on_exit = false")
        .await;
    eventually("alice streams", || h.fake.limit(&bob) == 23 * M).await;

    // Jellyfin goes down: every connection is closed. Meanwhile it "restarts" with other
    // sessions: alice's stream is gone, bob streams now.
    p.close();
    d.wait_for(|st| st["poll"]["consecutive_failures"].as_u64() >= Some(2))
        .await;
    h.fake.remove_session(&s);
    let s2 = h
        .fake
        .add_session(Some(&bob), Some("2001:db8::5"), "Jellyfin Web", None);
    h.fake
        .start_playback(&s2, Playback::direct("y", Some(8 * M), None));
    let r = d
        .http
        .get(format!("{}/healthz", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "still alive while Jellyfin is down"
    );

    p.open();
    // alice was seen on a client that accepts pushes: her join share is the plain fair share
    // with one more, (55 - 8.8) / 2.
    eventually("converged on the new sessions", || {
        h.fake.limit(&bob) == 55 * M && h.fake.limit(&alice) == 46 * M
    })
    .await;
    d.stop().await;
}

#[tokio::test]
async fn the_daemon_refuses_a_corrupt_or_truncated_state_file_and_starts_without_one() {
    let fake = FakeJellyfin::new(KEY);
    let (_alice, bob) = two_users(&fake);
    let h = Harness::start(fake, "", "").await;
    for (content, code) in [
        ("{\"version\":1,\"users\":{\"ab", Some(4)),
        ("", Some(4)),
        ("not json at all", Some(4)),
    ] {
        std::fs::write(&h.state_path, content).unwrap();
        let out = crate::common::bin::Bin::with_config(&h.config_path, &["run"])
            .env("JELLYDEMON_DAEMON__LISTEN", "127.0.0.1:0")
            .output()
            .await;
        assert_eq!(Some(out.code), code, "{content:?}");
        let err = out.stderr;
        assert!(err.contains("corrupt"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&h.state_path).unwrap(),
            content,
            "left alone"
        );
        assert!(h.fake.policy_posts().is_empty(), "nothing written");
    }
    // Missing: a fresh start.
    std::fs::remove_file(&h.state_path).unwrap();
    let d = h.daemon("").await;
    eventually("writes", || h.fake.limit(&bob) == 55 * M).await;
    d.stop().await;
    assert_eq!(h.fake.limit(&bob), 0, "restored on stop");
}

#[tokio::test]
async fn sigkill_at_random_points_of_a_write_storm_loses_nothing() {
    // 30 users, some with their own limits, streams changing between kills.
    let fake = FakeJellyfin::new(KEY);
    let mut users = Vec::new();
    for i in 0..30 {
        users.push(fake.add_user(&format!("user{i:02}"), |p| {
            if i % 5 == 0 {
                p.insert(
                    "RemoteClientBitrateLimit".into(),
                    serde_json::json!((i + 3) * M),
                );
            }
        }));
    }
    let originals = limits_now(&fake);
    let h = Harness::start(fake, "", "").await;
    let cfg = h.dir.path().join("storm.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[daemon]\nlisten = \"127.0.0.1:0\"\ndebounce = \"20ms\"\npoll_interval = \"1s\"\nmax_writes_per_second = 40\n",
            std::fs::read_to_string(&h.config_path).unwrap()
        ),
    )
    .unwrap();
    let spawn = || crate::common::spawn_run(&cfg);
    let mut rng = crate::common::Rng(0x9E3779B97F4A7C15);
    let mut next = move || rng.next();
    let mut sessions: Vec<String> = Vec::new();
    // 20 rounds in CI; a longer run: JD_TEST_KILL_ROUNDS=200 cargo test --test it faults::sigkill
    let rounds: usize = std::env::var("JD_TEST_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    for round in 0..rounds {
        let child = spawn();
        // Change who streams, so every round has writes to do.
        for _ in 0..3 {
            let u = &users[(next() % 30) as usize];
            let s = h
                .fake
                .add_session(Some(u), Some("203.0.113.9"), "Jellyfin Web", None);
            h.fake.start_playback(
                &s,
                Playback::direct("x", Some(((next() % 40) as i64 + 1) * M), None),
            );
            sessions.push(s);
        }
        if sessions.len() > 6 {
            let s = sessions.remove((next() % sessions.len() as u64) as usize);
            h.fake.remove_session(&s);
        }
        let posts = h.fake.policy_posts().len();
        // Kill somewhere in the storm: after 0-15 further writes, or a random pause.
        let target = posts + (next() % 16) as usize;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50 + next() % 700);
        while h.fake.policy_posts().len() < target && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        child.signal(rustix::process::Signal::KILL);
        child.wait(Duration::from_secs(10)).await;
        assert!(
            jellydemon::adapters::ledger::Ledger::open(&h.state_path).is_ok(),
            "round {round}: the state file is always readable"
        );
    }
    // Restart once more, let it converge, then stop it the normal way.
    let child = spawn();
    let mut last = usize::MAX;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n = h.fake.policy_posts().len();
        if n == last {
            break;
        }
        last = n;
    }
    child.signal(rustix::process::Signal::TERM);
    assert_eq!(child.wait(Duration::from_secs(30)).await.code, 0);
    assert_originals(&h.fake, &originals);
}

#[tokio::test]
async fn a_stale_model_never_records_a_hand_change() {
    use jellydemon::ids::UserId;
    use jellydemon::sim::fake::{Fault, FaultKind};
    let fake = FakeJellyfin::new(KEY);
    let bob = fake.add_user("bob", |p| {
        p.insert("RemoteClientBitrateLimit".into(), serde_json::json!(20 * M));
    });
    let users: Vec<String> = (0..10)
        .map(|i| fake.add_user(&format!("u{i}"), |_| {}))
        .collect();
    // A 30 Mbps budget: bob's own 20 Mbps cap is lowered while others stream.
    let first = fake.add_session(Some(&users[0]), Some("203.0.113.19"), "Jellyfin Web", None);
    fake.start_playback(&first, Playback::direct("x", Some(20 * M), None));
    let h = Harness::with_budget(fake, 35, 5, "", "").await;
    let d = h
        .daemon("poll_interval = \"1s\"\ndebounce = \"20ms\"\nrestore_on_exit = false")
        .await;
    eventually("bob managed", || h.fake.limit(&bob) != 20 * M).await;
    // /Sessions fails from now on: the users the engine read last go stale while it writes
    // bob a new join share for every number of streams the webhooks tell of.
    h.fake.add_fault(Fault {
        method: None,
        path_prefix: Some("/sessions".into()),
        skip: 0,
        kind: FaultKind::Status(500),
    });
    let sessions: Vec<String> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            h.fake.add_session(
                Some(u),
                Some(&format!("203.0.113.{}", i + 40)),
                "Jellyfin Web",
                None,
            )
        })
        .collect();
    for n in 1..sessions.len() {
        for (i, (u, s)) in users.iter().zip(&sessions).take(n).enumerate() {
            let body = serde_json::json!({
                "NotificationType": "PlaybackStart",
                "UserId": u,
                "Id": s,
                "RemoteEndPoint": format!("203.0.113.{}", i + 40),
                "Video_0_BitRate": 3 * M,
            });
            d.hook(&body.to_string()).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let ledger = h.ledger();
        assert_eq!(
            ledger.original(&UserId::new(&bob)),
            Some(20 * M),
            "{n} streams: bob's original"
        );
    }
    let bob_writes: Vec<i64> = h
        .fake
        .policy_posts()
        .iter()
        .filter(|(id, _)| *id == bob)
        .map(|(_, p)| p["RemoteClientBitrateLimit"].as_i64().unwrap())
        .collect();
    assert!(!bob_writes.is_empty());
    let st = d.state().await;
    assert_eq!(
        st["notifications"]["recent"],
        serde_json::json!([]),
        "{st:#}"
    );
    d.stop().await;
}
