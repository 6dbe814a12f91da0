//! `restore` after any sequence of passes, including a pass killed half-way, returns every user
//! to the exact original value.

use std::time::Duration;

use crate::common::{Harness, M, Mixed, mixed_scenario};
use axum::http::Method;
use jellydemon::ids::UserId;
use jellydemon::reconcile::{RestoreOutcome, reconcile_once, restore};
use jellydemon::sim::fake::{FakeJellyfin, Fault, FaultKind, Playback};

async fn mixed(bandwidth: &str) -> (Harness, Mixed, Vec<(String, i64)>) {
    let fake = FakeJellyfin::new(crate::common::KEY);
    let ids = mixed_scenario(&fake);
    // Give one user a non-zero original that jellydemon will lower.
    fake.set_limit_by_hand(&ids.carol, 50 * M);
    let originals = crate::common::limits_now(&fake);
    let h = Harness::start(fake, bandwidth, "").await;
    (h, ids, originals)
}

async fn pass(h: &Harness) {
    let ledger = jellydemon::adapters::ledger::LedgerHandle::new(h.ledger());
    reconcile_once(&h.fleet(), &h.settings(), &ledger, false)
        .await
        .unwrap();
}

#[tokio::test]
async fn restore_after_several_passes_returns_every_original() {
    let (h, m, originals) = mixed("").await;
    pass(&h).await;
    // Streams come and go between passes.
    let s = h
        .fake
        .add_session(Some(&m.erin), Some("203.0.113.44"), "Jellyfin Web", None);
    h.fake
        .start_playback(&s, Playback::direct("Film", Some(30 * M), Some(640_000)));
    pass(&h).await;
    h.fake.stop_playback(&s);
    for sess in h.fake.sessions() {
        if sess.user_id.as_deref() == Some(m.alice.as_str()) {
            h.fake.remove_session(&sess.id);
        }
    }
    pass(&h).await;
    assert_ne!(h.fake.limit(&m.alice), 0, "passes changed something");

    let (code, out, err) = h.cli(&["restore"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("restored"), "{out}");
    crate::common::assert_originals(&h.fake, &originals);
    assert!(h.ledger().is_empty(), "the ledger is emptied");
    // A second restore has nothing to do.
    let (code, out, _) = h.cli(&["restore"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("nothing to restore"), "{out}");
}

#[tokio::test]
async fn a_pass_killed_half_way_loses_nothing() {
    // Kill the real binary with SIGKILL while the n-th policy write hangs, either before
    // Jellyfin applied it or after. Then run another pass, and restore.
    for kind in [FaultKind::Hang, FaultKind::ApplyThenHang] {
        for skip in 0..5 {
            let (h, _m, originals) = mixed("").await;
            // The process is killed while it waits for the answer (within the 2 s timeout);
            // the restore then waits until that write can no longer land.
            h.fake.add_fault(Fault {
                method: Some(Method::POST),
                path_prefix: Some("/users/".into()),
                skip,
                kind,
            });
            let child =
                crate::common::bin::Bin::with_config(&h.config_path, &["reconcile", "--once"])
                    .spawn();
            let posts = || {
                h.fake
                    .requests()
                    .iter()
                    .filter(|r| r.method == Method::POST)
                    .count()
            };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while posts() < skip + 1 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no hanging write seen"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            child.signal(rustix::process::Signal::KILL);
            child.wait(Duration::from_secs(10)).await;
            h.fake.clear_faults();

            // The next pass must not take a value jellydemon wrote for an original.
            pass(&h).await;
            let (code, out, err) = h.cli(&["restore"]).await;
            assert_eq!(code, 0, "{kind:?} skip {skip}: {out}\n{err}");
            crate::common::assert_originals(&h.fake, &originals);
        }
    }
}

#[tokio::test]
async fn restore_keeps_a_hand_change_and_drops_deleted_users() {
    let (h, m, _) = mixed("").await;
    pass(&h).await;
    h.fake.set_limit_by_hand(&m.alice, 7 * M);
    h.fake.remove_user(&m.dave);
    let ledger = jellydemon::adapters::ledger::LedgerHandle::new(h.ledger());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let results = restore(&h.fleet(), &ledger, deadline).await.unwrap();
    let alice = results.iter().find(|(n, _)| n == "alice").unwrap();
    assert_eq!(
        alice.1,
        RestoreOutcome::KeptHandChange {
            value: 7 * M,
            original: 0
        }
    );
    assert_eq!(h.fake.limit(&m.alice), 7 * M);
    let dave = results.iter().find(|(n, _)| n == "dave").unwrap();
    assert_eq!(dave.1, RestoreOutcome::UserGone);
    assert!(ledger.read(|l| l.is_empty()));
}

#[tokio::test]
async fn a_failed_restore_keeps_the_user_in_the_ledger() {
    let (h, m, originals) = mixed("").await;
    pass(&h).await;
    h.fake.add_fault(Fault {
        method: Some(Method::POST),
        path_prefix: Some(format!("/users/{}", m.alice)),
        skip: 0,
        kind: FaultKind::Status(500),
    });
    let (code, out, err) = h.cli(&["restore", "--timeout", "1s"]).await;
    assert_eq!(code, 6, "{out}\n{err}");
    assert!(out.contains("FAILED"), "{out}");
    assert_eq!(h.ledger().len(), 1);
    assert_eq!(h.ledger().original(&UserId::new(&m.alice)), Some(0));
    h.fake.clear_faults();
    let (code, _, _) = h.cli(&["restore"]).await;
    assert_eq!(code, 0);
    crate::common::assert_originals(&h.fake, &originals);
}

#[tokio::test]
async fn a_corrupt_state_file_stops_everything_and_is_left_alone() {
    let (h, _m, originals) = mixed("").await;
    std::fs::write(&h.state_path, "{\"version\":1,\"users\":{\"ab").unwrap();
    for args in [&["reconcile", "--once"][..], &["restore"][..]] {
        let (code, _out, err) = h.cli(args).await;
        assert_eq!(code, 4, "{err}");
        assert!(err.contains("corrupt"), "{err}");
    }
    assert_eq!(
        std::fs::read_to_string(&h.state_path).unwrap(),
        "{\"version\":1,\"users\":{\"ab"
    );
    assert!(h.fake.policy_posts().is_empty());
    crate::common::assert_originals(&h.fake, &originals);
}

#[tokio::test]
async fn the_restore_keeps_trying_until_its_deadline() {
    let (h, _m, originals) = mixed("").await;
    pass(&h).await;
    // Every write fails for a while (Jellyfin restarting), then works again.
    h.fake.add_fault(Fault {
        method: Some(Method::POST),
        path_prefix: Some("/users/".into()),
        skip: 0,
        kind: FaultKind::Status(500),
    });
    let fake = h.fake.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        fake.clear_faults();
    });
    let ledger = jellydemon::adapters::ledger::LedgerHandle::new(h.ledger());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let results = restore(&h.fleet(), &ledger, deadline).await.unwrap();
    assert!(
        results
            .iter()
            .all(|(_, o)| !matches!(o, RestoreOutcome::Failed(_))),
        "{results:?}"
    );
    crate::common::assert_originals(&h.fake, &originals);
    assert!(ledger.read(|l| l.is_empty()));
}

