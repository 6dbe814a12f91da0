//! The torrent clients beside Jellyfin, for real (`common/torrent.rs`): jellydemon gives
//! qBittorrent and Transmission what the remote streams leave, in the setting that bites
//! (normal or alternative), keeps a change made by hand as the new original, copes with a
//! wrong password (one failed login per backoff: qBittorrent bans), a client killed and
//! started again, and puts every original back on stop, by `restore` and after a SIGKILL.
//!
//! The budget is 60 - 5 = 55 Mbps; alice streams 20 Mbps from outside, so the clients get
//! 35 Mbps: 4,375,000 bytes/s, which qBittorrent keeps as 4272 KiB/s and Transmission as
//! 4375 kB/s.

use std::time::Duration;

use crate::common::torrent::{Kind, PASS, Torrent, streaming_house};
use crate::common::{Harness, M};
use jellydemon::adapters::downloader::{Downloader, Mode, Reading};
use jellydemon::sim::fake::{FakeJellyfin, Playback};
use rustix::process::Signal;

const QBIT_35: i64 = 4272 * 1024;
const TRANSMISSION_35: i64 = 4375;

/// The originals the profiles start with (`common/torrent.rs`).
fn originals(kind: Kind) -> Vec<(&'static str, i64)> {
    match kind {
        Kind::Qbittorrent => vec![("up_limit", 100 * 1024), ("alt_up_limit", 20 * 1024)],
        Kind::Transmission => vec![
            ("speed-limit-up", 100),
            ("speed-limit-up-enabled", 0),
            ("alt-speed-up", 50),
        ],
    }
}

fn limit_35(kind: Kind) -> i64 {
    match kind {
        Kind::Qbittorrent => QBIT_35,
        Kind::Transmission => TRANSMISSION_35,
    }
}

fn normal_field(kind: Kind) -> &'static str {
    match kind {
        Kind::Qbittorrent => "up_limit",
        Kind::Transmission => "speed-limit-up",
    }
}

fn alt_field(kind: Kind) -> &'static str {
    match kind {
        Kind::Qbittorrent => "alt_up_limit",
        Kind::Transmission => "alt-speed-up",
    }
}

