//! With `logging.anonymize = true`, a whole scenario (daemon with webhooks, metrics, state,
//! check, a one-shot pass, restore, the bug report) emits no real user name, user id, IP
//! address, session id, device id, API key or webhook secret anywhere but in the tables
//! `check` and `reconcile` print for the owner's own terminal, which show names (and still
//! no secret). The bug report is
//! anonymized even when the daemon's own log is not.

use std::time::Duration;

use crate::common::bin::Bin;
use crate::common::{KEY, M, dashed};
use jellydemon::sim::fake::{FakeJellyfin, Playback};
use rustix::process::Signal;

const SECRET: &str = "very-secret-webhook-token-42";
const ENV_KEY: &str = "fedcba9876543210fedcba9876543210";
/// The meter's rpcd password (a fake router runs in the first test).
const ROUTER_PASSWORD: &str = "router-secret-pw-77";

/// Remote users with awkward names and addresses, each streaming, plus a LAN user and one
/// whose endpoint does not parse.
struct People {
    fake: FakeJellyfin,
    names: [&'static str; 5],
    ids: Vec<String>,
    sessions: Vec<String>,
    devices: Vec<String>,
    lan: String,
    weird: String,
}

fn people() -> People {
    let names = [
        "Bob O'Brien",
        "Mary \"Q\" Contrary",
        "alice@example.com",
        "Zoë Ünïcode",
        "Jean Luc Picard",
    ];
    let endpoints = [
        "203.0.113.5",
        "2001:db8::10",
        "[2001:db8::11]:8920",
        "::ffff:198.51.100.7",
        "2001:0db8:0000:0000:0000:0000:0000:0012",
    ];
    // The same key as the config's, and a second one in the environment that wins.
    let fake = FakeJellyfin::new(ENV_KEY);
    let mut ids = Vec::new();
    let mut sessions = Vec::new();
    let mut devices = Vec::new();
    for (name, ep) in names.iter().zip(endpoints) {
        let id = fake.add_user(name, |_| {});
        let s = fake.add_session(Some(&id), Some(ep), "Jellyfin Web", None);
        fake.start_playback(&s, Playback::direct("x", Some(8 * M), None));
        devices.push(fake.sessions().last().unwrap().device_id.clone());
        sessions.push(s);
        ids.push(id);
    }
    // A LAN client and an unparseable endpoint too.
    let lan = fake.add_user("Local Lucy", |_| {});
    fake.add_session(
        Some(&lan),
        Some("192.168.1.77"),
        "Jellyfin Web",
        Some(Playback::direct("y", Some(M), None)),
    );
    let weird = fake.add_user("Weird Wendy", |_| {});
    fake.add_session(
        Some(&weird),
        Some("not-an-address-wendy"),
        "Jellyfin Web",
        Some(Playback::direct("z", Some(M), None)),
    );

    People {
        fake,
        names,
        ids,
        sessions,
        devices,
        lan,
        weird,
    }
}

impl People {
    /// Everything personal or secret that must not appear.
    fn forbidden(&self) -> Vec<String> {
        let mut forbidden: Vec<String> = vec![
            KEY.into(),
            ENV_KEY.into(),
            SECRET.into(),
            ROUTER_PASSWORD.into(),
            "notify-secret-path".into(),
        ];
        forbidden.extend(self.names.iter().map(|n| n.to_string()));
        forbidden.extend([
            "Local Lucy".into(),
            "Weird Wendy".into(),
            "not-an-address-wendy".into(),
        ]);
        forbidden.extend(
            [
                "203.0.113.5",
                "2001:db8::10",
                "2001:db8::11",
                "198.51.100.7",
                "2001:db8::12",
                "0db8",
                "192.168.1.77",
            ]
            .map(String::from),
        );
        for id in self.ids.iter().chain([&self.lan, &self.weird]) {
            forbidden.push(id.clone());
            forbidden.push(dashed(id));
        }
        forbidden.extend(self.sessions.iter().cloned());
        forbidden.extend(self.devices.iter().cloned());
        forbidden
    }

