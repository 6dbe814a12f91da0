//! `reconcile --once` against the fake Jellyfin: exact limits per algorithm on the mixed
//! scenario, dry run, idempotence, lossless policy writes.

use crate::common::{Harness, M, Mixed, mixed_scenario};
use jellydemon::ids::UserId;
use jellydemon::reconcile::reconcile_once;
use jellydemon::sim::fake::FakeJellyfin;
use serde_json::Value;

async fn mixed(bandwidth: &str, extra: &str) -> (Harness, Mixed) {
    let fake = FakeJellyfin::new(crate::common::KEY);
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
    let ledger = jellydemon::adapters::ledger::LedgerHandle::new(h.ledger());
    reconcile_once(&h.fleet(), &h.settings(), &ledger, dry_run)
        .await
        .unwrap()
}

#[tokio::test]
async fn equal_sets_the_limits_design_implies() {
    let (h, m) = mixed("algorithm = \"equal\"", "").await;
    let before = other_fields(&h.fake);
    let report = pass(&h, false).await;
    // Budget 55 Mbps. Demands (source x 1.1): admin 44.7 but capped at their own 8, alice 22,
    // bob 22.7: they all fit. The admin's 6 Mbps transcode and bob's 4 Mbps one accept
    // pushes: they are raised to 8 and to bob's 20.64 Mbps source; bob's next item may take
    // what the others' demands leave (25). alice (Android TV, cannot be pushed) holds 20; her
    // next item may take what bob's demand and the admin leave, 24.3, which fits beside the
    // 28.64 the others hold: 24 after the step. Idle users (carol
    // on the LAN, dave paused, erin) get the headroom beside the running streams (the
    // pushable ones counted at their share with one more user), keeping a floor free for one
    // more user after them: 9. guest has no remote access: untouched.
    assert_eq!(
        limits(&h, &m),
        [8 * M, 24 * M, 25 * M, 9 * M, 9 * M, 9 * M, 0],
        "{}",
        jellydemon::report::pass_table(&report)
    );
    assert_eq!(report.failed_writes(), 0);
    // Every other policy field is exactly as it was, including ones set to unusual values.
    assert_eq!(other_fields(&h.fake), before);
    // The admin's limit did not change, so it was not written; their stream was pushed.
    assert!(h.fake.policy_posts().iter().all(|(id, _)| id != &m.admin));
    assert_eq!(report.plan.push_count(), 2);
    assert_eq!(h.fake.stream_rate(&m.bob), 20_640_000);
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
    // Weights admin 2 (capped at its own 8), alice 3, bob 1 over 55 Mbps. alice's next item
    // could have 30 (3/4 of 47 = 35.25, but users at 0 are capped by the server-wide 30
    // Mbps), yet only 55 - 8 - 20.64 fits beside the admin and bob once he is raised to his
    // source: 26. bob's next item: what the admin and alice's demand leave, 25. With one more
    // user (weight 1) and one after him the newcomer's share is 8.33: 8 after the step.
    assert_eq!(
        limits(&h, &m),
        [8 * M, 26 * M, 25 * M, 8 * M, 8 * M, 8 * M, 0]
    );
}

