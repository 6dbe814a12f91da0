//! `jellydemon run` against the fake Jellyfin: webhooks trigger coalesced recomputes, the poll
//! repairs missed events, faults do not stop it, shutdown restores the originals.

use std::time::Duration;

use crate::common::{Harness, KEY, M, event, eventually, mixed_scenario};
use axum::http::Method;
use jellydemon::ids::UserId;
use jellydemon::sim::fake::{FakeJellyfin, Playback};
use reqwest::StatusCode;

pub(crate) async fn two_users() -> (Harness, String, String) {
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    let bob = fake.add_user("bob", |_| {});
    (Harness::start(fake, "", "").await, alice, bob)
}

#[tokio::test]
async fn a_playback_start_webhook_leads_to_new_limits() {
    let (h, alice, bob) = two_users().await;
    let d = h
        .daemon("poll_interval = \"1h\"\ndebounce = \"50ms\"")
        .await;
    // Start-up pass: nobody streams, both idle users are held at the join share (the budget).
    eventually("startup writes", || h.fake.limit(&alice) == 55 * M).await;
    let polls_before = h.fake.count(&Method::GET, "/Sessions");

    // alice starts a remote stream; the plugin tells us.
    let s = h
        .fake
        .add_session(Some(&alice), Some("203.0.113.5"), "Jellyfin Web", None);
    h.fake
        .start_playback(&s, Playback::direct("Film", Some(8 * M), None));
    let r = d.hook(&event("PlaybackStart", &alice, &s)).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // alice is active alone: her next item may have all 55 Mbps. bob (idle, never seen
    // streaming) gets the share he would have with one more user after him, (55 - 8.8) / 2.
    eventually("bob lowered", || h.fake.limit(&bob) == 23 * M).await;
    assert_eq!(h.fake.limit(&alice), 55 * M);
    assert_eq!(h.fake.count(&Method::GET, "/Sessions"), polls_before + 1);
    let st = d.state().await;
    assert_eq!(st["last_decision"]["trigger"], "webhook");
    assert_eq!(st["events"]["PlaybackStart"], 1);
    d.stop().await;
}

#[tokio::test]
async fn a_burst_of_events_costs_one_read_and_only_the_changed_writes() {
    let fake = FakeJellyfin::new(KEY);
    let ids = mixed_scenario(&fake);
    let h = Harness::start(fake, "", "").await;
    let d = h
        .daemon("poll_interval = \"1h\"\ndebounce = \"400ms\"")
        .await;
    d.wait_for(|s| s["writes"]["pending"] == 0 && s["writes"]["written"].as_u64() > Some(0))
        .await;
    let reads = h.fake.count(&Method::GET, "/Sessions");
    let posts = h.fake.policy_posts().len();

    // bob's stream stops for real; 200 events arrive at once, mostly progress noise.
    let bob_session = h
        .fake
        .sessions()
        .into_iter()
        .find(|s| s.user_id.as_deref() == Some(ids.bob.as_str()))
        .unwrap();
    h.fake.stop_playback(&bob_session.id);
    let mut bodies = Vec::new();
    for i in 0..200 {
        bodies.push(match i % 10 {
            0 => event("PlaybackStop", &ids.bob, &bob_session.id),
            1 => event("PlaybackStart", &ids.alice, "aa"),
            _ => event("PlaybackProgress", &ids.alice, "aa"),
        });
    }
    let responses = futures_join(&d, bodies).await;
    assert!(responses.iter().all(|s| *s == StatusCode::ACCEPTED));
    d.wait_for(|s| s["poll"]["recomputes"].as_u64() >= Some(2) && s["writes"]["pending"] == 0)
        .await;
    let extra_reads = h.fake.count(&Method::GET, "/Sessions") - reads;
    assert!(
        (1..=2).contains(&extra_reads),
        "{extra_reads} /Sessions reads for one burst"
    );
    // Only users whose value changed were written: bob stopped, so alice (23.5 -> 47) and the
    // idle users' join share changed; the admin (own cap, unchanged) was not written.
    let new_posts: Vec<String> = h.fake.policy_posts()[posts..]
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!new_posts.contains(&ids.admin));
    assert!(new_posts.contains(&ids.alice));
    let mut unique = new_posts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        new_posts.len(),
        "a user written twice: {new_posts:?}"
    );
    assert_eq!(h.fake.limit(&ids.alice), 47 * M);
    let st = d.state().await;
    assert_eq!(st["events"]["PlaybackProgress"], 160);
    d.stop().await;
}

