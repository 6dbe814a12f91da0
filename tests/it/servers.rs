//! Several media servers on one budget (`[[server]]` of kind `jellyfin`, `emby` and `plex`,
//! `src/adapters/jellyfin/fleet.rs`): two Jellyfin fakes, a fake Emby (`src/sim/emby.rs`) and a fake
//! Plex (`src/sim/plex.rs`) share the 55 Mbps of the harness.
//! * every server's remote users are claimants in the same water-filling, and Plex is one
//!   whose share becomes its `WanTotalMaxUploadRate`: the limits split across the servers;
//! * a member's user ids carry its name (`emby:…`), its names `@emby`; each limit is written
//!   to the user's own server, the whole policy kept;
//! * a server that is down leaves the others managed, the `[jellyfin]` one included;
//! * the stop puts every original back on every server, Plex's total too.

use crate::common::{Harness, KEY, M, eventually};
use jellydemon::sim::fake::{FakeJellyfin, Playback};
use jellydemon::sim::plex::FakePlex;

const KEY2: &str = "second-jellyfin-key-0123456789ab";
const EMBY_KEY: &str = "emby-key-0123456789abcdef012345";
const PLEX_TOKEN: &str = "plex-token-0123456789";

/// A remote user on `fake` streaming a 40 Mbps remux from `ip`; their id and the session's.
fn streamer(fake: &FakeJellyfin, name: &str, ip: &str) -> (String, String) {
    let id = fake.add_user(name, |_| {});
    let session = fake.add_session(
        Some(&id),
        Some(ip),
        "Jellyfin Web",
        Some(Playback::direct("Remux", Some(40 * M), None)),
    );
    (id, session)
}

struct House {
    h: Harness,
    second: FakeJellyfin,
    emby: FakeJellyfin,
    plex: FakePlex,
    alice: String,
    bob: (String, String),
    carol: (String, String),
    _stops: Vec<tokio_util::sync::CancellationToken>,
}

/// alice streams on the `[jellyfin]` server, bob on the second Jellyfin, carol on Emby (served
/// under `/emby`, her original limit 9 Mbps) and one account on Plex (its total 80 Mbps by
/// hand).
async fn house() -> House {
    let primary = FakeJellyfin::new(KEY);
    let (alice, _) = streamer(&primary, "alice", "203.0.113.10");
    let second = FakeJellyfin::new(KEY2);
    let bob = streamer(&second, "bob", "203.0.113.20");
    let emby = FakeJellyfin::emby(EMBY_KEY);
    emby.set_base_path("/emby");
    let carol = streamer(&emby, "carol", "203.0.113.30");
    emby.set_limit_by_hand(&carol.0, 9 * M);
    let plex = FakePlex::new(PLEX_TOKEN);
    plex.set_wan_total_kbps(80_000);
    plex.add_session("dora", "wan", 30_000);
    let (second_url, _, second_stop) = second.spawn().await;
    let (emby_url, _, emby_stop) = emby.spawn().await;
    let (plex_url, plex_stop) = plex.spawn().await;
    let servers = format!(
        "[[server]]\nkind = \"jellyfin\"\nname = \"den\"\nurl = \"{second_url}\"\n\
         api_key = \"{KEY2}\"\ninterval = \"1s\"\ntimeout = \"1s\"\n\
         [[server]]\nkind = \"emby\"\nurl = \"{emby_url}\"\napi_key = \"{EMBY_KEY}\"\n\
         interval = \"1s\"\ntimeout = \"1s\"\n\
         [[server]]\nkind = \"plex\"\nurl = \"{plex_url}\"\ntoken = \"{PLEX_TOKEN}\"\n\
         interval = \"1s\"\ntimeout = \"1s\"\n"
    );
    let h = Harness::start(primary, "", &servers).await;
    House {
        h,
        second,
        emby,
        plex,
        alice,
        bob,
        carol,
        _stops: vec![second_stop, emby_stop, plex_stop],
    }
}

impl House {
    /// Each user's limit and Plex's total, in bits/s.
    fn limits(&self) -> [i64; 4] {
        [
            self.h.fake.limit(&self.alice),
            self.second.limit(&self.bob.0),
            self.emby.limit(&self.carol.0),
            self.plex.wan_total_kbps() * 1000,
        ]
    }
}