#[tokio::test]
async fn demand_sets_the_limits_design_implies() {
    let (h, m) = mixed("algorithm = \"demand\"", "").await;
    h.fake.set_server_limit(30 * M);
    let report = pass(&h, false).await;
    // Demands are the sources x 1.1, not the transcodes' rates: admin 44.7 (capped at 8),
    // alice 22 (19.36 video + 0.64 selected audio; the commentary track is not streamed), bob
    // 22.7. Everyone's next item gets its demand (bob's 22.7 is 22.5 after the step); bob
    // and the admin are raised to what they can use now. Idle users as with `equal`.
    assert_eq!(
        limits(&h, &m),
        [8 * M, 22 * M, 22_500_000, 9 * M, 9 * M, 9 * M, 0],
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
        "24 Mbps",
        "written",
        "pushed up to 20.64 Mbps, its source rate",
        "0 (server default)",
        "capped by the user's own limit",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    // The API key never appears in output.
    assert!(!out.contains(crate::common::KEY) && !err.contains(crate::common::KEY));
    // `reconcile` alone is the same one pass: nothing left to change now.
    let (code, again, err) = h.cli(&["reconcile"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        again.contains("USER") && !again.contains("written"),
        "{again}"
    );
}

#[tokio::test]
async fn ledger_records_originals_before_writing() {
    let (h, m) = mixed("", "").await;
    pass(&h, false).await;
    let ledger = h.ledger();
    assert_eq!(ledger.original(&UserId::new(&m.alice)), Some(0));
    assert_eq!(
        ledger.get(&UserId::new(&m.alice)).unwrap().written(),
        Some(24 * M)
    );
    // Not changed, not recorded.
    assert_eq!(ledger.original(&UserId::new(&m.admin)), None);
    assert_eq!(ledger.original(&UserId::new(&m.guest)), None);
}

#[tokio::test]
async fn a_hand_change_becomes_the_new_original_and_caps_the_user() {
    let (h, m) = mixed("", "").await;
    pass(&h, false).await;
    // The admin caps alice at 10 Mbps by hand in the dashboard.
    h.fake.set_limit_by_hand(&m.alice, 10 * M);
    pass(&h, false).await;
    assert_eq!(h.ledger().original(&UserId::new(&m.alice)), Some(10 * M));
    assert_eq!(
        h.fake.limit(&m.alice),
        10 * M,
        "her own cap is never raised"
    );
    // alice's stream still runs at 20 until her next item: bob's next item gets what the
    // admin and that stream leave, 55 - 8 - 20 = 27 (his fair share beside alice's new cap
    // would be 37).
    assert_eq!(h.fake.limit(&m.bob), 27 * M);
    // The stream running above her new cap was set before it: not a client ignoring limits.
    let report = pass(&h, true).await;
    assert!(report.plan.streams().all(|(_, s)| s.uncontrolled.is_none()));
}

#[tokio::test]
async fn write_failures_are_reported_with_a_non_zero_exit() {
    let (h, _m) = mixed("", "").await;
    h.fake.add_fault(jellydemon::sim::fake::Fault {
        method: Some(axum::http::Method::POST),
        path_prefix: Some("/users/".into()),
        skip: 0,
        kind: jellydemon::sim::fake::FaultKind::Status(500),
    });
    let (code, out, err) = h.cli(&["reconcile", "--once"]).await;
    assert_eq!(code, 6, "{out}\n{err}");
    assert!(out.contains("FAILED (1)"), "{out}");
    assert!(!out.contains("FAILED (2)"), "one cause, one note: {out}");
    // The cause once, under the table, not in every row.
    assert_eq!(out.matches("HTTP 500").count(), 1, "{out}");
    assert!(out.contains("\n(1) "), "{out}");
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
    let fake = FakeJellyfin::new(crate::common::KEY);
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
        Some(jellydemon::sim::fake::Playback::direct(
            "x",
            Some(5 * M),
            None,
        )),
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
    use jellydemon::core::plan::{Decision, Role};
    use jellydemon::write::{WriteOutcome, apply};
    let (h, m) = mixed("", "").await;
    let ledger = jellydemon::adapters::ledger::LedgerHandle::new(h.ledger());
    // Snapshot said alice is at 0; meanwhile jellydemon itself wrote 30 Mbps.
    let _ =
        ledger.change(|l| l.record_intent(&UserId::new(&m.alice), &"alice".into(), 0, 30 * M, 0));
    h.fake.set_limit_by_hand(&m.alice, 30 * M);
    let d = Decision {
        user_id: UserId::new(&m.alice),
        user_name: "alice".into(),
        role: Role::Active { streams: 1 },
        endpoints: vec![],
        stream_rate: 0,
        streams: vec![],
        current: 0,
        target: 20 * M,
        reason: jellydemon::core::plan::Reason::Pinned {
            pin: 20_000_000,
            by: "test".into(),
        },
    };
    assert_eq!(apply(&h.fleet(), &ledger, &d).await, WriteOutcome::Written);
    assert_eq!(h.fake.limit(&m.alice), 20 * M);
    assert_eq!(ledger.read(|l| l.original(&UserId::new(&m.alice))), Some(0));

    // A change by hand, on the other hand, is not overwritten by a stale decision.
    h.fake.set_limit_by_hand(&m.alice, 7 * M);
    let d = Decision {
        current: 20 * M,
        target: 25 * M,
        ..d
    };
    assert!(matches!(
        apply(&h.fleet(), &ledger, &d).await,
        WriteOutcome::Skipped(_)
    ));
    assert_eq!(h.fake.limit(&m.alice), 7 * M);
    assert_eq!(
        ledger.read(|l| l.original(&UserId::new(&m.alice))),
        Some(7 * M)
    );
}

/// The `SetMaxStreamingBitrate` bitrates sent so far, with their session.
fn pushes(fake: &FakeJellyfin) -> Vec<(String, i64)> {
    fake.requests()
        .iter()
        .filter(|r| r.method == axum::http::Method::POST && r.status == 204)
        .filter_map(|r| {
            let lower = r.path.to_ascii_lowercase();
            let session = lower.strip_prefix("/sessions/")?.strip_suffix("/command")?;
            let bitrate = r.body.as_ref()?["Arguments"]["Bitrate"]
                .as_str()?
                .parse()
                .ok()?;
            Some((session.to_string(), bitrate))
        })
        .collect()
}

#[tokio::test]
async fn a_push_never_goes_above_the_new_limit_and_fresh_passes_do_not_repeat_it() {
    use jellydemon::sim::fake::Playback;
    let fake = FakeJellyfin::new(crate::common::KEY);
    let alice = fake.add_user("alice", |_| {});
    let bob = fake.add_user("bob", |_| {});
    // A remux on a client that takes pushes, and a 40 Mbps stream on one that does not.
    let remux = fake.add_session(Some(&alice), Some("203.0.113.5"), "Jellyfin Web", None);
    fake.start_playback(&remux, Playback::direct("Remux", Some(70 * M), None));
    let tv = fake.add_session(
        Some(&bob),
        Some("198.51.100.9"),
        "Jellyfin Android TV",
        None,
    );
    fake.start_playback(&tv, Playback::direct("Film", Some(40 * M), None));
    let h = Harness::with_budget(fake, 95, 5, "", "").await;

    let (code, out, err) = h.cli(&["reconcile"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let sent = pushes(&h.fake);
    assert_eq!(sent.len(), 1, "{sent:?}\n{out}");
    let limit = h.fake.limit(&alice);
    assert_eq!(
        sent[0],
        (remux.clone(), limit),
        "pushed to her new limit\n{out}"
    );
    assert_eq!(h.fake.stream_rate(&alice), limit);
    assert!(
        out.contains(&format!("pushed down to {}", limit / M)),
        "{out}"
    );

    // Fresh processes find the stream at the rate they would push it to: no restart.
    for _ in 0..2 {
        let (code, out, err) = h.cli(&["reconcile"]).await;
        assert_eq!(code, 0, "{out}\n{err}");
        assert_eq!(pushes(&h.fake).len(), 1, "pushed again:\n{out}");
    }
}

#[tokio::test]
async fn a_paused_stream_shows_as_paused_as_check_says() {
    let (h, _m) = mixed("", "").await;
    let (code, out, err) = h.cli(&["reconcile", "--dry-run"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let dave = out.lines().find(|l| l.starts_with("dave ")).unwrap();
    assert!(
        dave.contains("203.0.113.9 (paused)") && dave.contains("10.64 Mbps (paused)"),
        "{out}"
    );
    let (_, check, _) = h.cli(&["check"]).await;
    assert!(check.contains("paused, 10.64 Mbps"), "{check}");
}

#[tokio::test]
async fn a_plan_from_stale_users_never_takes_our_own_old_value_for_a_hand_change() {
    use jellydemon::core::plan::Memory;
    use jellydemon::snapshot::Snapshot;
    let (h, m) = mixed("", "").await;
    h.fake.set_limit_by_hand(&m.bob, 30 * M);
    let settings = h.settings();
    let ledger = jellydemon::adapters::ledger::LedgerHandle::new(h.ledger());
    reconcile_once(&h.fleet(), &settings, &ledger, false)
        .await
        .unwrap();
    let bob = UserId::new(&m.bob);
    assert_eq!(ledger.read(|l| l.original(&bob)), Some(30 * M));
    // The engine's model, read now; then Jellyfin cannot be read while jellydemon writes
    // bob nine other limits (his value in the model leaves the ledger's recent ones).
    let stale = Snapshot::read(&h.fleet(), &settings).await.unwrap();
    for i in 1..=9 {
        let _ = ledger.change(|l| {
            l.record_intent(&bob, &"bob".into(), (2 + i) * M + 123, (3 + i) * M + 123, 0)
        });
        h.fake.set_limit_by_hand(&m.bob, (3 + i) * M + 123);
    }
    let (_, hand) = stale
        .plan(
            false,
            &ledger,
            &Memory::default(),
            jellydemon::core::plan::memory::CLOCK_START,
            settings.budget().budget_bps,
            &jellydemon::core::control::Overrides::NONE,
            &[],
            &settings,
            false,
        )
        .unwrap();
    assert!(hand.is_empty(), "{hand:?}");
    assert_eq!(ledger.read(|l| l.original(&bob)), Some(30 * M));
}

#[tokio::test]
async fn the_table_says_which_limits_force_a_transcode_beyond_the_capacity() {
    let fake = FakeJellyfin::new(crate::common::KEY);
    crate::common::two_remuxes(&fake);
    let h = Harness::start(fake, "", "[transcoding]\ncapacity = 1").await;
    let table = jellydemon::report::pass_table(&pass(&h, true).await);
    assert!(
        table.contains(
            "video transcodes: 2 under these limits, the server runs 1 stream at most: beyond \
             its capacity\n"
        ),
        "{table}"
    );
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("warning: ")
                && l.contains("the limit forces a transcode beyond capacity"))
            .count(),
        2,
        "{table}"
    );
}