    /// Fails when `text` holds anything of [`People::forbidden`], or a name JSON-escaped.
    fn assert_absent(&self, what: &str, text: &str) {
        for f in self.forbidden() {
            assert!(!text.contains(f.as_str()), "{what} leaks {f:?}:\n{text}");
        }
        for n in self.names {
            let escaped = serde_json::to_string(n).unwrap();
            assert!(
                !text.contains(escaped.trim_matches('"')),
                "{what} leaks {escaped}"
            );
        }
    }
}

#[tokio::test]
async fn nothing_personal_or_secret_leaks_when_anonymizing() {
    let People {
        fake,
        names,
        ids,
        sessions,
        devices,
        lan,
        weird,
    } = people();
    let (url, _addr, _token) = fake.spawn().await;
    // A meter at a fake router, signing in with a password that must never show.
    let router = jellydemon::sim::router::FakeRouter::new("jellydemon", ROUTER_PASSWORD);
    router.set_rate(20_000_000);
    let router_url = router
        .spawn(tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    // A notification target that records what it is sent.
    let (notes, notes_url) = crate::notify::Receiver::start(crate::notify::Mode::Ok, false).await;
    let dir = tempfile::tempdir().unwrap();
    let log_file = dir.path().join("jellydemon.log");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[jellyfin]
url = "{url}"
api_key = "{KEY}"
[bandwidth]
total_upload_mbps = 60
reserved_mbps = 5
[bandwidth.meter]
kind = "openwrt"
interface = "wan"
url = "{router_url}"
username = "jellydemon"
password = "{ROUTER_PASSWORD}"
interval = "500ms"
[state]
file = "{}"
[daemon]
listen = "127.0.0.1:0"
webhook_token = "{SECRET}"
debounce = "50ms"
poll_interval = "1s"
[logging]
level = "debug"
format = "json"
file = "{}"
anonymize = true
"#,
            dir.path().join("state.json").display(),
            log_file.display()
        ) + &format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{notes_url}/notify-secret-path\"\n\
             events = [\"limit_changed_by_hand\", \"started\", \"stopped\", \"overload\", \
             \"ignores_limits\"]\n"
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Bin::with_config(&config, args).env("JELLYDEMON_JELLYFIN__API_KEY", ENV_KEY)
    };
    // The config's api_key is overridden by the environment; both must stay hidden.
    let check = run(&["check"]).output().await;
    let once = run(&["reconcile", "--once", "--dry-run"]).output().await;

