//! Is it healthy: `/healthz` while Jellyfin is unreachable and until it is first reached,
//! the `healthcheck` command, and the metrics as Prometheus text.

use std::time::Duration;

use crate::common::{Harness, KEY, M, event, eventually};
use crate::daemon::two_users;
use axum::http::Method;
use jellydemon::sim::fake::{FakeJellyfin, Playback};
use reqwest::StatusCode;

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