async fn futures_join(d: &crate::common::Daemon, bodies: Vec<String>) -> Vec<StatusCode> {
    let mut set = tokio::task::JoinSet::new();
    for b in bodies {
        let http = d.http.clone();
        let url = format!("{}/hook", d.url);
        set.spawn(async move {
            http.post(url)
                .header("X-Jellydemon-Token", crate::common::HOOK_TOKEN)
                .body(b)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    set.join_all().await
}

#[tokio::test]
async fn a_missed_playback_stop_is_repaired_by_the_poll() {
    let (h, alice, bob) = two_users().await;
    let s = h
        .fake
        .add_session(Some(&alice), Some("203.0.113.5"), "Jellyfin Web", None);
    h.fake
        .start_playback(&s, Playback::direct("Film", Some(8 * M), None));
    let d = h
        .daemon("poll_interval = \"1s\"\ndebounce = \"50ms\"")
        .await;
    eventually("bob lowered", || h.fake.limit(&bob) == 23 * M).await;
    // The client vanishes without a PlaybackStop.
    h.fake.remove_session(&s);
    eventually("bob back to the join share", || {
        h.fake.limit(&bob) == 55 * M
    })
    .await;
    assert_eq!(d.state().await["last_decision"]["trigger"], "poll");
    d.stop().await;
}

#[tokio::test]
async fn jellyfin_failing_or_hanging_does_not_stop_the_daemon_and_it_converges() {
    for fault in ["500", "hang"] {
        let (h, alice, bob) = two_users().await;
        let d = h
            .daemon("poll_interval = \"2s\"\ndebounce = \"50ms\"\nrestore_on_exit = false")
            .await;
        eventually("startup", || h.fake.limit(&bob) == 55 * M).await;
        match fault {
            "500" => h.fake.fail_all(500),
            _ => h.fake.add_fault(jellydemon::sim::fake::Fault {
                method: None,
                path_prefix: None,
                skip: 0,
                kind: jellydemon::sim::fake::FaultKind::Hang,
            }),
        }
        let s = h
            .fake
            .add_session(Some(&alice), Some("203.0.113.5"), "Jellyfin Web", None);
        h.fake
            .start_playback(&s, Playback::direct("Film", Some(8 * M), None));
        assert_eq!(
            d.hook(&event("PlaybackStart", &alice, &s)).await.status(),
            StatusCode::ACCEPTED
        );
        d.wait_for(|st| st["poll"]["consecutive_failures"].as_u64() >= Some(1))
            .await;
        // Still answering.
        let r = d
            .http
            .get(format!("{}/healthz", d.url))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "a short outage is not unhealthy"
        );
        h.fake.clear_faults();
        eventually("converged after recovery", || h.fake.limit(&bob) == 23 * M).await;
        assert_eq!(h.fake.limit(&alice), 55 * M);
        d.stop().await;
    }
}

#[tokio::test]
async fn the_hook_checks_the_secret_the_size_and_the_body() {
    let (h, alice, _bob) = two_users().await;
    let d = h.daemon("max_hook_body_bytes = 2048").await;
    let post = |token: Option<&str>, body: String| {
        let mut r = d.http.post(format!("{}/hook", d.url)).body(body);
        if let Some(t) = token {
            r = r.header("X-Jellydemon-Token", t);
        }
        r.send()
    };
    let ok = event("PlaybackStart", &alice, "s1");
    assert_eq!(
        post(None, ok.clone()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(Some("wrong-secret-0123456789"), ok.clone())
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let bearer = d
        .http
        .post(format!("{}/hook", d.url))
        .header(
            "Authorization",
            format!("Bearer {}", crate::common::HOOK_TOKEN),
        )
        .body(ok.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::ACCEPTED);

    let bad = d.hook("{\"NotificationType\": ").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let msg: serde_json::Value = bad.json().await.unwrap();
    assert!(msg["error"].as_str().unwrap().contains("not JSON"), "{msg}");
    let bad = d.hook("{\"UserId\": \"x\"}").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let msg: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(msg["error"], "missing NotificationType");
    let bad = d.hook("{\"NotificationType\":\"PlaybackStart\"}").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let msg: serde_json::Value = bad.json().await.unwrap();
    assert!(
        msg["error"]
            .as_str()
            .unwrap()
            .starts_with("PlaybackStart without a UserId"),
        "{msg}"
    );

    let other = d.hook("{\"NotificationType\": \"ItemAdded\"}").await;
    assert_eq!(other.status(), StatusCode::ACCEPTED);
    assert_eq!(
        other.json::<serde_json::Value>().await.unwrap()["status"],
        "ignored"
    );

    let big = format!(
        "{{\"NotificationType\":\"PlaybackStart\",\"Name\":\"{}\"}}",
        "x".repeat(4096)
    );
    assert_eq!(d.hook(&big).await.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let st = d.state().await;
    assert_eq!(st["events"]["unauthorized"], 2);
    // The malformed ones and the oversized one.
    assert_eq!(st["events"]["rejected"], 4);
    d.stop().await;
}

#[tokio::test]
async fn reconcile_only_mode_polls_and_refuses_webhooks() {
    let (h, alice, bob) = two_users().await;
    let d = h
        .daemon("mode = \"reconcile-only\"\npoll_interval = \"1s\"")
        .await;
    let r = d.hook(&event("PlaybackStart", &alice, "s")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let s = h
        .fake
        .add_session(Some(&alice), Some("203.0.113.5"), "Jellyfin Web", None);
    h.fake
        .start_playback(&s, Playback::direct("Film", Some(8 * M), None));
    eventually("the poll notices alice", || h.fake.limit(&bob) == 23 * M).await;
    assert_eq!(d.state().await["mode"], "reconcile-only");
    d.stop().await;
}

#[tokio::test]
async fn a_stream_over_the_budget_is_pushed_down_if_its_client_supports_it() {
    let (h, alice, bob) = two_users().await;
    // alice runs 40 Mbps on the web client (which lists SetMaxStreamingBitrate) and bob 30
    // Mbps on Android TV (which does not): 70 on a 55 Mbps budget.
    let web = h
        .fake
        .add_session(Some(&alice), Some("203.0.113.5"), "Jellyfin Web", None);
    h.fake
        .start_playback(&web, Playback::direct("A", Some(40 * M), None));
    let tv = h
        .fake
        .add_session(Some(&bob), Some("203.0.113.6"), "Jellyfin Android TV", None);
    h.fake
        .start_playback(&tv, Playback::direct("B", Some(30 * M), None));
    let d = h.daemon("debounce = \"50ms\"").await;
    // The fair share is 27.5 each. bob's stream keeps its 30 until his next item, so alice's
    // is pushed down to the 25 left beside it, and her limit is that; bob's next item gets
    // his share.
    eventually("limits written", || {
        h.fake.limit(&alice) == 25 * M && h.fake.limit(&bob) == 27_500_000
    })
    .await;
    eventually("push sent", || {
        h.fake
            .count(&Method::POST, &format!("/Sessions/{web}/Command"))
            == 1
    })
    .await;
    let cmd = h
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/Command"))
        .unwrap();
    assert_eq!(
        cmd.body.unwrap(),
        serde_json::json!({"Name": "SetMaxStreamingBitrate", "Arguments": {"Bitrate": "25000000"}})
    );
    assert_eq!(h.fake.stream_rate(&alice), 25 * M);
    assert_eq!(
        h.fake
            .count(&Method::POST, &format!("/Sessions/{tv}/Command")),
        0
    );
    let st = d.state().await;
    assert_eq!(st["writes"]["pushes"]["down"], 1);
    assert_eq!(st["writes"]["pushes"]["up"], 0);
    d.stop().await;
}

#[tokio::test]
async fn a_dry_run_beside_the_daemon_decides_as_the_daemon_does() {
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    let erin = fake.add_user("erin", |_| {});
    let _bob = fake.add_user("bob", |_| {});
    let tv = fake.add_session(
        Some(&alice),
        Some("203.0.113.5"),
        "Jellyfin Android TV",
        None,
    );
    fake.start_playback(&tv, Playback::direct("Film", Some(12 * M), None));
    // erin watched an episode on the web client (it takes pushes), then stopped.
    let web = fake.add_session(Some(&erin), Some("198.51.100.7"), "Jellyfin Web", None);
    fake.start_playback(&web, Playback::direct("Episode", Some(10 * M), None));
    let h = Harness::start(fake, "", "").await;
    let d = h
        .daemon("poll_interval = \"1s\"\ndebounce = \"20ms\"\nrestore_on_exit = false")
        .await;
    eventually("erin managed", || h.fake.limit(&erin) != 0).await;
    h.fake.stop_playback(&web);
    assert_eq!(
        d.hook(&event("PlaybackStop", &erin, &web)).await.status(),
        StatusCode::ACCEPTED
    );
    // Settled: two polls without a write.
    let settled = |st: &serde_json::Value| st["poll"]["polls"].as_u64().unwrap_or(0);
    let mut last = (h.fake.policy_posts().len(), settled(&d.state().await));
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = (h.fake.policy_posts().len(), settled(&d.state().await));
        if now.0 == last.0 && now.1 >= last.1 + 2 {
            break;
        }
        if now.0 != last.0 {
            last = now;
        }
    }
    let erin_limit = h.fake.limit(&erin);
    let (code, out, err) = h.cli(&["reconcile", "--dry-run"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("erin "))
        .unwrap_or_else(|| panic!("no row for erin:\n{out}"));
    let shown = jellydemon::core::rate::fmt_mbps(erin_limit as u64);
    assert!(
        row.matches(&shown).count() == 2,
        "the daemon holds erin at {shown}, the dry run says:\n{out}"
    );
    d.stop().await;
}

/// The reaction path: a webhook's pass reads `/Sessions` alone (the users and the server's
/// settings are the poll's, kept current by the writer's reports), unless a session names a
/// user the daemon does not know yet; then it reads the users too.
#[tokio::test]
async fn a_webhooks_pass_reads_the_sessions_alone_unless_a_user_is_new() {
    let (h, alice, bob) = two_users().await;
    let d = h
        .daemon("poll_interval = \"1h\"\ndebounce = \"50ms\"")
        .await;
    eventually("startup writes", || h.fake.limit(&bob) == 55 * M).await;
    let count = |path: &str| h.fake.count(&Method::GET, path);
    let (sessions, users, config) = (
        count("/Sessions"),
        count("/Users"),
        count("/System/Configuration"),
    );
    let s = h
        .fake
        .add_session(Some(&alice), Some("203.0.113.5"), "Jellyfin Web", None);
    h.fake
        .start_playback(&s, Playback::direct("Film", Some(8 * M), None));
    d.hook(&event("PlaybackStart", &alice, &s)).await;
    // bob's limit follows from the model's users, as the writer left them: 23 Mbps.
    eventually("bob lowered", || h.fake.limit(&bob) == 23 * M).await;
    assert_eq!(count("/Sessions"), sessions + 1);
    assert_eq!(count("/Users"), users, "the users are the poll's");
    assert_eq!(count("/System/Configuration"), config);

    // carol's account is newer than the model: her session makes the pass read everything.
    let carol = h.fake.add_user("carol", |_| {});
    let c = h
        .fake
        .add_session(Some(&carol), Some("203.0.113.6"), "Jellyfin Web", None);
    h.fake
        .start_playback(&c, Playback::direct("Film", Some(8 * M), None));
    d.hook(&event("PlaybackStart", &carol, &c)).await;
    d.wait_for(|s| {
        s["last_decision"]["trigger"] == "webhook"
            && s["last_decision"]["users"]
                .as_array()
                .is_some_and(|u| u.iter().any(|u| u["user"] == "carol" && u["streams"] == 1))
    })
    .await;
    assert_eq!(count("/Users"), users + 1);
    assert_eq!(count("/System/Configuration"), config + 1);
    d.stop().await;
}

/// A limit changed by hand between polls is found by the writer's read just before its next
/// write for that user: it is not overwritten, becomes the original, and is notified as the
/// poll would have.
#[tokio::test]
async fn a_hand_change_found_by_the_writer_is_kept_and_notified() {
    let (notes, notes_url) = crate::notify::Receiver::start(crate::notify::Mode::Ok, false).await;
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    let bob = fake.add_user("bob", |_| {});
    let h = Harness::start(
        fake,
        "",
        &format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{notes_url}/hook\"\n\
             events = [\"limit_changed_by_hand\"]\n"
        ),
    )
    .await;
    let d = h
        .daemon("poll_interval = \"1h\"\ndebounce = \"50ms\"")
        .await;
    eventually("startup writes", || h.fake.limit(&bob) == 55 * M).await;
    // An admin sets bob's limit by hand; then alice starts, which would lower bob's.
    h.fake.set_limit_by_hand(&bob, 7 * M);
    let s = h
        .fake
        .add_session(Some(&alice), Some("203.0.113.5"), "Jellyfin Web", None);
    h.fake
        .start_playback(&s, Playback::direct("Film", Some(8 * M), None));
    d.hook(&event("PlaybackStart", &alice, &s)).await;
    eventually("the hand change is notified", || {
        notes
            .seen()
            .iter()
            .any(|(_, _, b)| b["event"] == "limit_changed_by_hand" && b["data"]["new_bps"] == 7 * M)
    })
    .await;
    assert_eq!(h.fake.limit(&bob), 7 * M, "not overwritten");
    assert_eq!(
        h.ledger().original(&UserId::new(&bob)),
        Some(7 * M),
        "the new original"
    );
    d.stop().await;
    assert_eq!(h.fake.limit(&bob), 7 * M);
}
