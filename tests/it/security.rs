//! The listener against hostile clients (loopback only, bounded in time): nobody can hold up
//! the restoring shutdown or exhaust the daemon's connections and file descriptors. The
//! daemon's files against a neighbour on the machine are in `private_files.rs`.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::bin::{Bin, Running};
use crate::common::{Harness, KEY, M, eventually};
use jellydemon::ids::UserId;
use jellydemon::sim::fake::{FakeJellyfin, Playback};
use rustix::process::Signal;

/// Two users; alice streams from outside, so the daemon lowers bob's limit at start.
pub(crate) fn household(fake: &FakeJellyfin) -> (String, String) {
    let alice = fake.add_user("alice", |_| {});
    let bob = fake.add_user("bob", |_| {});
    let s = fake.add_session(Some(&alice), Some("203.0.113.5"), "Jellyfin Web", None);
    fake.start_playback(&s, Playback::direct("Film", Some(8 * M), None));
    (alice, bob)
}

/// The real binary, `jellydemon run` with JSON logs and `daemon` lines, optionally under a
/// lower open-file limit; returns it and the address it listens on.
async fn spawn(h: &Harness, daemon: &str, nofile: Option<u32>) -> (Running, SocketAddr) {
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    let path = h.dir.path().join("daemon.toml");
    std::fs::write(
        &path,
        format!(
            "{text}\n[logging]\nformat = \"json\"\nlevel = \"info\"\n[daemon]\n\
             listen = \"127.0.0.1:0\"\ndebounce = \"50ms\"\n{daemon}\n"
        ),
    )
    .unwrap();
    let bin = match nofile {
        Some(n) => Bin::after_shell(&format!("ulimit -n {n}")),
        None => Bin::new(),
    };
    let child = bin.arg("--config").arg(&path).arg("run").spawn();
    let listen = |line: &str| {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        v["fields"]["listen"].as_str().map(str::to_string)
    };
    let line = child
        .line("where the daemon listens", |l| listen(l).is_some())
        .await;
    let addr = listen(&line).unwrap().parse::<SocketAddr>().unwrap();
    (child, addr)
}

/// With the listener under attack, `/healthz` still answers, and a webhook telling that
/// `carol` started a stream gets her limit and the ledger written.
async fn still_serves_health_and_a_webhook(
    h: &Harness,
    addr: SocketAddr,
    token: &str,
    carol: &str,
) {
    let http = crate::common::daemon_client();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        http.get(format!("http://{addr}/healthz")).send(),
    )
    .await
    .expect("healthz answers")
    .unwrap();
    assert_eq!(r.status(), 200);
    let s = h
        .fake
        .add_session(Some(carol), Some("198.51.100.3"), "Jellyfin Web", None);
    h.fake
        .start_playback(&s, Playback::direct("Show", Some(8 * M), None));
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        http.post(format!("http://{addr}/hook"))
            .header("X-Jellydemon-Token", token)
            .body(crate::common::event("PlaybackStart", carol, &s))
            .send(),
    )
    .await
    .expect("/hook answers")
    .unwrap();
    assert_eq!(r.status(), 202);
    // Her next item may take what alice's 8.8 Mbps demand leaves: 46.
    eventually("carol's limit written", || h.fake.limit(carol) == 46 * M).await;
    assert!(
        h.ledger().original(&UserId::new(carol)).is_some(),
        "the ledger was written"
    );
}

/// Raise this process's soft open-file limit (to the hard one) so it can hold `n` sockets.
fn allow_open_files(n: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current.is_some_and(|c| c < n) {
        l.current = l.maximum;
        setrlimit(Resource::Nofile, l).unwrap();
    }
}

#[tokio::test]
async fn a_half_sent_request_cannot_hold_up_the_restore() {
    let fake = FakeJellyfin::new(KEY);
    let (_alice, bob) = household(&fake);
    let originals = crate::common::limits_now(&fake);
    let h = Harness::start(fake, "", "").await;
    let (child, addr) = spawn(&h, "shutdown_timeout = \"10s\"", None).await;
    eventually("bob lowered", || h.fake.limit(&bob) == 23 * M).await;

    // Headers never finished, and a body that never comes.
    let files = child.open_files();
    let mut headers = TcpStream::connect(addr).unwrap();
    headers
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut body = TcpStream::connect(addr).unwrap();
    body.write_all(
        b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    child.holding_files(files + 2).await;

    let started = Instant::now();
    child.signal(Signal::TERM);
    // It exits within the shutdown timeout.
    let out = child.wait(Duration::from_secs(15)).await;
    assert_eq!(out.code, 0, "every original restored");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the clients delayed the exit by {:?}",
        started.elapsed()
    );
    crate::common::assert_originals(&h.fake, &originals);
    assert!(h.ledger().is_empty());
    drop((headers, body));
}

