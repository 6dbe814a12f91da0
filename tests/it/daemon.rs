//! `jellydemon run` against the fake Jellyfin: webhooks trigger coalesced recomputes, the poll
//! repairs missed events, faults do not stop it, shutdown restores the originals.

use std::time::Duration;

use crate::common::bin::{Bin, Running};
use crate::common::{Harness, KEY, M, event, eventually, mixed_scenario};
use axum::http::Method;
use jellydemon::ids::UserId;
use jellydemon::sim::fake::{FakeJellyfin, Playback};
use reqwest::StatusCode;
use rustix::process::Signal;

async fn two_users() -> (Harness, String, String) {
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
async fn healthz_fails_when_jellyfin_is_unreachable_too_long() {
    let (h, _alice, _bob) = two_users().await;
    let d = h
        .daemon("poll_interval = \"1s\"\nunhealthy_after = \"1s\"\nrestore_on_exit = false")
        .await;
    let r = d
        .http
        .get(format!("{}/healthz", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    h.fake.fail_all(503);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = d
            .http
            .get(format!("{}/healthz", d.url))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        let error = body["last_poll_error"].as_str().unwrap_or("").to_string();
        if status == StatusCode::SERVICE_UNAVAILABLE && error.contains("503") {
            assert_eq!(body["status"], "unhealthy");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never unhealthy");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    d.stop().await;
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

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_carry_the_figures() {
    let (h, alice, bob) = two_users().await;
    let d = h
        .daemon("poll_interval = \"1h\"\ndebounce = \"50ms\"")
        .await;
    eventually("startup", || h.fake.limit(&bob) == 55 * M).await;
    let s = h
        .fake
        .add_session(Some(&alice), Some("203.0.113.5"), "Jellyfin Web", None);
    h.fake
        .start_playback(&s, Playback::direct("Film", Some(8 * M), None));
    d.hook(&event("PlaybackStart", &alice, &s)).await;
    d.hook(&event("PlaybackProgress", &alice, &s)).await;
    d.hook("garbage").await;
    eventually("bob lowered", || h.fake.limit(&bob) == 23 * M).await;
    d.wait_for(|st| st["writes"]["pending"] == 0).await;

    let r = d
        .http
        .get(format!("{}/metrics", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = r.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"));
        match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name} is not a number"),
        }
    };
    assert_eq!(value("jellydemon_budget_bps", &[]), 55e6);
    assert_eq!(value("jellydemon_claimants", &[]), 1.0);
    assert_eq!(value("jellydemon_held_bps", &[]), 8e6);
    assert_eq!(value("jellydemon_streaming_bps", &[]), 8e6);
    assert_eq!(value("jellydemon_uncontrolled_streams", &[]), 0.0);
    assert_eq!(value("jellydemon_item_starts_total", &[]), 1.0);
    assert_eq!(value("jellydemon_overloaded", &[]), 0.0);
    assert_eq!(
        value(
            "jellydemon_user_limit_bps",
            &[("user", "alice"), ("role", "active")]
        ),
        55e6
    );
    assert_eq!(
        value(
            "jellydemon_user_limit_bps",
            &[("user", "bob"), ("role", "idle")]
        ),
        23e6
    );
    assert_eq!(
        value("jellydemon_user_stream_rate_bps", &[("user", "alice")]),
        8e6
    );
    assert!(value("jellydemon_policy_writes_total", &[]) >= 3.0);
    assert_eq!(value("jellydemon_policy_write_failures_total", &[]), 0.0);
    assert_eq!(
        value(
            "jellydemon_webhook_events_total",
            &[("type", "PlaybackStart"), ("result", "accepted")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "jellydemon_webhook_events_total",
            &[("type", "PlaybackProgress"), ("result", "ignored")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "jellydemon_webhook_events_total",
            &[("type", "invalid"), ("result", "rejected")]
        ),
        1.0
    );
    assert!(value("jellydemon_polls_total", &[("result", "ok")]) >= 2.0);
    assert!(value("jellydemon_last_successful_poll_timestamp_seconds", &[]) > 1.7e9);
    assert!(text.contains("jellydemon_poll_duration_seconds_bucket"));
    d.stop().await;
}

/// `jellydemon healthcheck` exits 0 against a healthy daemon and 1 when nothing answers or the
/// daemon is unhealthy (Jellyfin failing for longer than `unhealthy_after`).
#[tokio::test]
async fn the_healthcheck_command_reports_the_daemons_health() {
    let fake = FakeJellyfin::new(KEY);
    fake.add_user("alice", |_| {});
    let h = Harness::start(fake, "", "").await;
    let d = h
        .daemon("unhealthy_after = \"1s\"\npoll_interval = \"1s\"")
        .await;
    let addr = d.url.trim_start_matches("http://").to_string();
    let (code, out, err) = h.cli(&["healthcheck", "--address", &addr]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("healthy:"), "{out}");

    h.fake.fail_all(500);
    let mut last = (0, String::new());
    for _ in 0..50 {
        let (code, _, err) = h.cli(&["healthcheck", "--address", &addr]).await;
        last = (code, err);
        if last.0 == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last.0, 1, "{}", last.1);
    assert!(last.1.contains("503"), "{}", last.1);
    d.stop().await;

    // Nothing listens there any more.
    let (code, _, err) = h
        .cli(&["healthcheck", "--address", &addr, "--timeout-secs", "2"])
        .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no answer"), "{err}");
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

#[tokio::test]
async fn healthz_fails_until_jellyfin_is_first_reached() {
    let (h, _alice, bob) = two_users().await;
    h.fake.fail_all(503);
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    let settings = jellydemon::config::Settings::from_toml_str(&format!(
        "{text}\n[daemon]\npoll_interval = \"1s\"\nrestore_on_exit = false\n"
    ))
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(jellydemon::daemon::run(
        std::sync::Arc::new(settings),
        listener,
        shutdown.clone(),
    ));
    let healthz = || async {
        let r = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap();
        let code = r.status();
        (code, r.json::<serde_json::Value>().await.unwrap())
    };
    // Failing polls from the start: unhealthy at once, not after a grace period.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (code, body) = healthz().await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["jellyfin_reached"], false);
        if h.fake.count(&Method::GET, "/Sessions") > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never polled");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let probe = jellydemon::healthcheck::probe(addr, std::time::Duration::from_secs(2)).await;
    assert!(probe.is_err(), "{probe:?}");
    // Reached: healthy.
    h.fake.clear_faults();
    eventually("bob written", || h.fake.limit(&bob) != 0).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while healthz().await.0 != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "never healthy");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(healthz().await.1["jellyfin_reached"], true);
    shutdown.cancel();
    task.await.unwrap().unwrap();
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
    let shown = jellydemon::plan::fmt_mbps(erin_limit as u64);
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