    let child = run(&["run"]).spawn();
    let port = |line: &str| {
        line.split("\"listen\":\"127.0.0.1:")
            .nth(1)
            .map(|rest| rest.split('"').next().unwrap().to_string())
    };
    let listening = child
        .line("where the daemon listens", |l| port(l).is_some())
        .await;
    let port = port(&listening).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = crate::common::daemon_client();
    for (id, s) in ids.iter().zip(&sessions) {
        let body = serde_json::json!({
            "NotificationType": "PlaybackStart", "UserId": dashed(id), "Id": s,
            "NotificationUsername": "leaky name", "RemoteEndPoint": "203.0.113.5"
        });
        http.post(format!("{base}/hook"))
            .header("X-Jellydemon-Token", SECRET)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
    }
    // A rejected body echoes nothing personal either.
    http.post(format!("{base}/hook"))
        .header("X-Jellydemon-Token", SECRET)
        .body(format!(
            "{{\"NotificationType\":\"PlaybackStart\",\"UserId\":\"{}\"",
            ids[0]
        ))
        .send()
        .await
        .unwrap();
    // jellydemon has written the first user's limit (the start-up pass's plan or the
    // webhooks'), so that the change below is one made by hand after it, not the original.
    let first = ids[0].replace('-', "").to_ascii_lowercase();
    crate::common::eventually("the first user's limit written", || {
        fake.policy_posts()
            .iter()
            .any(|(id, _)| id.replace('-', "") == first)
    })
    .await;
    // An admin changes the first user's limit by hand; the next poll (a webhook's pass reads
    // the sessions alone) notices and tells.
    fake.set_limit_by_hand(&ids[0], 5_000_000);
    http.post(format!("{base}/hook"))
        .header("X-Jellydemon-Token", SECRET)
        .body(
            serde_json::json!({"NotificationType": "PlaybackStart", "UserId": ids[1], "Id": sessions[1]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    crate::common::eventually("the hand change is notified", || {
        notes
            .seen()
            .iter()
            .any(|(_, _, b)| b["event"] == "limit_changed_by_hand")
    })
    .await;
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let state = http
        .get(format!("{base}/api/state"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(state.contains("User-0"), "aliases are used: {state}");
    assert!(metrics.contains("user=\"User-0"), "{metrics}");
    // The bug report, made while the daemon runs.
    let report_file = dir.path().join("report.txt");
    let address = format!("127.0.0.1:{port}");
    let report = run(&[
        "report",
        "--output",
        report_file.to_str().unwrap(),
        "--address",
        &address,
    ])
    .output()
    .await;
    assert_eq!(report.code, 0, "{report:?}");
    let report = std::fs::read_to_string(&report_file).unwrap();
    for part in [
        "## check",
        "ok   API key accepted",
        "## what a pass would do now",
        "recent decisions, newest first:\n  20",
        "limit written",
        "JELLYDEMON_JELLYFIN__API_KEY=(removed)",
        "api_key = \"(removed)\"",
        "webhook_token = \"(removed)\"",
        "password = \"(removed)\"",
        "meter openwrt wan (pppoe-wan)",
        "ok   notify webhook (webhook)",
    ] {
        assert!(
            report.contains(part),
            "no {part:?} in the report:\n{report}"
        );
    }

    child.signal(Signal::TERM);
    let daemon = child.wait(Duration::from_secs(30)).await;
    let captured = daemon.stderr;
    assert_eq!(daemon.code, 0, "{captured}");

    let outputs = vec![
        ("check stdout", check.stdout.clone()),
        ("check stderr", check.stderr.clone()),
        ("reconcile stdout", once.stdout.clone()),
        ("reconcile stderr", once.stderr.clone()),
        ("daemon stderr", captured),
        ("log file", std::fs::read_to_string(&log_file).unwrap()),
        ("metrics", metrics),
        ("api/state", state),
        ("report", report),
        (
            "notifications",
            notes
                .seen()
                .iter()
                .map(|(_, _, b)| b.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    ];
    for (what, text) in &outputs {
        if !what.ends_with("stderr") || *what == "daemon stderr" {
            assert!(!text.is_empty(), "{what} is empty");
        }
    }
    assert!(
        outputs[5].1.contains("limit written"),
        "the log file has the writes"
    );
    assert!(
        outputs[5].1.contains("External-IP-"),
        "and aliased addresses"
    );
    // The owner's own terminal: check and reconcile print names (their logs do not).
    for i in [0, 2] {
        assert!(
            outputs[i].1.contains(names[0]),
            "{} shows the owner the names: {}",
            outputs[i].0,
            outputs[i].1
        );
    }

    let people = People {
        fake,
        names,
        ids,
        sessions,
        devices,
        lan,
        weird,
    };
    for (what, text) in &outputs {
        if what.ends_with("stdout") {
            // The owner's terminal shows names, never a secret.
            for secret in [KEY, ENV_KEY, SECRET, ROUTER_PASSWORD, "notify-secret-path"] {
                assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
            }
        } else {
            people.assert_absent(what, text);
        }
    }
    // The alias map was saved, and `jellydemon anonymize` uses it on an old, plain log.
    assert!(dir.path().join("aliases.json").exists());
    let old_log = format!(
        "INFO limit written user=\"{}\" from {} and 8.8.8.8\n",
        names[0], "203.0.113.5"
    );
    let out = run(&["anonymize"]).stdin(old_log).output().await.stdout;
    assert!(
        !out.contains(names[0]) && !out.contains("203.0.113.5") && !out.contains("8.8.8.8"),
        "{out}"
    );
    assert!(
        out.contains("User-0") && out.contains("External-IP-"),
        "{out}"
    );
}

/// The daemon logs names in plain text (`logging.anonymize` off); the bug report still shows
/// none of them, whether it reads the log file or the log piped in.
#[tokio::test]
async fn a_bug_report_is_anonymized_even_when_the_log_is_not() {
    let people = people();
    let (url, _addr, _token) = people.fake.spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let log_file = dir.path().join("jellydemon.log");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[jellyfin]
url = "{url}"
api_key = "{ENV_KEY}"
[bandwidth]
total_upload_mbps = 60
[state]
file = "{}"
[daemon]
listen = "127.0.0.1:0"
webhook_token = "{SECRET}"
[logging]
level = "debug"
file = "{}"
"#,
            dir.path().join("state.json").display(),
            log_file.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| Bin::with_config(&config, args);
    let once = run(&["reconcile", "--once"]).output().await;
    assert_eq!(once.code, 0, "{once:?}");
    let log = std::fs::read_to_string(&log_file).unwrap();
    // Plain text in a file and in a pipe: no colour codes.
    assert!(!log.contains('\u{1b}'), "{log}");
    assert!(!once.stderr.is_empty() && !once.stderr.contains('\u{1b}'));
    assert!(
        log.contains(people.names[0]) && log.contains("Weird Wendy"),
        "the log itself is plain: {log}"
    );
    // An old log line with a dashed user id, a session id and an address.
    let piped = format!(
        "{log}INFO old line user_id={} session={} from 198.51.100.7 name={}\n",
        dashed(&people.ids[1]),
        people.sessions[1],
        people.names[1]
    );

    let from_file = run(&["report", "--output", "-"]).output().await;
    let from_stdin = run(&["report", "--output", "-", "--log", "-", "--lines", "50"])
        .stdin(piped)
        .output()
        .await;
    for (what, out) in [("from the file", from_file), ("from stdin", from_stdin)] {
        assert_eq!(out.code, 0, "{what}: {out:?}");
        let text = out.stdout;
        assert!(
            text.contains("limit written"),
            "{what}: the log is in it:\n{text}"
        );
        assert!(text.contains("User-0"), "{what}: aliases:\n{text}");
        assert!(text.contains("pass --address"), "{text}");
        people.assert_absent(&format!("report {what}"), &text);
        people.assert_absent(&format!("report {what}, stderr"), &out.stderr);
    }
    // Reading never wrote an alias map.
    assert!(!dir.path().join("aliases.json").exists());
}

/// Names that JSON and the terminal escape: the running daemon's decisions, embedded in the
/// report as JSON, name them escaped, and the report still shows none of them.
#[tokio::test]
async fn a_bug_report_finds_names_however_they_were_escaped() {
    let fake = FakeJellyfin::new(KEY);
    let names = [
        "Bob \"the\" Builder",
        "CORP\\alice",
        "tab\tand\u{1b}[1mbold",
    ];
    let mut devices = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let id = fake.add_user(name, |_| {});
        let s = fake.add_session(
            Some(&id),
            Some(&format!("203.0.113.{}", i + 40)),
            "Jellyfin Web",
            None,
        );
        let device = format!("{name}'s \"TV\" \\ {i}");
        fake.rename_device(&s, &device);
        devices.push(device);
        fake.start_playback(&s, Playback::direct("x", Some(8 * M), None));
    }
    let h = crate::common::Harness::start(fake, "", "").await;
    let d = h.daemon("").await;
    d.wait_for(|s| {
        s["last_decision"]["users"]
            .as_array()
            .is_some_and(|u| u.len() == 3)
    })
    .await;
    let addr = d.url.trim_start_matches("http://").to_string();
    let (code, out, err) = h
        .cli(&["report", "--output", "-", "--address", &addr])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("last decision, in full"),
        "the daemon's part is in it:\n{out}"
    );
    for v in names.iter().map(|n| n.to_string()).chain(devices) {
        let json = serde_json::to_string(&v).unwrap();
        let escaped = jellydemon::escape::escape_controls(&v).into_owned();
        for form in [v.as_str(), json.trim_matches('"'), escaped.as_str()] {
            assert!(!out.contains(form), "the report shows {form:?}:\n{out}");
        }
    }
    d.stop().await;
}
