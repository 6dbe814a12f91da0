//! `reconcile --once` against the fake Jellyfin: exact limits per algorithm on the mixed
//! scenario, dry run, idempotence, lossless policy writes.

mod common;

use common::{Harness, M, Mixed, mixed_scenario};
use jellydemon::fake::FakeJellyfin;
use jellydemon::reconcile::reconcile_once;
use serde_json::Value;

async fn mixed(bandwidth: &str, extra: &str) -> (Harness, Mixed) {
    let fake = FakeJellyfin::new(common::KEY);
    let ids = mixed_scenario(&fake);
    let h = Harness::start(fake, bandwidth, extra).await;
    (h, ids)
}

fn limits(h: &Harness, m: &Mixed) -> [i64; 7] {
    [
        &m.admin, &m.alice, &m.bob, &m.carol, &m.dave, &m.erin, &m.guest,
    ]
    .map(|id| h.fake.limit(id))
}

/// Every policy field but `RemoteClientBitrateLimit`, serialized, per user.
fn other_fields(fake: &FakeJellyfin) -> Vec<(String, String)> {
    fake.users()
        .into_iter()
        .map(|u| {
            let mut p = u.policy.clone();
            p.as_object_mut()
                .unwrap()
                .remove("RemoteClientBitrateLimit");
            (u.name, serde_json::to_string(&p).unwrap())
        })
        .collect()
}

async fn pass(h: &Harness, dry_run: bool) -> jellydemon::reconcile::PassReport {
    let ledger = std::sync::Mutex::new(h.ledger());
    reconcile_once(&h.client(), &h.settings(), &ledger, dry_run)
        .await
        .unwrap()
}

#[tokio::test]
async fn equal_sets_the_limits_design_implies() {
    let (h, m) = mixed("algorithm = \"equal\"", "").await;
    let before = other_fields(&h.fake);
    let report = pass(&h, false).await;
    // Budget 55 Mbps. Admin is held at their own 8 Mbps; alice and bob split the other 47.
    // Committed = 8 + 23.5 + 23.5 = 55, nothing left: idle users (carol on the LAN, dave
    // paused, erin) are held at the 2 Mbps floor. guest has no remote access: untouched.
    assert_eq!(
        limits(&h, &m),
        [8 * M, 23_500_000, 23_500_000, 2 * M, 2 * M, 2 * M, 0],
        "{}",
        jellydemon::report::pass_table(&report)
    );
    assert_eq!(report.failed_writes(), 0);
    // Every other policy field is exactly as it was, including ones set to unusual values.
    assert_eq!(other_fields(&h.fake), before);
    // The admin's limit did not change, so it was not written.
    assert!(h.fake.policy_posts().iter().all(|(id, _)| id != &m.admin));
}

#[tokio::test]
async fn priority_sets_the_limits_design_implies() {
    let (h, m) = mixed(
        "algorithm = \"priority\"\n[bandwidth.priority]\nadmin_weight = 2\nusers = { alice = 3 }",
        "",
    )
    .await;
    h.fake.set_server_limit(30 * M);
    pass(&h, false).await;
    // Weights admin 2 (capped at its own 8), alice 3, bob 1 over 55 Mbps: alice would get
    // 3/4 of 47 = 35.25 but users at 0 are capped by the server-wide 30 Mbps; bob gets 17.
    assert_eq!(
        limits(&h, &m),
        [8 * M, 30 * M, 17 * M, 2 * M, 2 * M, 2 * M, 0]
    );
}

