//! `jellydemon check`: each failure case is one line a user can act on.

use crate::common::{Harness, KEY, M, mixed_scenario};
use jellydemon::check::{Level, check};
use jellydemon::config::Settings;
use jellydemon::sim::fake::{FakeJellyfin, Playback};

fn fails(report: &jellydemon::check::CheckReport) -> Vec<String> {
    report
        .lines
        .iter()
        .filter(|l| l.level == Level::Fail)
        .map(|l| l.text.clone())
        .collect()
}

fn warns(report: &jellydemon::check::CheckReport) -> Vec<String> {
    report
        .lines
        .iter()
        .filter(|l| l.level == Level::Warn)
        .map(|l| l.text.clone())
        .collect()
}

fn with_url(h: &Harness, url: &str) -> Settings {
    let text = std::fs::read_to_string(&h.config_path)
        .unwrap()
        .replace(&format!("url = \"{}\"", h.url), &format!("url = \"{url}\""));
    Settings::from_toml_str(&text).unwrap()
}

fn with_key(h: &Harness, key: &str) -> Settings {
    let text = std::fs::read_to_string(&h.config_path)
        .unwrap()
        .replace(KEY, key);
    Settings::from_toml_str(&text).unwrap()
}

#[tokio::test]
async fn a_healthy_setup_passes_and_lists_sessions() {
    let fake = FakeJellyfin::new(KEY);
    mixed_scenario(&fake);
    let h = Harness::start(fake, "", "").await;
    let (code, out, err) = h.cli(&["check"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    for needle in [
        "reachable",
        "version 10.11.11",
        "API key accepted",
        "administrator rights",
        "remote 2001:db8::10",
        "remote 198.51.100.7",
        "local 192.168.1.50",
        "(no user)",
        "paused",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    assert!(!out.contains("FAIL"), "{out}");
    assert!(!out.contains(KEY) && !err.contains(KEY));
}

#[tokio::test]
async fn wrong_base_path_is_explained() {
    let fake = FakeJellyfin::new(KEY);
    fake.set_base_path("/jellyfin");
    let h = Harness::start(fake, "", "").await;
    let root = h.url.trim_end_matches("/jellyfin").to_string();
    let r = check(&with_url(&h, &root)).await;
    let f = fails(&r);
    assert_eq!(f.len(), 1, "{r}");
    assert!(
        f[0].contains("404") && f[0].contains("base path"),
        "{}",
        f[0]
    );
    // With the base path it works.
    let r = check(&h.settings()).await;
    assert!(!r.failed(), "{r}");
}

#[tokio::test]
async fn wrong_key_is_explained() {
    let h = Harness::start(FakeJellyfin::new(KEY), "", "").await;
    let r = check(&with_key(&h, "ffffffffffffffffffffffffffffffff")).await;
    let f = fails(&r);
    assert_eq!(f.len(), 1, "{r}");
    assert!(
        f[0].contains("API key was rejected") && f[0].contains("401"),
        "{}",
        f[0]
    );
    assert!(!r.to_string().contains("ffffffffffffffffffffffffffffffff"));
}

#[tokio::test]
async fn a_non_admin_key_is_explained() {
    let fake = FakeJellyfin::new(KEY);
    fake.add_non_admin_key("usertoken0000000000000000000000");
    let h = Harness::start(fake, "", "").await;
    let r = check(&with_key(&h, "usertoken0000000000000000000000")).await;
    let f = fails(&r);
    assert_eq!(f.len(), 1, "{r}");
    assert!(f[0].contains("not an administrator"), "{}", f[0]);
}

#[tokio::test]
async fn an_unreachable_server_is_explained() {
    let h = Harness::start(FakeJellyfin::new(KEY), "", "").await;
    // A port nobody listens on: bind, note the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = check(&with_url(&h, &format!("http://127.0.0.1:{port}"))).await;
    let f = fails(&r);
    assert_eq!(f.len(), 1, "{r}");
    assert!(f[0].contains("cannot connect"), "{}", f[0]);
    // The CLI exits 5.
    let text = std::fs::read_to_string(&h.config_path)
        .unwrap()
        .replace(&h.url, &format!("http://127.0.0.1:{port}"));
    std::fs::write(&h.config_path, text).unwrap();
    let (code, out, _) = h.cli(&["check"]).await;
    assert_eq!(code, 5, "{out}");
}

#[tokio::test]
async fn a_tls_error_is_explained() {
    // https:// against a plain-http port fails the handshake.
    let h = Harness::start(FakeJellyfin::new(KEY), "", "").await;
    let https = h.url.replacen("http://", "https://", 1);
    let r = check(&with_url(&h, &https)).await;
    let f = fails(&r);
    assert_eq!(f.len(), 1, "{r}");
    assert!(f[0].starts_with("TLS failed"), "{}", f[0]);
}

#[tokio::test]
async fn a_hanging_server_is_explained() {
    let fake = FakeJellyfin::new(KEY);
    let h = Harness::start(fake, "", "").await;
    h.fake.add_fault(jellydemon::sim::fake::Fault {
        method: None,
        path_prefix: Some("/system/info".into()),
        skip: 0,
        kind: jellydemon::sim::fake::FaultKind::Hang,
    });
    let text = std::fs::read_to_string(&h.config_path)
        .unwrap()
        .replace("timeout = \"2s\"", "timeout = \"300ms\"");
    let r = check(&Settings::from_toml_str(&text).unwrap()).await;
    let f = fails(&r);
    assert_eq!(f.len(), 1, "{r}");
    assert!(f[0].contains("did not answer"), "{}", f[0]);
}

#[tokio::test]
async fn a_proxy_and_a_lan_disagreement_are_flagged() {
    let fake = FakeJellyfin::new(KEY);
    let a = fake.add_user("a", |_| {});
    let b = fake.add_user("b", |_| {});
    // Every client appears as the proxy's address.
    fake.add_session(Some(&a), Some("127.0.0.1"), "Jellyfin Web", None);
    fake.add_session(Some(&b), Some("127.0.0.1"), "Jellyfin iOS", None);
    let h = Harness::start(fake, "", "").await;
    let r = check(&h.settings()).await;
    assert!(warns(&r).iter().any(|w| w.contains("reverse proxy")), "{r}");

    // jellydemon is told 10.0.0.0/8 only; Jellyfin also counts 192.168/16 as LAN.
    let fake = FakeJellyfin::new(KEY);
    let a = fake.add_user("a", |_| {});
    let s = fake.add_session(Some(&a), Some("192.168.1.9"), "Jellyfin Web", None);
    fake.start_playback(&s, Playback::direct("x", Some(5 * M), None));
    let h = Harness::start(fake, "", "[network]\ninternal_ranges = [\"10.0.0.0/8\"]").await;
    let r = check(&h.settings()).await;
    let w = warns(&r);
    assert!(
        w.iter()
            .any(|w| w.contains("192.168.1.9 is remote to jellydemon but local to Jellyfin")),
        "{r}"
    );
}

#[tokio::test]
async fn check_says_how_jellyfin_transcodes_and_which_transcode_cannot_keep_up() {
    let fake = FakeJellyfin::new(KEY);
    let ann = fake.add_user("ann", |_| {});
    let ben = fake.add_user("ben", |_| {});
    // A 4K remux held to 18 Mbps, transcoded at 11 fps; a 1080p transcode that keeps up.
    fake.add_session(
        Some(&ann),
        Some("203.0.113.20"),
        "Jellyfin Web",
        Some(Playback::transcode("Remux", 70 * M, 18 * M).at_framerate(11.0)),
    );
    fake.add_session(
        Some(&ben),
        Some("203.0.113.21"),
        "Jellyfin Android TV",
        Some(Playback::transcode("Episode", 10 * M, 6 * M)),
    );
    let h = Harness::start(fake, "", "").await;
    let report = check(&h.settings()).await;
    let text = report.to_string();
    assert!(text.contains("Jellyfin transcodes in software"), "{text}");
    assert!(text.contains("2 remote video transcode(s) now"), "{text}");
    let w = warns(&report);
    let behind: Vec<&String> = w.iter().filter(|l| l.contains("cannot keep up")).collect();
    assert_eq!(behind.len(), 1, "{w:?}");
    assert!(
        behind[0].starts_with("ann on Jellyfin Web") && behind[0].contains("11.0 fps"),
        "{behind:?}"
    );
    assert!(fails(&report).is_empty(), "{text}");
    assert!(text.contains("no [transcoding] capacity"), "{text}");

    h.fake.set_hardware_acceleration("qsv");
    let text = check(&h.settings()).await.to_string();
    assert!(
        text.contains("Jellyfin transcodes with qsv hardware acceleration"),
        "{text}"
    );
}

#[tokio::test]
async fn check_shows_the_capacity_in_force_and_the_limits_that_go_beyond_it() {
    let fake = FakeJellyfin::new(KEY);
    let ann = fake.add_user("ann", |_| {});
    let ben = fake.add_user("ben", |_| {});
    // The 55 Mbps budget cannot hold ann's 70 Mbps remux, and ben's client transcodes
    // whatever its limit: two transcodes on a server that runs one.
    fake.add_session(
        Some(&ann),
        Some("203.0.113.20"),
        "Jellyfin Web",
        Some(Playback::transcode("Remux", 70 * M, 18 * M)),
    );
    fake.add_session(
        Some(&ben),
        Some("203.0.113.21"),
        "Jellyfin Android TV",
        Some(Playback::transcode("Episode", 10 * M, 6 * M)),
    );
    let h = Harness::start(fake, "", "[transcoding]\ncapacity = 1").await;
    let report = check(&h.settings()).await;
    let w = warns(&report);
    assert!(
        w.iter().any(|l| l
            == "[transcoding] capacity: the server runs 1 stream at most; these limits leave 2 \
                video transcode(s), beyond the capacity"),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|l| l.starts_with("ann on ") && l.contains("forces a transcode beyond capacity")),
        "{w:?}"
    );
}

#[tokio::test]
async fn check_says_when_auto_has_learned_no_capacity_yet() {
    let h = Harness::start(
        FakeJellyfin::new(KEY),
        "",
        "[transcoding]\ncapacity = \"auto\"",
    )
    .await;
    let text = check(&h.settings()).await.to_string();
    assert!(
        text.contains("[transcoding] capacity = \"auto\": nothing learned yet"),
        "{text}"
    );
}
