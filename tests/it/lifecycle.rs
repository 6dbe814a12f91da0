//! The daemon's life as a process: SIGTERM restores every original and exits 0 (in bounded
//! time with Jellyfin down), a SIGKILL then a restart loses nothing, a dry run writes
//! nothing, a busy port is exit 7.

use std::time::Duration;

use crate::common::bin::{Bin, Running};
use crate::common::{Harness, KEY, M, eventually, mixed_scenario};
use crate::daemon::two_users;
use jellydemon::ids::UserId;
use jellydemon::sim::fake::{FakeJellyfin, Playback};
use rustix::process::Signal;

#[tokio::test]
async fn shutdown_restores_every_original() {
    let fake = FakeJellyfin::new(KEY);
    let ids = mixed_scenario(&fake);
    let originals = crate::common::limits_now(&fake);
    let h = Harness::start(fake, "", "").await;
    let d = h.daemon("").await;
    eventually("limits written", || h.fake.limit(&ids.alice) == 24 * M).await;
    let out = d.stop().await;
    assert_eq!(out.restore_failures, 0);
    crate::common::assert_originals(&h.fake, &originals);
    assert!(h.ledger().is_empty());
}

#[tokio::test]
async fn dry_run_daemon_writes_nothing() {
    let (h, _alice, _bob) = two_users().await;
    let d = h.daemon("dry_run = true").await;
    let st = d.state().await;
    assert!(st["last_decision"]["users"].as_array().unwrap().len() == 2);
    d.stop().await;
    assert!(h.fake.policy_posts().is_empty());
    assert!(!h.state_path.exists());
}

/// Start the real binary (`jellydemon run`) with the harness config plus `[daemon]` lines.
fn spawn_binary(h: &Harness, daemon: &str) -> Running {
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    let path = h.dir.path().join("daemon.toml");
    std::fs::write(
        &path,
        format!("{text}\n[daemon]\nlisten = \"127.0.0.1:0\"\ndebounce = \"50ms\"\n{daemon}\n"),
    )
    .unwrap();
    Bin::with_config(&path, &["run"]).spawn()
}

#[tokio::test]
async fn sigterm_restores_every_original_and_exits_0() {
    let fake = FakeJellyfin::new(KEY);
    let ids = mixed_scenario(&fake);
    let originals = crate::common::limits_now(&fake);
    let h = Harness::start(fake, "", "").await;
    let child = spawn_binary(&h, "");
    eventually("limits written", || h.fake.limit(&ids.alice) == 24 * M).await;
    child.signal(Signal::TERM);
    let out = child.wait(Duration::from_secs(20)).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    crate::common::assert_originals(&h.fake, &originals);
    assert!(h.ledger().is_empty());
}

#[tokio::test]
async fn sigterm_with_jellyfin_down_exits_in_bounded_time_and_keeps_the_ledger() {
    let fake = FakeJellyfin::new(KEY);
    let ids = mixed_scenario(&fake);
    let h = Harness::start(fake, "", "").await;
    let child = spawn_binary(&h, "shutdown_timeout = \"2s\"");
    eventually("limits written", || h.fake.limit(&ids.alice) == 24 * M).await;
    h.fake.add_fault(jellydemon::sim::fake::Fault {
        method: None,
        path_prefix: None,
        skip: 0,
        kind: jellydemon::sim::fake::FaultKind::Hang,
    });
    child.signal(Signal::TERM);
    // It exits in bounded time although Jellyfin hangs.
    let out = child.wait(Duration::from_secs(15)).await;
    assert_eq!(out.code, 6, "not everything could be restored");
    assert_eq!(
        h.ledger().original(&UserId::new(&ids.alice)),
        Some(0),
        "the ledger keeps the originals"
    );
    // Once Jellyfin is back, restore finishes the job.
    h.fake.clear_faults();
    let (code, out, err) = h.cli(&["restore"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(h.fake.limit(&ids.alice), 0);
}

#[tokio::test]
async fn sigkill_then_restart_loses_nothing() {
    let fake = FakeJellyfin::new(KEY);
    let ids = mixed_scenario(&fake);
    let originals = crate::common::limits_now(&fake);
    let h = Harness::start(fake, "", "").await;
    for round in 0..3 {
        // Slow writes so the kill lands in the middle of them.
        let child = spawn_binary(&h, "max_writes_per_second = 2");
        eventually("some write", || h.fake.policy_posts().len() > round).await;
        child.signal(Signal::KILL);
        child.wait(Duration::from_secs(10)).await;
        // Streams change while it is down.
        if round == 1 {
            let s = h
                .fake
                .add_session(Some(&ids.erin), Some("203.0.113.99"), "Jellyfin Web", None);
            h.fake
                .start_playback(&s, Playback::direct("x", Some(9 * M), None));
        }
    }
    let child = spawn_binary(&h, "");
    d_settle(&h).await;
    child.signal(Signal::TERM);
    let out = child.wait(Duration::from_secs(20)).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    crate::common::assert_originals(&h.fake, &originals);
}

/// Wait until the fake has seen no policy write for a while (the daemon has converged).
async fn d_settle(h: &Harness) {
    let mut last = usize::MAX;
    for _ in 0..25 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let n = h.fake.policy_posts().len();
        if n == last {
            return;
        }
        last = n;
    }
    panic!("the daemon never stopped writing");
}

/// A port in use is exit 7 for every command that listens, with the address in the message.
#[tokio::test]
async fn a_busy_port_is_exit_7_for_run_and_demo() {
    let (h, _, _) = two_users().await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    for args in [
        vec!["run"],
        vec!["demo", "--listen", &addr, "--duration-secs", "1"],
    ] {
        let out = Bin::with_config(&h.config_path, &args)
            .env("JELLYDEMON_DAEMON__LISTEN", &addr)
            .output()
            .await;
        let err = out.stderr;
        assert_eq!(out.code, 7, "{args:?}: {err}");
        assert!(
            err.contains(&format!("cannot listen on {addr}")),
            "{args:?}: {err}"
        );
    }
    assert!(h.fake.policy_posts().is_empty(), "run wrote nothing");
}