#[tokio::test]
async fn idle_connections_cannot_exhaust_the_daemon() {
    allow_open_files(2_000);
    let fake = FakeJellyfin::new(KEY);
    let (alice, bob) = household(&fake);
    let carol = fake.add_user("carol", |_| {});
    let h = Harness::start(fake, "", "").await;
    // 256 open files for everything (systemd's default soft limit is 1024), at most 64
    // connections; the idle ones hold the daemon for 30 s unless it makes room.
    let (child, addr) = spawn(
        &h,
        "http_max_connections = 64\nhttp_header_timeout = \"30s\"\nwebhook_token = \"0123456789abcdef0123\"",
        Some(256),
    )
    .await;
    eventually("bob lowered", || h.fake.limit(&bob) == 23 * M).await;

    let files = child.open_files();
    let idle: Vec<TcpStream> = (0..1_100)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // The daemon holds as many as its cap allows.
    child.holding_files(files + 64).await;

    still_serves_health_and_a_webhook(&h, addr, "0123456789abcdef0123", &carol).await;
    let _ = alice;
    drop(idle);
    child.signal(Signal::TERM);
    let out = child.wait(Duration::from_secs(15)).await;
    assert_eq!(out.code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_and_stalled_bodies_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let fake = FakeJellyfin::new(KEY);
    household(&fake);
    let h = Harness::start(fake, "", "").await;
    let d = h
        .daemon("http_header_timeout = \"1s\"\nhttp_request_timeout = \"1s\"")
        .await;
    let addr: SocketAddr = d.url.trim_start_matches("http://").parse().unwrap();

    // Headers one line every 200 ms: closed about a second after the first byte.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let closed = loop {
        assert!(started.elapsed() < Duration::from_secs(5), "never closed");
        if trickle.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break started.elapsed();
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), trickle.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(_)) | Err(_) => {} // an answer before closing, or nothing yet
        }
    };
    assert!(closed < Duration::from_secs(3), "closed after {closed:?}");

    // A connection that sends nothing is closed too.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("closed by the server")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_secs(3));

    // A body announced but not sent: 408 once the request timeout is over.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"POST /hook HTTP/1.1\r\nHost: x\r\nX-Jellydemon-Token: hook-secret-0123456789\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // With the security headers, as every answer.
    let lower = answer.to_ascii_lowercase();
    for h in [
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "content-security-policy:",
    ] {
        assert!(lower.contains(h), "{h}: {answer}");
    }
    d.stop().await;
}