#[tokio::test]
async fn demand_sets_the_limits_design_implies() {
    let (h, m) = mixed("algorithm = \"demand\"", "").await;
    h.fake.set_server_limit(30 * M);
    let report = pass(&h, false).await;
    // Demands with 1.1 overhead: admin 6 Mbps transcode -> 6.6 (quantized 6.5), alice 20 Mbps
    // direct play (19.36 video + 0.64 audio) -> 22, bob 4 Mbps transcode -> 4.4 (4.0).
    // Committed = 6.5 + 22 + 4 = 32.5; headroom 22.5. The fair share of a newcomer is what
    // the exact demands leave: 55 - 6.6 - 22 - 4.4 = 22. Idle users get min(22, 22.5) = 22.
    assert_eq!(
        limits(&h, &m),
        [6_500_000, 22 * M, 4 * M, 22 * M, 22 * M, 22 * M, 0],
        "{}",
        jellydemon::report::pass_table(&report)
    );
}

#[tokio::test]
async fn dry_run_writes_nothing_not_even_the_ledger() {
    let (h, m) = mixed("", "").await;
    let report = pass(&h, true).await;
    assert!(report.outcomes.iter().any(|o| o.decision.needs_write()));
    assert!(h.fake.policy_posts().is_empty());
    assert_eq!(limits(&h, &m), [8 * M, 0, 0, 0, 0, 0, 0]);
    assert!(!h.state_path.exists(), "dry run created the state file");

    // The CLI's --dry-run and the config's dry_run agree.
    let (code, out, err) = h.cli(&["reconcile", "--once", "--dry-run"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("would write"), "{out}");
    assert!(out.contains("dry run: nothing was written"), "{out}");
    assert!(h.fake.policy_posts().is_empty());
    assert!(!h.state_path.exists());
}

#[tokio::test]
async fn a_second_identical_run_writes_nothing() {
    let (h, _m) = mixed("", "").await;
    let first = pass(&h, false).await;
    assert!(first.writes() > 0);
    let posts = h.fake.policy_posts().len();
    let second = pass(&h, false).await;
    assert_eq!(second.writes(), 0);
    assert_eq!(h.fake.policy_posts().len(), posts);
    assert!(second.outcomes.iter().all(|o| !o.decision.needs_write()));
}

#[tokio::test]
async fn the_cli_prints_the_table_and_succeeds() {
    let (h, _m) = mixed("", "").await;
    let (code, out, err) = h.cli(&["reconcile", "--once"]).await;
    assert_eq!(code, 0, "{err}");
    for needle in [
        "USER",
        "FROM",
        "STREAMS",
        "RATE",
        "OLD LIMIT",
        "NEW LIMIT",
        "WHY",
        "Bob O'Brien",
        "198.51.100.7",
        "2001:db8::10",
        "23.5 Mbps",
        "written",
        "0 (server default)",
        "capped by the user's own limit",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    // The API key never appears in output.
    assert!(!out.contains(common::KEY) && !err.contains(common::KEY));
}

#[tokio::test]
async fn ledger_records_originals_before_writing() {
    let (h, m) = mixed("", "").await;
    pass(&h, false).await;
    let ledger = h.ledger();
    assert_eq!(ledger.original(&m.alice), Some(0));
    assert_eq!(ledger.get(&m.alice).unwrap().written(), Some(23_500_000));
    // Not changed, not recorded.
    assert_eq!(ledger.original(&m.admin), None);
    assert_eq!(ledger.original(&m.guest), None);
}

#[tokio::test]
async fn a_hand_change_becomes_the_new_original_and_caps_the_user() {
    let (h, m) = mixed("", "").await;
    pass(&h, false).await;
    // The admin caps alice at 10 Mbps by hand in the dashboard.
    h.fake.set_limit_by_hand(&m.alice, 10 * M);
    pass(&h, false).await;
    assert_eq!(h.ledger().original(&m.alice), Some(10 * M));
    assert_eq!(
        h.fake.limit(&m.alice),
        10 * M,
        "her own cap is never raised"
    );
    // bob takes what alice cannot use: 55 - 8 - 10 = 37.
    assert_eq!(h.fake.limit(&m.bob), 37 * M);
}

#[tokio::test]
async fn write_failures_are_reported_with_a_non_zero_exit() {
    let (h, _m) = mixed("", "").await;
    h.fake.add_fault(jellydemon::fake::Fault {
        method: Some(axum::http::Method::POST),
        path_prefix: Some("/users/".into()),
        skip: 0,
        kind: jellydemon::fake::FaultKind::Status(500),
    });
    let (code, out, err) = h.cli(&["reconcile", "--once"]).await;
    assert_eq!(code, 6, "{out}\n{err}");
    assert!(out.contains("FAILED"), "{out}");
    assert!(out.contains("HTTP 500"), "{out}");
}

#[tokio::test]
async fn jellyfin_down_exits_5_with_an_explanation() {
    let (h, _m) = mixed("", "").await;
    h.fake.fail_all(503);
    let (code, _out, err) = h.cli(&["reconcile", "--once"]).await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("HTTP 503"), "{err}");
}

#[tokio::test]
async fn written_bodies_keep_unknown_fields() {
    let fake = FakeJellyfin::new(common::KEY);
    let id = fake.add_user("future", |p| {
        p.insert(
            "SomeFieldFromJellyfin13".into(),
            serde_json::json!({"nested": [1, 2]}),
        );
    });
    fake.add_session(
        Some(&id),
        Some("203.0.113.1"),
        "Jellyfin Web",
        Some(jellydemon::fake::Playback::direct("x", Some(5 * M), None)),
    );
    let h = Harness::start(fake, "", "").await;
    pass(&h, false).await;
    let posts = h.fake.policy_posts();
    assert_eq!(posts.len(), 1);
    let body: &Value = &posts[0].1;
    assert_eq!(body["SomeFieldFromJellyfin13"]["nested"][1], 2);
    assert_eq!(body["RemoteClientBitrateLimit"], 55 * M);
}

#[tokio::test]
#[ignore = "prints the table for a human to read"]
async fn show_table() {
    let (h, _m) = mixed("algorithm = \"demand\"", "").await;
    let (_, out, err) = h.cli(&["reconcile", "--once"]).await;
    println!("{out}{err}");
    let (_, out, err) = h.cli(&["check"]).await;
    println!("{out}{err}");
}

#[tokio::test]
async fn a_write_goes_ahead_when_our_own_earlier_write_landed_after_the_snapshot() {
    use jellydemon::plan::{Decision, Role};
    use jellydemon::reconcile::{WriteOutcome, apply};
    let (h, m) = mixed("", "").await;
    let ledger = std::sync::Mutex::new(h.ledger());
    // Snapshot said alice is at 0; meanwhile jellydemon itself wrote 30 Mbps.
    ledger
        .lock()
        .unwrap()
        .record_intent(&m.alice, "alice", 0, 30 * M);
    h.fake.set_limit_by_hand(&m.alice, 30 * M);
    let d = Decision {
        user_id: m.alice.clone(),
        user_name: "alice".into(),
        role: Role::Active { streams: 1 },
        endpoints: vec![],
        stream_rate: 0,
        streams: vec![],
        current: 0,
        target: 20 * M,
        reason: "test".into(),
    };
    assert_eq!(apply(&h.client(), &ledger, &d).await, WriteOutcome::Written);
    assert_eq!(h.fake.limit(&m.alice), 20 * M);
    assert_eq!(ledger.lock().unwrap().original(&m.alice), Some(0));

    // A change by hand, on the other hand, is not overwritten by a stale decision.
    h.fake.set_limit_by_hand(&m.alice, 7 * M);
    let d = Decision {
        current: 20 * M,
        target: 25 * M,
        ..d
    };
    assert!(matches!(
        apply(&h.client(), &ledger, &d).await,
        WriteOutcome::Skipped(_)
    ));
    assert_eq!(h.fake.limit(&m.alice), 7 * M);
    assert_eq!(ledger.lock().unwrap().original(&m.alice), Some(7 * M));
}
