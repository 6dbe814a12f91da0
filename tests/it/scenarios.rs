//! The rule that sets limits, scenario by scenario against the fake Jellyfin (budget 100 - 10
//! = 90 Mbps), through `reconcile --once` and the daemon: exact limits, pushes and what is
//! reported.

use crate::common::{Harness, KEY, M, event, eventually};
use axum::http::Method;
use jellydemon::reconcile::reconcile_once;
use jellydemon::sim::fake::{FakeJellyfin, Playback};

/// A 70 Mbps remux (video plus the selected audio track).
fn remux(name: &str) -> Playback {
    Playback::direct(name, Some(69_360_000), Some(640_000))
}

/// A session on Android TV (which cannot be pushed) playing a 70 Mbps remux.
fn remux_on_tv(fake: &FakeJellyfin, user: &str, endpoint: &str) -> String {
    let tv = fake.add_session(Some(user), Some(endpoint), "Jellyfin Android TV", None);
    fake.start_playback(&tv, remux("Remux"));
    tv
}

async fn harness(fake: FakeJellyfin) -> Harness {
    Harness::with_budget(fake, 100, 10, "", "").await
}

async fn once(h: &Harness) -> jellydemon::reconcile::PassReport {
    let ledger = jellydemon::adapters::ledger::LedgerHandle::new(h.ledger());
    reconcile_once(&h.fleet(), &h.settings(), &ledger, false)
        .await
        .unwrap()
}

#[tokio::test]
async fn one_friend_alone_direct_plays_a_remux_and_nobody_idle_is_held_at_the_floor() {
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    let bob = fake.add_user("bob", |_| {});
    // Android TV: the stream cannot be pushed.
    let s = fake.add_session(
        Some(&alice),
        Some("203.0.113.5"),
        "Jellyfin Android TV",
        None,
    );
    let h = harness(fake).await;
    // Idle, on an idle link, everyone may have the whole budget: the remux direct-plays.
    once(&h).await;
    assert_eq!(h.fake.limit(&alice), 90 * M);
    assert_eq!(h.fake.start_playback(&s, remux("Remux")), 70 * M);

    // Once it plays, alice keeps room for it, and bob's first item gets the 20 Mbps beside it,
    // less the floor kept free for one more user after him.
    let report = once(&h).await;
    assert!(h.fake.limit(&alice) >= 70 * M);
    assert_eq!(h.fake.limit(&bob), 18 * M);
    let why = report
        .outcomes
        .iter()
        .find(|o| o.decision.user_name == "bob")
        .unwrap()
        .decision
        .reason
        .to_string();
    assert!(why.contains("headroom beside 72 Mbps"), "{why}");

    // The daemon decides the same.
    h.fake.set_limit_by_hand(&bob, 0);
    let d = h.daemon("debounce = \"50ms\"").await;
    eventually("bob's join share", || h.fake.limit(&bob) == 18 * M).await;
    assert_eq!(h.fake.limit(&alice), 90 * M);
    d.stop().await;
}

#[tokio::test]
async fn a_newcomer_beside_a_remux_starts_at_the_headroom_and_is_raised_once_it_restarts() {
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    let bob = fake.add_user("bob", |_| {});
    let tv = remux_on_tv(&fake, &alice, "203.0.113.5");
    let web = fake.add_session(Some(&bob), Some("198.51.100.9"), "Jellyfin Web", None);
    let h = harness(fake).await;
    let d = h
        .daemon("debounce = \"50ms\"\npoll_interval = \"1h\"")
        .await;
    eventually("bob's join share", || h.fake.limit(&bob) == 18 * M).await;

    // bob starts a 40 Mbps item: at most the headroom.
    let rate = h.fake.start_playback(
        &web,
        Playback::direct("Film", Some(39_360_000), Some(640_000)),
    );
    assert!(rate <= 20 * M, "{rate}");
    d.hook(&event("PlaybackStart", &bob, &web)).await;
    // alice's next item gets the fair share beside bob's 44 Mbps demand: 46.
    eventually("alice's fair share", || h.fake.limit(&alice) == 46 * M).await;
    assert_eq!(h.fake.stream_rate(&bob), rate, "nothing to push yet");

    // alice's next item starts under 46; now bob, whose client accepts pushes, is raised once
    // and plays his source.
    assert_eq!(h.fake.start_playback(&tv, remux("Remux part 2")), 46 * M);
    d.hook(&event("PlaybackStart", &alice, &tv)).await;
    eventually("bob raised to his source", || {
        h.fake.stream_rate(&bob) == 40 * M
    })
    .await;
    let st = d.wait_for(|s| s["writes"]["pushes"]["up"] == 1).await;
    assert_eq!(st["writes"]["pushes"]["down"], 0);
    assert_eq!(
        h.fake
            .count(&Method::POST, &format!("/Sessions/{web}/Command")),
        1
    );
    assert_eq!(
        h.fake
            .count(&Method::POST, &format!("/Sessions/{tv}/Command")),
        0
    );
    let reason = st["last_decision"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == "bob")
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("stream pushed up to 40 Mbps, its source rate"),
        "{reason}"
    );
    d.stop().await;
}