#[tokio::test]
async fn off_loopback_the_read_only_endpoints_need_the_status_secret() {
    let fake = FakeJellyfin::new(KEY);
    household(&fake);
    let h = Harness::start(fake, "", "").await;
    // Configured for every address; the test still binds loopback.
    let d = h.daemon("listen = \"0.0.0.0:8098\"").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str| http.get(format!("{}{path}", d.url));
    let secret = crate::common::HOOK_TOKEN;

    for path in ["/api/state", "/api/history", "/metrics"] {
        let r = get(path).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("alice"), "{path}: {body}");
        let r = get(path).bearer_auth(secret).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let page = get("/").send().await.unwrap();
    assert_eq!(page.status(), 401);
    let page = page.text().await.unwrap();
    assert!(page.contains("<form class=\"login"), "{page}");
    assert!(!page.contains("alice"));
    // The assets the sign-in page needs are served without the secret; they say nothing.
    assert_eq!(get("/status.css").send().await.unwrap().status(), 200);

    // Signing in: a wrong secret is refused, the right one sets a session cookie.
    let wrong = http
        .post(format!("{}/login", d.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = http
        .post(format!("{}/login", d.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let page = get("/").header("cookie", &session).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Remote users"));
    let state = get("/api/state")
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(state.status(), 200);

    // /healthz stays open and tells nothing personal.
    let health = get("/healthz").send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["last_poll_error"], serde_json::Value::Null);

    // A foreign Host (DNS rebinding) is refused, even with the secret; an address is fine.
    let r = get("/api/state")
        .header("host", "attacker.example")
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let r = get("/api/state")
        .header("host", "192.168.1.20:8098")
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    d.stop().await;
}

#[tokio::test]
async fn the_webhook_refuses_web_pages_and_every_answer_carries_the_security_headers() {
    let fake = FakeJellyfin::new(KEY);
    let (alice, _) = household(&fake);
    let h = Harness::start(fake, "", "").await;
    let d = h.daemon("").await;
    let http = crate::common::daemon_client();
    // A page in a browser on this machine: refused, although the listener is loopback.
    let r = http
        .post(format!("{}/hook", d.url))
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .header("x-jellydemon-token", crate::common::HOOK_TOKEN)
        .body(crate::common::event("PlaybackStart", &alice, "s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The plugin (no Origin), with the scheme in capitals.
    let r = http
        .post(format!("{}/hook", d.url))
        .header(
            "authorization",
            format!("BEARER {}", crate::common::HOOK_TOKEN),
        )
        .body(crate::common::event("PlaybackStart", &alice, "s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    for path in ["/", "/api/state", "/healthz", "/metrics", "/status.js"] {
        let r = http.get(format!("{}{path}", d.url)).send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
    }
    // The page has no inline script or style for that policy to block.
    let page = d.text("/").await;
    assert!(
        !page.contains("<script>") && !page.contains("style="),
        "{page}"
    );
    d.stop().await;
}

#[tokio::test]
async fn under_256_open_files_idle_and_trickling_connections_cannot_exhaust_the_daemon() {
    allow_open_files(2_000);
    let fake = FakeJellyfin::new(KEY);
    let (alice, bob) = household(&fake);
    let carol = fake.add_user("carol", |_| {});
    let originals = crate::common::limits_now(&fake);
    let h = Harness::start(fake, "", "").await;
    let token = "0123456789abcdef0123";
    // The default connection cap (256) under a limit of 256 open files: the daemon must fit
    // its connections under the limit itself. Idle and half-sent requests are not timed out
    // during the test.
    let (child, addr) = spawn(
        &h,
        &format!(
            "http_header_timeout = \"60s\"\nhttp_request_timeout = \"60s\"\n\
             webhook_token = \"{token}\"\nshutdown_timeout = \"10s\""
        ),
        Some(256),
    )
    .await;
    eventually("bob lowered", || h.fake.limit(&bob) == 23 * M).await;

    let files = child.open_files();
    let mut held: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    for i in 0..300 {
        let mut c = TcpStream::connect(addr).unwrap();
        // Half of them with the secret, so their body is waited for; all trickle one byte.
        let secret = if i % 2 == 0 {
            format!("X-Jellydemon-Token: {token}\r\n")
        } else {
            String::new()
        };
        let _ = c.write_all(
            format!("POST /hook HTTP/1.1\r\nHost: x\r\n{secret}Content-Length: 60000\r\n\r\n{{")
                .as_bytes(),
        );
        held.push(c);
    }
    // The daemon is full: near its cap of 192 (256 files less the 64 it keeps).
    child.holding_files(files + 150).await;

    still_serves_health_and_a_webhook(&h, addr, token, &carol).await;

    // The restore at SIGTERM has the files it needs, with every connection still open.
    child.signal(Signal::TERM);
    // It exits within the shutdown timeout.
    let out = child.wait(Duration::from_secs(15)).await;
    assert_eq!(out.code, 0, "every original restored");
    crate::common::assert_originals(&h.fake, &originals);
    assert!(h.ledger().is_empty());
    let _ = alice;
    drop(held);
}

#[tokio::test]
async fn check_says_when_the_open_file_limit_is_low() {
    let fake = FakeJellyfin::new(KEY);
    household(&fake);
    let h = Harness::start(fake, "", "").await;
    let out = Bin::after_shell("ulimit -n 256")
        .arg("--config")
        .arg(&h.config_path)
        .arg("check")
        .output()
        .await;
    let text = out.stdout;
    assert!(
        text.contains("the open-file limit here is 256")
            && text.contains("serves at most 192 connections"),
        "{text}"
    );
}

#[tokio::test]
async fn sign_in_is_throttled_same_origin_only_secure_behind_https_and_undone_by_sign_out() {
    let fake = FakeJellyfin::new(KEY);
    household(&fake);
    let h = Harness::start(fake, "", "").await;
    let d = h.daemon("listen = \"0.0.0.0:8098\"").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let secret = crate::common::HOOK_TOKEN;
    let host = d.url.trim_start_matches("http://").to_string();
    let login = |token: &str| {
        http.post(format!("{}/login", d.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
    };

    // A page elsewhere cannot sign a browser in.
    let r = login(secret)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    // Behind an HTTPS proxy, from the page itself: the cookie is Secure.
    let r = login(secret)
        .header("origin", format!("https://{host}"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let state = |session: String| {
        http.get(format!("{}/api/state", d.url))
            .header("cookie", session)
            .send()
    };
    assert_eq!(state(session.clone()).await.unwrap().status(), 200);
    // Signing out forgets the session.
    let r = http
        .post(format!("{}/logout", d.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(state(session).await.unwrap().status(), 401);

    // Guessing: a few tries, then 429 with Retry-After, even for the right secret.
    let mut codes = Vec::new();
    for _ in 0..40 {
        codes.push(login("wrong-guess").send().await.unwrap().status().as_u16());
    }
    assert!(
        codes.iter().filter(|&&c| c == 401).count() <= 5,
        "{codes:?}"
    );
    assert_eq!(codes.last(), Some(&429), "{codes:?}");
    let r = login(secret).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));

    d.stop().await;
}