/// Read until `pred` holds (at most 20 s).
async fn reading_until(c: &mut Downloader, what: &str, pred: impl Fn(&Reading) -> bool) -> Reading {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.read().await;
        if let Ok(r) = &r
            && pred(r)
        {
            return r.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}; last read {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fake Jellyfin where alice streams 20 Mbps from outside, and the harness around it with
/// `torrent`'s `[[downloader]]` logging in with `password`.
async fn house(torrent: &Torrent, password: &str) -> (Harness, String) {
    streaming_house(&format!(
        "{}\n[bandwidth.downloaders]\ninterval = \"1s\"\nwrite_every = \"200ms\"\n",
        torrent.config(password)
    ))
    .await
}

async fn the_clients_get_what_the_streams_leave_and_their_originals_back(kind: Kind) {
    let Some(t) = Torrent::start(kind).await else {
        return;
    };
    let mut c = t.client();
    let before = c.read().await.unwrap();
    assert_eq!(before.values, originals(kind), "the profile's own values");
    let (h, _) = house(&t, PASS).await;
    let d = h.daemon("poll_interval = \"1s\"").await;

    let r = reading_until(&mut c, "the limit the streams leave", |r| {
        r.value(normal_field(kind)) == Some(limit_35(kind))
    })
    .await;
    assert_eq!(r.mode, Mode::Normal);
    assert_eq!(
        r.limit_bps,
        Some(limit_35(kind) as u64 * 8 * if kind == Kind::Transmission { 1000 } else { 1 })
    );
    let s = d
        .wait_for(|s| s["downloaders"][0]["limit_bps"].as_u64().is_some())
        .await;
    assert_eq!(s["downloaders"][0]["up"], true, "{s:#}");
    assert_eq!(s["downloaders_limit_bps"], 35_000_000, "{s:#}");
    let metrics = d.text("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "jellydemon_downloader_up{{downloader=\"{}\"}} 1",
            kind.name()
        )),
        "{metrics}"
    );

    // The alternative limits switched on in the client: that is the one set now, the mode is
    // left as the person set it.
    t.alternative(true).await;
    reading_until(&mut c, "the alternative limit set", |r| {
        r.mode == Mode::Alternative && r.value(alt_field(kind)) == Some(limit_35(kind))
    })
    .await;

    let stop = d.stop().await;
    assert_eq!(stop.restore_failures, 0);
    let after = c.read().await.unwrap();
    assert_eq!(after.values, originals(kind), "every original back");
    assert_eq!(after.mode, Mode::Alternative, "the mode is the person's");
    assert_eq!(
        h.ledger().settings().count(),
        0,
        "nothing left in the ledger"
    );
}

#[tokio::test]
async fn qbittorrent_gets_what_the_streams_leave_and_its_originals_back() {
    the_clients_get_what_the_streams_leave_and_their_originals_back(Kind::Qbittorrent).await;
}

#[tokio::test]
async fn transmission_gets_what_the_streams_leave_and_its_originals_back() {
    the_clients_get_what_the_streams_leave_and_their_originals_back(Kind::Transmission).await;
}

/// The owner's pause (`POST /api/control`) gives the torrent client its originals back, as
/// it does Jellyfin's users, and leaves the client alone (a change made meanwhile is the
/// owner's and comes back at stop); resume gives it what the streams leave again.
async fn a_pause_gives_the_client_its_originals_until_resumed(kind: Kind) {
    let Some(t) = Torrent::start(kind).await else {
        return;
    };
    let mut c = t.client();
    let (h, alice) = house(&t, PASS).await;
    let d = h.daemon("poll_interval = \"1s\"").await;
    reading_until(&mut c, "the limit the streams leave", |r| {
        r.value(normal_field(kind)) == Some(limit_35(kind))
    })
    .await;

    let (code, answer) = d.control(serde_json::json!({"action": "pause"})).await;
    assert_eq!(code, 200, "{answer}");
    reading_until(&mut c, "the originals back while paused", |r| {
        r.values == originals(kind)
    })
    .await;
    crate::common::eventually("alice's original back", || h.fake.limit(&alice) == 0).await;
    d.wait_for(|s| s["paused"] == true).await;
    // Held: the owner changes the client while paused; the daemon reads it (its view shows
    // the new limit) and leaves it alone.
    let (by_hand, by_hand_bps): (Vec<(&str, i64)>, u64) = match kind {
        Kind::Qbittorrent => (vec![("up_limit", 300 * 1024)], 300 * 1024 * 8),
        Kind::Transmission => (
            vec![("speed-limit-up", 300), ("speed-limit-up-enabled", 1)],
            300 * 8000,
        ),
    };
    c.write(&by_hand).await.unwrap();
    let changed: Vec<(&str, i64)> = originals(kind)
        .into_iter()
        .map(|(f, v)| (f, by_hand.iter().find(|(g, _)| *g == f).map_or(v, |b| b.1)))
        .collect();
    d.wait_for(|s| s["downloaders"][0]["limit_bps"] == by_hand_bps)
        .await;
    assert_eq!(
        c.read().await.unwrap().values,
        changed,
        "left alone while paused"
    );

    let (code, _) = d.control(serde_json::json!({"action": "resume"})).await;
    assert_eq!(code, 200);
    reading_until(&mut c, "the limit again after resume", |r| {
        r.value(normal_field(kind)) == Some(limit_35(kind))
    })
    .await;
    let stop = d.stop().await;
    assert_eq!(stop.restore_failures, 0);
    // What the owner set while paused is the original now.
    assert_eq!(c.read().await.unwrap().values, changed);
}

#[tokio::test]
async fn a_pause_gives_qbittorrent_its_originals_until_resumed() {
    a_pause_gives_the_client_its_originals_until_resumed(Kind::Qbittorrent).await;
}

#[tokio::test]
async fn a_pause_gives_transmission_its_originals_until_resumed() {
    a_pause_gives_the_client_its_originals_until_resumed(Kind::Transmission).await;
}

#[tokio::test]
async fn a_limit_set_by_hand_in_the_client_becomes_the_original() {
    let Some(t) = Torrent::start(Kind::Qbittorrent).await else {
        return;
    };
    let mut c = t.client();
    let (h, _) = house(&t, PASS).await;
    let d = h.daemon("poll_interval = \"1s\"").await;
    let r = reading_until(&mut c, "the limit set", |r| {
        r.value("up_limit") == Some(QBIT_35)
    })
    .await;
    // The owner sets 500 KiB/s in qBittorrent's options.
    c.write(&[("up_limit", 500 * 1024)]).await.unwrap();
    drop(r);
    // jellydemon takes it as the original, and sets its own limit again.
    crate::common::eventually("the new original in the ledger", || {
        h.ledger()
            .setting("qbittorrent/up_limit")
            .is_some_and(|e| e.original == 500 * 1024)
    })
    .await;
    reading_until(&mut c, "the limit set again", |r| {
        r.value("up_limit") == Some(QBIT_35)
    })
    .await;
    d.stop().await;
    let after = c.read().await.unwrap();
    assert_eq!(
        after.value("up_limit"),
        Some(500 * 1024),
        "the hand-set original"
    );
}

#[tokio::test]
async fn a_wrong_password_is_tried_once_per_backoff_and_jellyfin_is_still_managed() {
    let Some(t) = Torrent::start(Kind::Qbittorrent).await else {
        return;
    };
    let (h, alice) = house(&t, "not-the-password").await;
    let d = h.daemon("poll_interval = \"1s\"").await;
    let s = d
        .wait_for(|s| s["downloaders"][0]["last_error"].is_string())
        .await;
    let error = s["downloaders"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("wrong user name or password"), "{error}");
    assert!(!error.contains("not-the-password"), "{error}");
    // Jellyfin's limits are managed as ever.
    crate::common::eventually("alice's limit written", || h.fake.limit(&alice) > 0).await;
    // Four more polls and plans: one login tried, not one a second.
    let polls = s["poll"]["polls"].as_u64().unwrap();
    d.wait_for(|s| s["poll"]["polls"].as_u64().unwrap() >= polls + 4)
        .await;
    let failed = t.failed_logins();
    assert!(
        (1..=1).contains(&failed),
        "{failed} failed logins (qBittorrent logs each)"
    );
    let mut c = t.client();
    assert_eq!(c.read().await.unwrap().values, originals(Kind::Qbittorrent));
    d.stop().await;
}

#[tokio::test]
async fn a_client_killed_and_started_again_is_managed_again() {
    let Some(mut t) = Torrent::start(Kind::Transmission).await else {
        return;
    };
    let mut c = t.client();
    let (h, _) = house(&t, PASS).await;
    let d = h.daemon("poll_interval = \"1s\"").await;
    reading_until(&mut c, "the limit set", |r| {
        r.value("speed-limit-up") == Some(TRANSMISSION_35)
    })
    .await;
    // Killed: its settings file still holds the originals, and it is down for a while.
    t.kill();
    d.wait_for(|s| s["downloaders"][0]["up"] == false).await;
    t.restart().await;
    let mut c = t.client();
    reading_until(&mut c, "the limit set again after the restart", |r| {
        r.value("speed-limit-up") == Some(TRANSMISSION_35)
    })
    .await;
    d.stop().await;
    assert_eq!(
        c.read().await.unwrap().values,
        originals(Kind::Transmission)
    );
}

#[tokio::test]
async fn after_a_sigkill_the_next_start_and_restore_put_the_originals_back() {
    let Some(t) = Torrent::start(Kind::Qbittorrent).await else {
        return;
    };
    let mut c = t.client();
    let (h, _) = house(&t, PASS).await;
    let cfg = std::fs::read_to_string(&h.config_path).unwrap()
        + "\n[daemon]\nlisten = \"127.0.0.1:0\"\npoll_interval = \"1s\"\n";
    std::fs::write(&h.config_path, cfg).unwrap();
    let run = crate::common::spawn_run(&h.config_path);
    reading_until(&mut c, "the limit set", |r| {
        r.value("up_limit") == Some(QBIT_35)
    })
    .await;
    run.signal(Signal::KILL);
    run.wait(Duration::from_secs(10)).await;
    // The limit stays; the ledger knows the original.
    assert_eq!(c.read().await.unwrap().value("up_limit"), Some(QBIT_35));
    assert_eq!(
        h.ledger().setting("qbittorrent/up_limit").unwrap().original,
        100 * 1024
    );
    // The next start manages it as its own, and its stop puts the original back.
    let run = crate::common::spawn_run(&h.config_path);
    // Its first plan has set the limit (again) when it says so.
    run.line("the first plan", |l| l.contains("recomputed"))
        .await;
    run.signal(Signal::TERM);
    assert_eq!(run.wait(Duration::from_secs(30)).await.code, 0);
    assert_eq!(c.read().await.unwrap().values, originals(Kind::Qbittorrent));
    assert_eq!(h.ledger().settings().count(), 0);
}

#[tokio::test]
async fn restore_after_a_kill_between_the_ledger_and_the_client_write() {
    let Some(t) = Torrent::start(Kind::Transmission).await else {
        return;
    };
    let mut c = t.client();
    let (h, _) = house(&t, PASS).await;
    // What a SIGKILL leaves right after the intent was synced and before the request went
    // out: the original and the value about to be written, in flight (its time has passed).
    std::fs::write(
        &h.state_path,
        serde_json::json!({
            "version": 3,
            "users": {},
            "downloaders": {
                "transmission/speed-limit-up": {
                    "name": "transmission", "original": 100, "ours": [4375],
                    "in_flight": [{"value": 4375, "until_ms": 1}]
                },
                "transmission/speed-limit-up-enabled": {
                    "name": "transmission", "original": 0, "ours": [1],
                    "in_flight": [{"value": 1, "until_ms": 1}]
                }
            }
        })
        .to_string(),
    )
    .unwrap();
    let (code, out, err) = h.cli(&["restore"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("already at its originals"), "{out}");
    assert_eq!(h.ledger().settings().count(), 0);
    // And when the write did land: restore puts the original back.
    c.write(&[("speed-limit-up", 4375), ("speed-limit-up-enabled", 1)])
        .await
        .unwrap();
    std::fs::write(
        &h.state_path,
        serde_json::json!({
            "version": 3,
            "users": {},
            "downloaders": {
                "transmission/speed-limit-up": {"name": "transmission", "original": 100, "ours": [4375]},
                "transmission/speed-limit-up-enabled": {"name": "transmission", "original": 0, "ours": [1]}
            }
        })
        .to_string(),
    )
    .unwrap();
    let (code, out, err) = h.cli(&["restore"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("speed-limit-up restored 35 Mbps -> 0.8 Mbps"),
        "{out}"
    );
    assert_eq!(
        c.read().await.unwrap().values,
        originals(Kind::Transmission)
    );
    assert_eq!(h.ledger().settings().count(), 0);
}

#[tokio::test]
async fn check_logs_in_once_and_says_what_it_reads_or_what_is_wrong() {
    let Some(t) = Torrent::start(Kind::Qbittorrent).await else {
        return;
    };
    let (h, _) = house(&t, PASS).await;
    let (code, out, err) = h.cli(&["check"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("downloader qbittorrent: qbittorrent v4.")
            && out.contains("upload limit 0.82 Mbps, uploading 0 Mbps now"),
        "{out}"
    );
    assert!(
        out.contains("downloaders: priority streams, at least 1 Mbps together"),
        "{out}"
    );
    assert_eq!(t.failed_logins(), 0);

    let (h, _) = house(&t, "not-the-password").await;
    let (code, out, err) = h.cli(&["check"]).await;
    assert_ne!(code, 0, "{out}{err}");
    assert!(out.contains("wrong user name or password"), "{out}");
    assert!(!out.contains("not-the-password"), "{out}");
    assert_eq!(t.failed_logins(), 1, "one login tried");
    assert_eq!(
        t.client().read().await.unwrap().values,
        originals(Kind::Qbittorrent)
    );
}

#[tokio::test]
async fn the_bug_report_shows_the_clients_and_never_their_password() {
    let Some(t) = Torrent::start(Kind::Qbittorrent).await else {
        return;
    };
    let (h, _) = house(&t, PASS).await;
    // The password inline this time, in config.toml itself.
    let cfg = std::fs::read_to_string(&h.config_path).unwrap();
    let file_line = cfg
        .lines()
        .find(|l| l.starts_with("password_file"))
        .unwrap()
        .to_string();
    std::fs::write(
        &h.config_path,
        cfg.replace(&file_line, &format!("password = \"{PASS}\"")),
    )
    .unwrap();
    let d = h.daemon("poll_interval = \"1s\"").await;
    d.wait_for(|s| s["downloaders"][0]["limit_bps"].as_u64().is_some())
        .await;
    let addr = d.url.trim_start_matches("http://").to_string();
    let (code, out, err) = h
        .cli(&["report", "--output", "-", "--address", &addr])
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("torrent clients (together at most 35000000 bit/s):"),
        "{out}"
    );
    assert!(out.contains("qbittorrent"), "{out}");
    assert!(!out.contains(PASS) && !err.contains(PASS), "{out}");
    d.stop().await;
}

/// A remote PlaybackStart lowers the torrent client at once, before the debounced plan: with
/// a debounce of 3 s, qBittorrent's limit falls by what bob's 30 Mbps item needs (x 1.1)
/// within a second of the webhook, and the plan then settles it.
#[tokio::test]
async fn a_remote_start_makes_room_in_the_torrent_client_before_the_plan() {
    let Some(t) = Torrent::start(Kind::Qbittorrent).await else {
        return;
    };
    let mut c = t.client();
    let (h, _) = house(&t, PASS).await;
    let bob = h.fake.add_user("bob", |_| {});
    let d = h.daemon("poll_interval = \"1m\"\ndebounce = \"3s\"").await;
    reading_until(&mut c, "the limit the streams leave", |r| {
        r.value("up_limit") == Some(QBIT_35)
    })
    .await;
    let session = h
        .fake
        .add_session(Some(&bob), Some("198.51.100.9"), "Jellyfin Web", None);
    h.fake
        .start_playback(&session, Playback::direct("Film", Some(30 * M), None));
    let body = serde_json::json!({
        "NotificationType": "PlaybackStart",
        "UserId": crate::common::dashed(&bob),
        "Id": session,
        "RemoteEndPoint": "198.51.100.9",
        "Video_0_BitRate": 30 * M,
    })
    .to_string();
    // The room is what bob's film needs, 30 Mbps times the overhead (33 Mbps), but no more
    // than his limit in force, which caps the stream when it starts: the join share the
    // start-up plan wrote for him, which the daemon knows from the writer's report.
    let room = (33 * M).min(h.fake.limit(&bob));
    assert!(room > 0);
    let sent = tokio::time::Instant::now();
    assert!(d.hook(&body).await.status().is_success());
    // 35 Mbps less the room, in KiB/s (with all of 33 Mbps: 2 Mbps, 244 KiB/s).
    let left_kib = (35 * M - room) / 8 / 1024;
    reading_until(&mut c, "room made for bob", |r| {
        r.value("up_limit") == Some(left_kib * 1024)
    })
    .await;
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "before the 3 s debounce: {:?}",
        sent.elapsed()
    );
    d.stop().await;
    assert_eq!(c.read().await.unwrap().values, originals(Kind::Qbittorrent));
}

/// A torrent client renamed or removed from the configuration: its originals stay in the
/// state file, and `restore` says which to set by hand (it cannot reach a client it no
/// longer knows).
#[tokio::test]
async fn originals_of_a_client_no_longer_configured_are_kept_and_named() {
    let fake = FakeJellyfin::new(crate::common::KEY);
    let h = Harness::start(fake, "", "").await;
    std::fs::write(
        &h.state_path,
        serde_json::json!({
            "version": 3,
            "users": {},
            "downloaders": {
                "seedbox/up_limit": {"name": "seedbox", "original": 102400, "ours": [4374528]}
            }
        })
        .to_string(),
    )
    .unwrap();
    let (code, out, err) = h.cli(&["restore"]).await;
    assert_eq!(code, 6, "{out}{err}");
    assert!(
        out.contains("no [[downloader]] or [[server]] of this name any more")
            && out.contains("up_limit = 102400"),
        "{out}"
    );
    assert!(
        err.contains("1 torrent client(s) or media server(s) could not be restored"),
        "{err}"
    );
    assert_eq!(h.ledger().settings().count(), 1, "kept for the next try");
}

/// Two clients on the link share what the streams leave: together at most 35 Mbps, each
/// limited, each given its originals back.
#[tokio::test]
async fn two_clients_share_what_the_streams_leave() {
    let (Some(q), Some(t)) = (
        Torrent::start(Kind::Qbittorrent).await,
        Torrent::start(Kind::Transmission).await,
    ) else {
        return;
    };
    let (h, _) = streaming_house(&format!(
        "{}\n{}\n[bandwidth.downloaders]\ninterval = \"1s\"\n",
        q.config(PASS),
        t.config(PASS)
    ))
    .await;
    let d = h.daemon("poll_interval = \"1s\"").await;
    let s = d
        .wait_for(|s| {
            let l = |i: usize| s["downloaders"][i]["limit_bps"].as_u64();
            l(0).is_some_and(|a| a < 35_000_000) && l(1).is_some_and(|b| b < 35_000_000)
        })
        .await;
    let limits: Vec<u64> = (0..2)
        .map(|i| s["downloaders"][i]["limit_bps"].as_u64().unwrap())
        .collect();
    assert!(limits.iter().sum::<u64>() <= 35_000_000, "{limits:?}");
    assert!(
        limits.iter().all(|l| *l >= 4_000_000),
        "an even part at least: {limits:?}"
    );
    d.stop().await;
    assert_eq!(
        q.client().read().await.unwrap().values,
        originals(Kind::Qbittorrent)
    );
    assert_eq!(
        t.client().read().await.unwrap().values,
        originals(Kind::Transmission)
    );
}