#[tokio::test]
async fn an_audio_listener_beside_a_4k_stream_does_not_reserve_half_the_link() {
    let fake = FakeJellyfin::new(KEY);
    let ann = fake.add_user("ann", |_| {});
    let kim = fake.add_user("kim", |_| {});
    let lee = fake.add_user("lee", |_| {});
    let mut album = Playback::direct("Album", None, Some(320_000));
    album.item_type = "Audio".into();
    fake.add_session(Some(&ann), Some("203.0.113.5"), "Jellyfin Web", Some(album));
    fake.add_session(
        Some(&kim),
        Some("198.51.100.9"),
        "Jellyfin Android TV",
        Some(Playback::direct("4K", Some(49_360_000), Some(640_000))),
    );
    let h = harness(fake).await;
    once(&h).await;
    // The first rule split the link 45 / 45 and held every newcomer at the floor. Now the
    // 4K stream's next item may take what the album leaves: it plays its source (50 Mbps,
    // 55 with the overhead).
    assert!(h.fake.limit(&kim) >= 55 * M, "{}", h.fake.limit(&kim));
    assert!(h.fake.limit(&ann) >= 2 * M);
    // A newcomer gets a real share: with one more user after him, the album at its floor and
    // the 4K stream below its demand, (90 - 2) / 3 = 29.33, which fits beside the 50.32 held
    // and that user's floor.
    assert_eq!(h.fake.limit(&lee), 29 * M);
}

#[tokio::test]
async fn a_client_that_ignores_limits_is_found_counted_at_its_rate_and_reported() {
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    let bob = fake.add_user("bob", |_| {});
    remux_on_tv(&fake, &bob, "198.51.100.9");
    let infuse = fake.add_session(Some(&alice), Some("203.0.113.5"), "Infuse", None);
    fake.ignore_limits(&infuse);
    let h = harness(fake).await;
    // The limits stay in place when it stops, as while `check` runs beside a daemon.
    let d = h
        .daemon("debounce = \"50ms\"\npoll_interval = \"1h\"\nrestore_on_exit = false")
        .await;
    eventually("alice's join share", || h.fake.limit(&alice) == 18 * M).await;

    // alice starts a 60 Mbps film; her client plays it whatever the limit.
    let rate = h.fake.start_playback(
        &infuse,
        Playback::direct("Film", Some(59_360_000), Some(640_000)),
    );
    assert_eq!(rate, 60 * M);
    d.hook(&event("PlaybackStart", &alice, &infuse)).await;
    let st = d
        .wait_for(|s| s["last_decision"]["uncontrolled_streams"] == 1)
        .await;
    let plan = &st["last_decision"];
    // Counted at its real rate beside bob's 70: the link is over, and nothing can be pushed.
    assert_eq!(plan["held_bps"], 130 * M);
    let alice_state = plan["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == "alice")
        .unwrap();
    assert_eq!(
        alice_state["stream_details"][0]["uncontrolled"],
        "started above its limit of 18 Mbps"
    );
    assert!(
        plan["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("ignores limits")),
        "{plan:#}"
    );
    let metrics = d.text("/metrics").await;
    assert!(
        metrics.contains("jellydemon_uncontrolled_streams 1"),
        "{metrics}"
    );
    d.stop().await;

    // The one-shot commands see it too: the ledger knows jellydemon never set alice above 18.
    let (code, out, err) = h.cli(&["reconcile", "--once", "--dry-run"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("60 Mbps (ignores limits)"), "{out}");
    let (_, out, err) = h.cli(&["check"]).await;
    assert!(
        out.contains(
            "alice on Infuse on Infuse device streams 60 Mbps and started above its limit"
        ),
        "{out}{err}"
    );
}

#[tokio::test]
async fn a_stream_held_low_is_raised_when_its_push_cooldown_ends() {
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    let bob = fake.add_user("bob", |_| {});
    let tv = remux_on_tv(&fake, &alice, "203.0.113.5");
    let web = fake.add_session(Some(&bob), Some("198.51.100.9"), "Jellyfin Web", None);
    fake.start_playback(
        &web,
        Playback::direct("Film", Some(39_360_000), Some(640_000)),
    );
    let h = harness(fake).await;
    let d = h
        .daemon("debounce = \"50ms\"\npoll_interval = \"1h\"\npush_cooldown = \"3s\"")
        .await;
    // 110 Mbps on 90: bob's stream, the one that can be pushed, is pushed down to 20.
    eventually("bob pushed down", || h.fake.stream_rate(&bob) == 20 * M).await;
    // alice moves on to a light episode: the room is back, but bob was pushed a moment ago.
    h.fake.start_playback(
        &tv,
        Playback::direct("Episode", Some(7_360_000), Some(640_000)),
    );
    d.hook(&event("PlaybackStart", &alice, &tv)).await;
    let st = d
        .wait_for(|s| s["last_decision"]["trigger"] == "webhook")
        .await;
    assert_eq!(st["writes"]["pushes"]["up"], 0, "within the cooldown");
    assert_eq!(h.fake.stream_rate(&bob), 20 * M);
    // When the cooldown ends the daemon plans again by itself and raises him.
    let st = d.wait_for(|s| s["writes"]["pushes"]["up"] == 1).await;
    assert_eq!(st["last_decision"]["trigger"], "wake-up");
    eventually("bob at his source", || h.fake.stream_rate(&bob) == 40 * M).await;
    d.stop().await;
}