#[tokio::test]
async fn four_servers_share_one_budget_and_get_their_originals_back() {
    let house = house().await;
    let d = house.h.daemon("").await;

    // Plex's 30 Mbps stream is kept for it until it follows its new total; the 25 Mbps left
    // go to the three remote users on three servers alike, Plex's total is its share.
    let share = 25 * M / 3;
    eventually("the users share what Plex leaves", || {
        house.limits()[..3] == [share, share, share]
    })
    .await;
    let s = d
        .wait_for(|s| s["server_limits"][0]["limit_bps"].is_u64())
        .await;
    let plex_share = s["server_shares"][0]["limit"].as_i64().unwrap();
    assert!(plex_share > share && plex_share <= 30 * M, "{s:#}");
    eventually("Plex's total becomes its share", || {
        house.plex.wan_total_kbps() == plex_share / 1000
    })
    .await;

    // Each write went to the user's own server, in its own dialect, the whole policy kept.
    let posts = house.emby.policy_posts();
    assert!(!posts.is_empty());
    for (id, policy) in &posts {
        assert_eq!(id, &house.carol.0);
        assert_eq!(policy["SimultaneousStreamLimit"], 0, "{policy}");
        assert!(policy.get("PasswordResetProviderId").is_none(), "{policy}");
    }
    assert!(
        house
            .emby
            .requests()
            .iter()
            .all(|r| r.status != 401 && r.headers.iter().all(|h| h != "authorization")),
        "Emby is spoken to with X-Emby-Token"
    );
    let posts = house.second.policy_posts();
    assert!(!posts.is_empty());
    assert!(posts.iter().all(|(id, _)| id == &house.bob.0));
    let users = &s["last_decision"]["users"];
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["user"].as_str())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for name in ["alice", "bob@den", "carol@emby"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let carol = jellydemon::ids::UserId::new(format!("emby:{}", house.carol.0));
    assert_eq!(
        house.h.ledger().original(&carol),
        Some(9 * M),
        "Emby's original is kept under the server's name"
    );

    // Each member is shown: in /api/state, /metrics and `check` (with no user's name).
    let s = d.state().await;
    let members = s["media_servers"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{s:#}");
    assert_eq!(members[0]["name"], "den");
    assert_eq!(members[0]["kind"], "jellyfin");
    assert_eq!(members[1]["name"], "emby");
    assert_eq!(members[1]["kind"], "emby");
    for m in members {
        assert_eq!(m["up"], true, "{m}");
        assert_eq!(m["users"], 1, "{m}");
        assert_eq!(m["playing"], 1, "{m}");
        assert!(m["last_error"].is_null(), "{m}");
    }
    let metrics = d.text("/metrics").await;
    for line in [
        "jellydemon_media_server_up{server=\"den\",kind=\"jellyfin\"} 1",
        "jellydemon_media_server_up{server=\"emby\",kind=\"emby\"} 1",
        "jellydemon_media_server_playing{server=\"emby\",kind=\"emby\"} 1",
        "jellydemon_media_server_users{server=\"den\",kind=\"jellyfin\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    let (_, out, _) = house.h.cli(&["check"]).await;
    assert!(
        out.contains("server den: Jellyfin Server 10.11.11 at http://127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("1 user, 1 playing"), "{out}");
    assert!(
        out.contains("server emby: Emby Server 4.8.11.0 at http://127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("/emby, 1 user, 1 playing"), "{out}");
    for secret in [KEY2, EMBY_KEY] {
        assert!(!out.contains(secret) && !metrics.contains(secret));
        assert!(!s.to_string().contains(secret));
    }

    // Emby goes down and bob stops on the second Jellyfin: the others are managed on
    // (carol's last read stands in, her stream likely plays on).
    house.emby.fail_all(500);
    house.second.stop_playback(&house.bob.1);
    planned(&d, "bob@den", 0, false).await;
    eventually("alice gets what bob left", || {
        house.h.fake.limit(&house.alice) > share
    })
    .await;
    let s = d.wait_for(|s| s["media_servers"][1]["up"] == false).await;
    let emby = &s["media_servers"][1];
    assert!(
        emby["last_error"].as_str().unwrap().contains("500"),
        "{emby}"
    );
    assert_eq!(emby["playing"], 1, "its last read stands in: {emby}");
    let (code, out, _) = house.h.cli(&["check"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("The daemon manages the other servers meanwhile"),
        "{out}"
    );

    // Emby is back and the `[jellyfin]` server goes down: bob plays again, then carol stops,
    // and bob gets what she left.
    house.emby.clear_faults();
    house.h.fake.fail_all(500);
    house
        .second
        .start_playback(&house.bob.1, Playback::direct("Remux", Some(40 * M), None));
    planned(&d, "bob@den", 1, true).await;
    let before = house.second.limit(&house.bob.0);
    house.emby.stop_playback(&house.carol.1);
    planned(&d, "carol@emby", 0, true).await;
    eventually(
        "bob gets what carol left while the [jellyfin] server is down",
        || house.second.limit(&house.bob.0) > before,
    )
    .await;

    // The stop puts every original back, on every server.
    house.h.fake.clear_faults();
    d.stop().await;
    assert_eq!(house.h.fake.limit(&house.alice), 0);
    assert_eq!(house.second.limit(&house.bob.0), 0);
    assert_eq!(house.emby.limit(&house.carol.0), 9 * M);
    assert_eq!(house.plex.wan_total_kbps(), 80_000);
}

/// Wait for a plan in which `user` has `streams` streams: made on the change on another
/// server, or, when `stale` (from the last model of the `[jellyfin]` server, which cannot be
/// read), on that or on the retry of the failed read, whichever comes first.
async fn planned(d: &crate::common::Daemon, user: &str, streams: u64, stale: bool) {
    d.wait_for(|s| {
        let plan = &s["last_decision"];
        (plan["trigger"] == "server" || stale && plan["trigger"] == "poll")
            && plan["from_stale_model"] == stale
            && plan["users"].as_array().is_some_and(|u| {
                u.iter()
                    .any(|u| u["user"] == user && u["streams"] == streams)
            })
    })
    .await;
}

#[tokio::test]
async fn the_same_person_on_two_servers_is_one_claimant_with_match_users_by_name() {
    // alice has an account on both servers and streams on the second one; bob streams on the
    // `[jellyfin]` one.
    let primary = FakeJellyfin::new(KEY);
    let alice = primary.add_user("Alice", |_| {});
    let (bob, _) = streamer(&primary, "bob", "203.0.113.10");
    let second = FakeJellyfin::new(KEY2);
    let (alice_den, _) = streamer(&second, "alice", "203.0.113.20");
    let (second_url, _, _stop) = second.spawn().await;
    let servers = format!(
        "[[server]]\nkind = \"jellyfin\"\nname = \"den\"\nurl = \"{second_url}\"\n\
         api_key = \"{KEY2}\"\ninterval = \"1s\"\ntimeout = \"1s\"\nmatch_users_by_name = true\n"
    );
    let h = Harness::start(primary, "", &servers).await;
    let d = h.daemon("").await;

    // Two claimants (alice, matched in any case, and bob): 55 Mbps split in two, and alice's
    // limit written on both servers.
    let half = 55 * M / 2;
    let half = half - half % (M / 2);
    eventually("alice and bob share the budget as two", || {
        h.fake.limit(&bob) == half && second.limit(&alice_den) == half
    })
    .await;
    eventually("alice's limit is the same on both servers", || {
        h.fake.limit(&alice) == half
    })
    .await;
    let s = d.state().await;
    let plan = &s["last_decision"];
    assert_eq!(plan["claimants"], 2, "{plan:#}");
    let mirror = plan["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == "alice@den")
        .unwrap();
    assert!(
        mirror["reason"]
            .as_str()
            .unwrap()
            .starts_with("the same person as Alice"),
        "{mirror}"
    );
    d.stop().await;
    assert_eq!(h.fake.limit(&alice), 0);
    assert_eq!(second.limit(&alice_den), 0);
}

#[tokio::test]
async fn reconcile_once_and_restore_reach_every_server() {
    // One stream on each server, the Emby user's original 9 Mbps.
    let house = house().await;
    let (code, out, err) = house.h.cli(&["reconcile", "--once"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("bob@den") && out.contains("carol@emby"),
        "{out}"
    );
    let [alice, bob, carol, _] = house.limits();
    assert!(alice > 0 && bob > 0 && carol > 0, "{:?}", house.limits());
    assert_ne!(carol, 9 * M);
    let ledger = house.h.ledger();
    assert_eq!(ledger.len(), 3, "an original per user, per server");
    drop(ledger);

    // `restore` puts each one back on its own server and empties the state file.
    let (code, out, err) = house.h.cli(&["restore"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(house.h.fake.limit(&house.alice), 0);
    assert_eq!(house.second.limit(&house.bob.0), 0);
    assert_eq!(house.emby.limit(&house.carol.0), 9 * M);
    assert!(house.h.ledger().is_empty());
}

/// The other servers' webhooks (`POST /hook/{server}`): the Jellyfin plugin of a second
/// Jellyfin and Emby's own webhooks make the daemon read that server at once instead of at
/// its next `interval` (an hour here); the plugin's once-a-second progress reads nothing.
#[tokio::test]
async fn a_webhook_from_another_server_reads_it_at_once() {
    use axum::http::Method;
    let primary = FakeJellyfin::new(KEY);
    let second = FakeJellyfin::new(KEY2);
    let bob = second.add_user("bob", |_| {});
    let bob_session = second.add_session(Some(&bob), Some("203.0.113.20"), "Jellyfin Web", None);
    let emby = FakeJellyfin::emby(EMBY_KEY);
    let carol = emby.add_user("carol", |_| {});
    let carol_session = emby.add_session(Some(&carol), Some("203.0.113.30"), "Emby Web", None);
    let (second_url, _, _second_stop) = second.spawn().await;
    let (emby_url, _, _emby_stop) = emby.spawn().await;
    let servers = format!(
        "[[server]]\nkind = \"jellyfin\"\nname = \"den\"\nurl = \"{second_url}\"\n\
         api_key = \"{KEY2}\"\ninterval = \"1h\"\n\
         [[server]]\nkind = \"emby\"\nurl = \"{emby_url}\"\napi_key = \"{EMBY_KEY}\"\n\
         interval = \"1h\"\n"
    );
    let h = Harness::start(primary, "", &servers).await;
    let d = h.daemon("").await;
    let token = crate::common::HOOK_TOKEN;
    let hook = |server: &str| format!("{}/hook/{server}", d.url);
    let reads = |fake: &FakeJellyfin| fake.count(&Method::GET, "/Sessions");
    // The members' watch reads each server once at the start.
    eventually("the watch's first read", || reads(&second) >= 2).await;
    let before = reads(&second);

    // bob starts on the second Jellyfin; its plugin first floods progress, which reads nothing.
    second.start_playback(&bob_session, Playback::direct("Remux", Some(40 * M), None));
    let progress = d
        .http
        .post(hook("den"))
        .header("X-Jellydemon-Token", token)
        .body(r#"{"NotificationType":"PlaybackProgress","UserId":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(progress.status(), 202);
    assert_eq!(progress.text().await.unwrap(), r#"{"status":"ignored"}"#);
    let refused = d
        .http
        .post(hook("den"))
        .body(r#"{"NotificationType":"PlaybackStart"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let unknown = d
        .http
        .post(format!("{}?token={token}", hook("attic")))
        .body(r#"{"NotificationType":"PlaybackStart"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        reads(&second),
        before,
        "no read for progress or a refused call"
    );
    let start = d
        .http
        .post(hook("den"))
        .header("X-Jellydemon-Token", token)
        .body(r#"{"NotificationType":"PlaybackStart","UserId":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 202);
    planned(&d, "bob@den", 1, false).await;

    // carol starts on Emby, whose webhook (multipart by default before Emby 4.9) carries
    // the secret in the query; then she stops and a JSON webhook says so.
    emby.start_playback(
        &carol_session,
        Playback::direct("Remux", Some(40 * M), None),
    );
    let multipart = d
        .http
        .post(format!("{}?token={token}", hook("emby")))
        .header("Content-Type", "multipart/form-data; boundary=b")
        .body("--b\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n{}\r\n--b--\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(multipart.status(), 202);
    planned(&d, "carol@emby", 1, false).await;
    emby.stop_playback(&carol_session);
    let stop = d
        .http
        .post(format!("{}?token={token}", hook("emby")))
        .header("Content-Type", "application/json")
        .body(r#"{"Title":"carol stopped","Event":"playback.stop","User":{"Name":"carol"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(stop.status(), 202);
    planned(&d, "carol@emby", 0, false).await;
    let bad = d
        .http
        .post(format!("{}?token={token}", hook("emby")))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("not JSON"));
    d.stop().await;
}