#[tokio::test]
async fn four_hundred_users_are_restored_within_the_shutdown_deadline() {
    let fake = FakeJellyfin::new(crate::common::KEY);
    let ids: Vec<String> = (0..400)
        .map(|i| fake.add_user(&format!("user{i:03}"), |_| {}))
        .collect();
    let h = Harness::start(fake, "", "").await;
    // Each at a limit jellydemon wrote, its original 0.
    let mut ledger = h.ledger();
    for id in &ids {
        let _ = ledger.record_intent(&UserId::new(id), &"u".into(), 0, 9 * M, 0);
        h.fake.set_limit_by_hand(id, 9 * M);
    }
    ledger.save().unwrap();
    let ledger = jellydemon::adapters::ledger::LedgerHandle::new(ledger);
    // The daemon's default shutdown_timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let results = restore(&h.fleet(), &ledger, deadline).await.unwrap();
    assert_eq!(results.len(), 400);
    assert!(
        results
            .iter()
            .all(|(_, o)| matches!(o, RestoreOutcome::Restored { .. })),
        "{:?}",
        results
            .iter()
            .find(|(_, o)| !matches!(o, RestoreOutcome::Restored { .. }))
    );
    assert!(ids.iter().all(|id| h.fake.limit(id) == 0));
    assert!(ledger.read(|l| l.is_empty()));
}
