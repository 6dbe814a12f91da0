//! Notifications against local receivers (one per kind, bound to port 0) that record the exact
//! requests and can answer errors, 429 with `retry_after`, or hang: `notify --test` reaches
//! every kind with its shape; in the daemon an overload is notified once when it starts and
//! once when it clears, the default events leave out start and stop, and a target that hangs
//! delays neither another target nor a webhook-triggered write; a limit changed by hand names
//! the user as an alias when anonymizing; no secret reaches the logs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::common::{
    Harness, KEY, M, assert_originals, event, eventually, limits_now, mixed_scenario,
};
use jellydemon::sim::fake::{FakeJellyfin, Playback};

/// How a receiver answers.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    /// 200 (204 when `no_content`).
    Ok,
    /// 429 with `retry_after` the first time, then 204.
    RateLimitedOnce,
    /// Never answers.
    Hang,
}

/// A local notification receiver that records what it gets (also used by the leak test).
#[derive(Clone)]
pub(crate) struct Receiver {
    mode: Mode,
    no_content: bool,
    seen: Arc<Mutex<Vec<(String, HeaderMap, Value)>>>,
    calls: Arc<AtomicU32>,
}

impl Receiver {
    pub(crate) async fn start(mode: Mode, no_content: bool) -> (Receiver, String) {
        let r = Receiver {
            mode,
            no_content,
            seen: Arc::default(),
            calls: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, url)
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn seen(&self) -> Vec<(String, HeaderMap, Value)> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn titles(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|(_, _, b)| b["title"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

async fn receive(
    State(r): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let n = r.calls.fetch_add(1, Ordering::SeqCst);
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    r.seen
        .lock()
        .unwrap()
        .push((uri.path().to_string(), headers, json));
    match r.mode {
        Mode::Hang => std::future::pending::<Response>().await,
        Mode::RateLimitedOnce if n == 0 => (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"message": "You are being rate limited.", "retry_after": 0.3, "global": false})),
        )
            .into_response(),
        _ if r.no_content => StatusCode::NO_CONTENT.into_response(),
        _ => axum::Json(json!({"id": 1})).into_response(),
    }
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn notify_test_reaches_every_kind_with_its_shape() {
    let (ntfy, ntfy_url) = Receiver::start(Mode::Ok, false).await;
    let (gotify, gotify_url) = Receiver::start(Mode::Ok, false).await;
    let (discord, discord_url) = Receiver::start(Mode::RateLimitedOnce, true).await;
    let (apprise, apprise_url) = Receiver::start(Mode::Ok, false).await;
    let (hook, hook_url) = Receiver::start(Mode::Ok, false).await;
    let fake = FakeJellyfin::new(KEY);
    let h = Harness::start(
        fake,
        "",
        &format!(
            r#"
[[notify]]
name = "phone"
kind = "ntfy"
url = "{ntfy_url}"
topic = "jd-secret-topic"
token = "tk_secret_token"
[[notify]]
kind = "gotify"
url = "{gotify_url}"
token = "GotifyAppSecret"
[[notify]]
kind = "discord"
url = "{discord_url}/api/webhooks/123/discord-secret"
[[notify]]
kind = "apprise"
url = "{apprise_url}"
urls = ["tgram://bot-secret/chat"]
[[notify]]
name = "home assistant"
kind = "webhook"
url = "{hook_url}/api/webhook/ha-secret"
headers = {{ Authorization = "Bearer ha-secret-token" }}
"#
        ),
    )
    .await;
    let (code, out, err) = h.cli(&["notify", "--test"]).await;
    // Discord answered 429 to its one try: reported, not hidden.
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("ok   phone (ntfy): delivered (HTTP 200)"),
        "{out}"
    );
    assert!(out.contains("ok   gotify (gotify): delivered"), "{out}");
    assert!(
        out.contains("FAIL discord (discord): rate limited (429)"),
        "{out}"
    );
    assert!(out.contains("ok   apprise (apprise): delivered"), "{out}");
    assert!(
        out.contains("ok   home assistant (webhook): delivered"),
        "{out}"
    );
    // Its second try goes through.
    let (code, out, _) = h.cli(&["notify", "--test", "--target", "discord"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("delivered (HTTP 204)"), "{out}");
    let (code, _, err) = h.cli(&["notify", "--test", "--target", "pager"]).await;
    assert_eq!(code, 3);
    assert!(
        err.contains(
            "no target named \"pager\" (targets: phone, gotify, discord, apprise, home assistant)"
        ),
        "{err}"
    );
    for secret in [
        "jd-secret-topic",
        "tk_secret_token",
        "GotifyAppSecret",
        "discord-secret",
        "bot-secret",
        "ha-secret",
    ] {
        assert!(!out.contains(secret) && !err.contains(secret), "{secret}");
    }

    let (path, headers, body) = ntfy.seen()[0].clone();
    assert_eq!(path, "/");
    assert_eq!(header(&headers, "authorization"), "Bearer tk_secret_token");
    assert_eq!(header(&headers, "content-type"), "application/json");
    assert_eq!(body["topic"], "jd-secret-topic");
    assert_eq!(body["title"], "jellydemon test notification");
    assert!(body["message"].is_string() && body["priority"].is_number() && body["tags"].is_array());

    let (path, headers, body) = gotify.seen()[0].clone();
    assert_eq!(path, "/message");
    assert_eq!(header(&headers, "x-gotify-key"), "GotifyAppSecret");
    assert!((0..=10).contains(&body["priority"].as_i64().unwrap()));

    let (path, _, body) = discord.seen()[0].clone();
    assert_eq!(path, "/api/webhooks/123/discord-secret");
    let embed = &body["embeds"][0];
    assert_eq!(embed["title"], "jellydemon test notification");
    assert!(embed["description"].as_str().unwrap().chars().count() <= 4096);
    assert!(embed["color"].is_number());

    let (path, _, body) = apprise.seen()[0].clone();
    assert_eq!(path, "/notify/");
    assert_eq!(body["urls"], "tgram://bot-secret/chat");
    assert_eq!(body["type"], "info");
    assert!(body["body"].is_string());

    let (path, headers, body) = hook.seen()[0].clone();
    assert_eq!(path, "/api/webhook/ha-secret");
    assert_eq!(header(&headers, "authorization"), "Bearer ha-secret-token");
    assert_eq!(body["event"], "test");
    for k in ["severity", "title", "message", "time", "data"] {
        assert!(!body[k].is_null(), "{k}: {body}");
    }

    // check validates them without sending anything.
    let before: usize = [&ntfy, &gotify, &discord, &apprise, &hook]
        .iter()
        .map(|r| r.seen().len())
        .sum();
    let (code, out, _) = h.cli(&["check"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok   notify phone (ntfy): overload, jellyfin_unreachable"),
        "{out}"
    );
    let after: usize = [&ntfy, &gotify, &discord, &apprise, &hook]
        .iter()
        .map(|r| r.seen().len())
        .sum();
    assert_eq!(before, after, "check sends nothing");
}

#[tokio::test]
async fn an_overload_is_told_once_each_way_and_a_hanging_target_delays_nothing() {
    let (good, good_url) = Receiver::start(Mode::Ok, false).await;
    let (stuck, stuck_url) = Receiver::start(Mode::Hang, false).await;
    let fake = FakeJellyfin::new(KEY);
    let mut streams = Vec::new();
    for (i, name) in ["ann", "ben", "cat", "dan"].iter().enumerate() {
        let id = fake.add_user(name, |_| {});
        let s = fake.add_session(
            Some(&id),
            Some(&format!("203.0.113.{}", 10 + i)),
            "Jellyfin Android TV",
            Some(Playback::direct("x", Some(4 * M), None)),
        );
        streams.push((id, s));
    }
    // 10 - 5 = a 5 Mbps budget; four streamers at a 2 Mbps floor: overloaded.
    let h = Harness::with_budget(
        fake,
        10,
        5,
        "",
        &format!(
            "[[notify]]\nname = \"stuck\"\nkind = \"webhook\"\nurl = \"{stuck_url}\"\ntimeout = \"60s\"\n\
             [[notify]]\nname = \"good\"\nkind = \"webhook\"\nurl = \"{good_url}\"\n"
        ),
    )
    .await;
    let d = h
        .daemon("debounce = \"50ms\"\npoll_interval = \"1h\"\nshutdown_timeout = \"3s\"")
        .await;
    eventually("the overload notice", || {
        good.titles().iter().any(|t| t == "Upload overloaded")
    })
    .await;
    let first = good.seen();
    assert_eq!(
        first.len(),
        1,
        "one notice, and not \"started\" (off by default): {:?}",
        good.titles()
    );
    assert_eq!(first[0].2["event"], "overload");
    assert_eq!(first[0].2["severity"], "warning");
    assert!(
        first[0].2["message"]
            .as_str()
            .unwrap()
            .contains("min_per_user_mbps")
    );
    let s = d.state().await;
    assert_eq!(
        s["notifications"]["active"][0]["event"], "overload",
        "{s:#}"
    );

    // Still overloaded after more plans: nothing more. Three stop: it clears. The stuck
    // target still holds the overload notice meanwhile, and the write these webhooks cause
    // (the last streamer's limit rises from the floor) is not delayed by it.
    d.wait_for(|s| s["writes"]["pending"] == 0).await;
    let (last, _) = &streams[3];
    let before = h.fake.limit(last);
    for (id, s) in &streams[..3] {
        h.fake.stop_playback(s);
        d.hook(&event("PlaybackStop", id, s)).await;
    }
    eventually(
        "the last streamer's limit is raised while the stuck target hangs",
        || h.fake.limit(last) > before,
    )
    .await;
    assert!(stuck.calls() >= 1, "the stuck target has its request");
    eventually("the clearing notice", || {
        good.titles()
            .iter()
            .any(|t| t == "✓ Upload no longer overloaded")
    })
    .await;
    // One more plan after the clearing: it sends nothing more.
    let plans = d.state().await["poll"]["recomputes"].as_u64().unwrap();
    let (id, s) = &streams[0];
    d.hook(&event("PlaybackStop", id, s)).await;
    d.wait_for(|s| s["poll"]["recomputes"].as_u64().unwrap() > plans)
        .await;
    let titles = good.titles();
    assert_eq!(
        titles,
        ["Upload overloaded", "✓ Upload no longer overloaded"],
        "{titles:?}"
    );
    let s = d.state().await;
    let recent = &s["notifications"]["recent"];
    assert!(
        recent
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["target"] == "good" && r["result"] == "delivered"),
        "{s:#}"
    );

    // Stopping is not held up by the stuck target beyond the deadline.
    let started = std::time::Instant::now();
    d.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_hand_change_names_the_user_as_an_alias_when_anonymizing() {
    let (good, good_url) = Receiver::start(Mode::Ok, false).await;
    let fake = FakeJellyfin::new(KEY);
    let id = fake.add_user("Zoë Secretname", |_| {});
    fake.add_session(
        Some(&id),
        Some("203.0.113.9"),
        "Jellyfin Web",
        Some(Playback::direct("x", Some(8 * M), None)),
    );
    let h = Harness::start(
        fake,
        "",
        &format!(
            "[logging]\nanonymize = true\n[[notify]]\nkind = \"webhook\"\nurl = \"{good_url}\"\n\
             events = [\"limit_changed_by_hand\", \"started\"]\n"
        ),
    )
    .await;
    // The in-process daemon shares this test binary's anonymizer only if one is installed;
    // the real binary is what users run, so run it.
    let child = crate::common::bin::Bin::with_config(&h.config_path, &["run"])
        .env("JELLYDEMON_DAEMON__LISTEN", "127.0.0.1:0")
        .env("JELLYDEMON_DAEMON__POLL_INTERVAL", "1s")
        .spawn();
    eventually("started", || {
        good.titles().iter().any(|t| t == "jellydemon started")
    })
    .await;
    eventually("the limit written", || h.fake.limit(&id) > 0).await;
    h.fake.set_limit_by_hand(&id, 7 * M);
    eventually("the hand change notice", || good.seen().len() >= 2).await;
    let (_, _, body) = good.seen()[1].clone();
    assert_eq!(body["event"], "limit_changed_by_hand");
    let text = body.to_string();
    assert!(text.contains("User-0"), "{text}");
    assert!(
        !text.contains("Secretname") && !text.contains(&id),
        "{text}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("to 7 Mbps"),
        "{text}"
    );
    child.signal(rustix::process::Signal::TERM);
    let out = child.wait(Duration::from_secs(30)).await;
    let log = out.stderr;
    assert!(
        !log.contains(&good_url),
        "the webhook URL is a secret: {log}"
    );
}

#[tokio::test]
async fn originals_not_restored_are_told_before_the_daemon_exits() {
    let (good, good_url) = Receiver::start(Mode::Ok, false).await;
    let fake = FakeJellyfin::new(KEY);
    let id = fake.add_user("ann", |_| {});
    fake.add_session(
        Some(&id),
        Some("203.0.113.9"),
        "Jellyfin Web",
        Some(Playback::direct("x", Some(8 * M), None)),
    );
    let h = Harness::start(
        fake,
        "",
        &format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{good_url}\"\n\
             events = [\"restore_failed\", \"stopped\"]\n"
        ),
    )
    .await;
    let d = h
        .daemon("debounce = \"50ms\"\npoll_interval = \"1h\"\nshutdown_timeout = \"2s\"")
        .await;
    eventually("the limit written", || h.fake.limit(&id) > 0).await;
    // Jellyfin refuses every write from now on: the restore fails.
    h.fake.fail_all(500);
    let out = d.stop().await;
    assert!(out.restore_failures > 0, "{out:?}");
    // Delivered by the time the daemon has returned.
    let titles = good.titles();
    assert!(
        titles.contains(&"jellydemon stopped".to_string()),
        "{titles:?}"
    );
    let (_, _, body) = good
        .seen()
        .into_iter()
        .find(|(_, _, b)| b["event"] == "restore_failed")
        .unwrap_or_else(|| panic!("{titles:?}"));
    assert_eq!(body["severity"], "failure");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("jellydemon restore"),
        "{body}"
    );
}

#[tokio::test]
async fn a_history_that_cannot_be_written_is_told_and_limits_are_managed_as_ever() {
    let (r, url) = Receiver::start(Mode::Ok, false).await;
    let fake = FakeJellyfin::new(KEY);
    let m = mixed_scenario(&fake);
    // A directory where the database file should be: SQLite cannot open it.
    let blocked = tempfile::tempdir().unwrap();
    let h = Harness::start(
        fake,
        "",
        &format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{url}\"\nevents = [\"history_failing\"]\n\
             [history]\nfile = \"{}\"\n",
            blocked.path().display()
        ),
    )
    .await;
    let originals = limits_now(&h.fake);
    let d = h.daemon("notify_writes_failing_after = \"0s\"").await;
    eventually("alice managed", || h.fake.limit(&m.alice) != 0).await;
    eventually("history_failing notified", || {
        r.seen()
            .iter()
            .any(|(_, _, b)| b["event"] == "history_failing")
    })
    .await;
    let (_, _, body) = r
        .seen()
        .into_iter()
        .find(|(_, _, b)| b["event"] == "history_failing")
        .unwrap();
    assert_eq!(body["severity"], "warning");
    let msg = body["message"].as_str().unwrap();
    assert!(msg.contains(&blocked.path().display().to_string()), "{msg}");
    assert!(msg.contains("Limits are managed as ever"), "{msg}");
    let state = d.state().await;
    assert!(
        state["notifications"]["active"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["event"] == "history_failing"),
        "{:#}",
        state["notifications"]
    );
    d.stop().await;
    assert_originals(&h.fake, &originals);
}
