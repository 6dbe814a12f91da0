//! Writes that Jellyfin applies late: a busy server holds a policy POST for 0.5-3 s and applies
//! it even when the client has gone. SIGTERM and SIGKILL at random points of a write storm,
//! then the restoring shutdown, `restore` or a restart: no original is ever lost, and the
//! ledger is emptied only when every original is back for good.

use std::time::Duration;

use crate::common::{Harness, KEY, M, assert_originals, limits_now};
use jellydemon::sim::fake::{FakeJellyfin, Playback};
use rustix::process::Signal;

/// Wait until the fake has applied every write it holds (each within 3 s of arriving).
async fn settled(fake: &FakeJellyfin) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fake.writes_in_flight() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "writes never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn no_original_is_lost_to_a_write_applied_late() {
    let fake = FakeJellyfin::new(KEY);
    let mut users = Vec::new();
    for i in 0..10 {
        users.push(fake.add_user(&format!("user{i:02}"), |p| {
            if i % 3 == 0 {
                p.insert(
                    "RemoteClientBitrateLimit".into(),
                    serde_json::json!((i + 20) * M),
                );
            }
        }));
    }
    let originals = limits_now(&fake);
    let h = Harness::start(fake, "", "").await;
    h.fake
        .apply_writes_late(Some((Duration::from_millis(500), Duration::from_secs(3))));
    // A write unanswered within the 4 s timeout may land for 8 s after it was sent; the
    // shutdown has time to wait for the answers of the writes it sent.
    let cfg = std::fs::read_to_string(&h.config_path)
        .unwrap()
        .replace("timeout = \"2s\"", "timeout = \"4s\"")
        + "\n[daemon]\nlisten = \"127.0.0.1:0\"\ndebounce = \"20ms\"\npoll_interval = \"1s\"\n\
           max_writes_per_second = 40\nshutdown_timeout = \"20s\"\n";
    std::fs::write(&h.config_path, cfg).unwrap();
    let spawn = || crate::common::spawn_run(&h.config_path);
    let mut rng = crate::common::Rng(0x2545F4914F6CDD1D);
    let mut next = move || rng.next();
    let mut sessions: Vec<String> = Vec::new();
    // 6 rounds in CI; a longer run: JD_TEST_LATE_ROUNDS=60 cargo test --test it late
    let rounds: usize = std::env::var("JD_TEST_LATE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    for round in 0..rounds {
        let child = spawn();
        for _ in 0..3 {
            let u = &users[(next() % users.len() as u64) as usize];
            let s = h
                .fake
                .add_session(Some(u), Some("203.0.113.9"), "Jellyfin Web", None);
            h.fake.start_playback(
                &s,
                Playback::direct("x", Some(((next() % 30) as i64 + 2) * M), None),
            );
            sessions.push(s);
        }
        while sessions.len() > 4 {
            let s = sessions.remove((next() % sessions.len() as u64) as usize);
            h.fake.remove_session(&s);
        }
        // Stop it while a write is held by Jellyfin, at some point of the hold.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while h.fake.writes_in_flight() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(next() % 400)).await;
        let how = next() % 3;
        if how == 0 {
            // SIGTERM: the restoring shutdown must leave every original for good.
            child.signal(Signal::TERM);
            let code = child.wait(Duration::from_secs(30)).await.code;
            settled(&h.fake).await;
            assert_eq!(code, 0, "round {round}: the shutdown restored everything");
            assert_originals(&h.fake, &originals);
            assert!(h.ledger().is_empty(), "round {round}: emptied");
        } else {
            child.signal(Signal::KILL);
            child.wait(Duration::from_secs(10)).await;
            if how == 1 {
                // `restore` waits until the write in flight can no longer land.
                let (code, out, err) = h.cli(&["restore"]).await;
                assert_eq!(code, 0, "round {round}: {out}\n{err}");
                settled(&h.fake).await;
                assert_originals(&h.fake, &originals);
                assert!(h.ledger().is_empty(), "round {round}: emptied");
            }
            // else: the next round restarts the daemon on what is left.
        }
    }
    // A last start on whatever is left, then the restoring stop.
    let child = spawn();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.signal(Signal::TERM);
    assert_eq!(child.wait(Duration::from_secs(30)).await.code, 0);
    settled(&h.fake).await;
    assert_originals(&h.fake, &originals);
    assert!(h.ledger().is_empty());
}
