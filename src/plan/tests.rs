use serde_json::{Value, json};

use super::reasons::idle_sentence;
use super::*;
use crate::config::Settings;
use crate::ids::UserName;
use crate::ledger::Ledger;
use crate::network::jellyfin_default_ranges;

const M: i64 = 1_000_000;

fn settings(extra_bandwidth: &str, extra: &str) -> Settings {
    Settings::from_toml_str(&format!(
        r#"
        [jellyfin]
        url = "http://127.0.0.1:8096"
        api_key = "k"
        [bandwidth]
        total_upload_mbps = 100
        reserved_mbps = 10
        step_mbps = 0.5
        {extra_bandwidth}
        {extra}
        "#
    ))
    .unwrap()
}

fn user(name: &str, limit: i64, admin: bool) -> User {
    serde_json::from_value(json!({
        "Id": id(name),
        "Name": name,
        "Policy": {
            "IsAdministrator": admin,
            "IsDisabled": false,
            "EnableRemoteAccess": true,
            "RemoteClientBitrateLimit": limit,
            "AuthenticationProviderId": "a",
            "PasswordResetProviderId": "b"
        }
    }))
    .unwrap()
}

fn id(name: &str) -> String {
    format!(
        "{:0>32}",
        name.bytes().map(|b| format!("{b:02x}")).collect::<String>()
    )[..32]
        .to_string()
}

fn uid(name: &str) -> UserId {
    UserId::new(id(name))
}

fn session(user: Option<&str>, ep: &str, playing: Option<Value>) -> Session {
    let mut v = json!({
        "Id": format!("s{}{}", user.unwrap_or("none"), ep),
        "UserId": user.map(id).unwrap_or_else(|| "0".repeat(32)),
        "RemoteEndPoint": ep,
        "Client": "Jellyfin Web",
        "DeviceName": format!("dev-{ep}"),
        "PlayState": {"IsPaused": false}
    });
    if let Some(name) = user {
        v["UserName"] = json!(name);
    }
    if let Some(p) = playing {
        for (k, val) in p.as_object().unwrap() {
            v[k] = val.clone();
        }
    }
    serde_json::from_value(v).unwrap()
}

fn direct(bitrate: i64) -> Option<Value> {
    Some(json!({"NowPlayingItem": {"MediaStreams": [{"Type": "Video", "BitRate": bitrate}]}}))
}

fn transcoding(out: i64) -> Option<Value> {
    Some(json!({
        "NowPlayingItem": {"MediaStreams": [{"Type": "Video", "BitRate": 80 * M}]},
        "TranscodingInfo": {"Bitrate": out}
    }))
}

fn paused(bitrate: i64) -> Option<Value> {
    Some(json!({
        "NowPlayingItem": {"MediaStreams": [{"Type": "Video", "BitRate": bitrate}]},
        "PlayState": {"IsPaused": true}
    }))
}

fn run(sessions: &[Session], users: &[User], server_limit: i64, s: &Settings) -> Plan {
    run_with(sessions, users, server_limit, s, &Ledger::in_memory())
}

fn run_with(
    sessions: &[Session],
    users: &[User],
    server_limit: i64,
    s: &Settings,
    ledger: &Ledger,
) -> Plan {
    run_at(
        sessions,
        users,
        s,
        ledger,
        &Memory::default(),
        Duration::ZERO,
        server_limit,
    )
}

fn run_at(
    sessions: &[Session],
    users: &[User],
    s: &Settings,
    ledger: &Ledger,
    memory: &Memory,
    now: Duration,
    server_limit: i64,
) -> Plan {
    let ranges = jellyfin_default_ranges();
    plan(
        &Inputs {
            sessions,
            users,
            server_limit,
            ranges: &ranges,
            budget_bps: s.budget().budget_bps,
            overrides: &crate::control::Overrides::NONE,
            servers: &[],
        },
        ledger,
        memory,
        now,
        s,
    )
}

/// The session accepts `SetMaxStreamingBitrate` (the web client).
fn pushable(mut s: Session) -> Session {
    s.supported_commands = vec![PUSH_COMMAND.to_string()];
    s
}

/// A transcode of `source` at `out`, of the item `item`.
fn transcode(source: i64, out: i64, item: &str) -> Option<Value> {
    Some(json!({
        "NowPlayingItem": {"Id": item, "MediaStreams": [{"Type": "Video", "BitRate": source}]},
        "TranscodingInfo": {"Bitrate": out}
    }))
}

fn decision<'a>(p: &'a Plan, name: &str) -> &'a Decision {
    p.decisions
        .iter()
        .find(|d| d.user_name == name)
        .unwrap_or_else(|| panic!("no decision for {name}: {:#?}", p.decisions))
}

fn stream<'a>(p: &'a Plan, name: &str) -> &'a StreamRef {
    &decision(p, name).streams[0]
}

/// The push a user's first stream gets: direction and bitrate.
fn pushed(p: &Plan, name: &str) -> Option<(Direction, i64)> {
    stream(p, name)
        .push
        .map(|p| (p.direction, p.bitrate as i64))
}

fn target(p: &Plan, name: &str) -> i64 {
    p.decisions
        .iter()
        .find(|d| d.user_name == name)
        .unwrap_or_else(|| panic!("no decision for {name}: {:#?}", p.decisions))
        .target
}

fn role(p: &Plan, name: &str) -> Role {
    p.decisions
        .iter()
        .find(|d| d.user_name == name)
        .unwrap()
        .role
        .clone()
}

#[test]
fn remote_users_get_their_next_items_share_and_idle_users_the_join_share() {
    let s = settings("", "");
    let users = [
        user("alice", 0, false),
        user("bob", 0, false),
        user("carol", 0, false),
    ];
    let sessions = [
        session(Some("alice"), "203.0.113.5", direct(8 * M)),
        session(Some("bob"), "2001:db8::7", direct(8 * M)),
    ];
    let p = run(&sessions, &users, 0, &s);
    // Each 8 Mbps stream wants 8.8 with the overhead; the next item of either user could take
    // what the other leaves, 90 - 8.8 = 81.2, and fits beside the other's 8: 81 after the
    // 0.5 Mbps step.
    assert_eq!(target(&p, "alice"), 81 * M);
    assert_eq!(target(&p, "bob"), 81 * M);
    assert_eq!(p.held, 16 * M as u64);
    // carol, never seen streaming, may have a client that cannot be pushed: she gets the
    // share with one more user after her, (90 - 17.6) / 2 = 36.2, and leaves him his floor.
    assert_eq!(role(&p, "carol"), Role::Idle);
    assert_eq!(target(&p, "carol"), 36 * M);
    assert!(
        decision(&p, "carol")
            .reason
            .contains("fair share with one more")
    );
}

#[test]
fn join_share_uses_what_running_streams_leave() {
    let s = settings("algorithm = \"demand\"", "");
    let users = [user("alice", 0, false), user("bob", 0, false)];
    let sessions = [session(Some("alice"), "203.0.113.5", direct(10 * M))];
    let p = run(&sessions, &users, 0, &s);
    // demand: alice's next item gets its demand, 10 x 1.1.
    assert_eq!(target(&p, "alice"), 11 * M);
    // bob: with one more after him, (90 - 11) / 2 = 39.5; 90 - 10 - 2 is free.
    assert_eq!(target(&p, "bob"), 39_500_000);
}

#[test]
fn a_remux_alone_plays_at_its_source_and_leaves_the_headroom_to_newcomers() {
    let s = settings("", "");
    let users = [user("alice", 0, false), user("bob", 0, false)];
    let sessions = [session(Some("alice"), "203.0.113.5", direct(70 * M))];
    let p = run(&sessions, &users, 0, &s);
    assert!(target(&p, "alice") >= 70 * M);
    // The remux cannot be pushed: a newcomer gets the 20 Mbps beside it, less the floor kept
    // for one more user after him; never the floor itself.
    assert_eq!(target(&p, "bob"), 18 * M);
    assert!(
        decision(&p, "bob")
            .reason
            .contains("headroom beside 72 Mbps"),
        "{}",
        decision(&p, "bob").reason
    );
}

#[test]
fn a_newcomer_beside_a_remux_is_raised_once_the_remux_has_restarted() {
    let s = settings("", "");
    let users = [user("alice", 0, false), user("bob", 0, false)];
    // bob started a 40 Mbps item at the 20 Mbps headroom beside alice's remux, which her
    // client cannot be pushed out of.
    let remux = session(Some("alice"), "203.0.113.5", direct(70 * M));
    let newcomer = pushable(session(
        Some("bob"),
        "198.51.100.9",
        transcode(40 * M, 20 * M, "b1"),
    ));
    let p = run(&[remux, newcomer.clone()], &users, 0, &s);
    // alice's next item gets the fair share beside bob's 44 Mbps demand: 90 - 44 = 46.
    assert_eq!(target(&p, "alice"), 46 * M);
    assert!(decision(&p, "alice").reason.contains("fair share 46 Mbps"));
    // bob holds what alice leaves: nothing to push yet.
    assert_eq!(target(&p, "bob"), 20 * M);
    assert_eq!(stream(&p, "bob").push, None);

    // alice's next item starts at her new 46 Mbps: bob is pushed up to his source rate.
    let restarted = session(
        Some("alice"),
        "203.0.113.5",
        transcode(70 * M, 46 * M, "a2"),
    );
    let p = run(&[restarted, newcomer], &users, 0, &s);
    assert_eq!(pushed(&p, "bob"), Some((Direction::Up, 40 * M)));
    // His limit is his share beside alice's 46 (his client keeps the pushed 40 as its own
    // maximum anyway).
    assert_eq!(target(&p, "bob"), 44 * M);
    assert_eq!(p.held, 86 * M as u64);
}

#[test]
fn a_stream_above_its_share_is_pushed_down_only_when_the_budget_needs_it() {
    let s = settings("", "");
    let users = [user("alice", 0, false), user("bob", 0, false)];
    let remux = pushable(session(Some("alice"), "203.0.113.5", direct(70 * M)));
    // Beside a 10 Mbps stream the remux still fits: no interruption.
    let p = run(
        &[
            remux.clone(),
            session(Some("bob"), "198.51.100.9", direct(10 * M)),
        ],
        &users,
        0,
        &s,
    );
    assert_eq!(stream(&p, "alice").push, None);
    assert_eq!(p.held, 80 * M as u64);
    // bob started a 40 Mbps item at 40 beside it (the remux counted at its share when his
    // join share was set): the remux is pushed down to make room, to her new limit (her
    // share beside bob's demand), since her client re-negotiates under it: a push to the
    // 50 the budget would leave her would carry 46 all the same.
    let p = run(
        &[remux, session(Some("bob"), "198.51.100.9", direct(40 * M))],
        &users,
        0,
        &s,
    );
    assert_eq!(pushed(&p, "alice"), Some((Direction::Down, 46 * M)));
    assert_eq!(target(&p, "alice"), 46 * M);
    assert_eq!(p.held, 86 * M as u64);
}

#[test]
fn an_audio_listener_does_not_reserve_what_a_4k_stream_needs() {
    let s = settings("", "");
    let users = [
        user("ann", 0, false),
        user("kim", 0, false),
        user("lee", 0, false),
    ];
    let sessions = [
        session(Some("ann"), "203.0.113.5", direct(320_000)),
        session(Some("kim"), "198.51.100.9", direct(50 * M)),
    ];
    let p = run(&sessions, &users, 0, &s);
    // The 4K stream's next item may take all but what the audio holds: it plays its source.
    assert!(target(&p, "kim") >= 55 * M, "{}", target(&p, "kim"));
    assert_eq!(p.held, 50_320_000);
    // And a newcomer still gets a real share.
    assert!(target(&p, "lee") >= 29 * M, "{}", target(&p, "lee"));
}

#[test]
fn local_paused_unknown_and_userless_sessions_do_not_claim() {
    let s = settings("", "");
    let users = [
        user("alice", 0, false),
        user("bob", 0, false),
        user("eve", 0, false),
    ];
    let sessions = [
        session(Some("alice"), "203.0.113.5", direct(8 * M)),
        session(Some("bob"), "192.168.1.20", direct(8 * M)),
        session(Some("bob"), "::ffff:10.0.0.3", direct(8 * M)),
        session(Some("eve"), "203.0.113.77", paused(8 * M)),
        session(None, "203.0.113.99", direct(8 * M)),
        session(Some("eve"), "not-an-ip", direct(8 * M)),
    ];
    let p = run(&sessions, &users, 0, &s);
    assert_eq!(role(&p, "alice"), Role::Active { streams: 1 });
    assert_eq!(role(&p, "bob"), Role::Idle);
    assert_eq!(role(&p, "eve"), Role::Idle);
    assert_eq!(target(&p, "alice"), 90 * M);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.to_string().contains("not-an-ip")),
        "{:?}",
        p.warnings
    );
    let counted: Vec<bool> = p.sessions.iter().map(|v| v.counted).collect();
    assert_eq!(counted, vec![true, false, false, false, false, false]);

    // With count_paused the paused stream claims: alice's next item fits beside its 8.
    let s = settings("count_paused = true", "");
    let p = run(&sessions, &users, 0, &s);
    assert_eq!(role(&p, "eve"), Role::Active { streams: 1 });
    assert_eq!(target(&p, "alice"), 81 * M);
}

#[test]
fn a_users_limit_applies_to_each_of_its_streams() {
    let s = settings("", "");
    let users = [user("alice", 0, false), user("bob", 0, false)];
    let sessions = [
        session(Some("alice"), "203.0.113.5", direct(8 * M)),
        session(Some("alice"), "203.0.113.6", direct(8 * M)),
        session(Some("bob"), "198.51.100.9", direct(8 * M)),
    ];
    let p = run(&sessions, &users, 0, &s);
    assert_eq!(role(&p, "alice"), Role::Active { streams: 2 });
    // alice's share is what bob leaves, 81.2; one of her streams' next item may take all of
    // it but what her other stream needs (72.4), and fits beside the 16 held by the others.
    assert_eq!(target(&p, "alice"), 72 * M);
    assert!(decision(&p, "alice").reason.contains("each of 2 streams"));
    assert_eq!(target(&p, "bob"), 72 * M);
}

#[test]
fn admins_own_cap_is_never_raised_and_server_limit_caps_users_at_zero() {
    let s = settings("", "");
    let users = [
        user("admin", 10 * M, true),
        user("bob", 0, false),
        user("carol", 0, false),
    ];
    let sessions = [
        session(Some("admin"), "203.0.113.5", direct(8 * M)),
        session(Some("bob"), "198.51.100.9", direct(8 * M)),
        session(Some("carol"), "198.51.100.10", direct(8 * M)),
    ];
    let p = run(&sessions, &users, 30 * M, &s);
    assert_eq!(target(&p, "admin"), 10 * M);
    // bob and carol at 0 are bounded by the server-wide 30 Mbps.
    assert_eq!(target(&p, "bob"), 30 * M);
    assert_eq!(target(&p, "carol"), 30 * M);
    assert!(
        decision(&p, "admin").reason.contains("own limit"),
        "{}",
        decision(&p, "admin").reason
    );
}

#[test]
fn max_per_user_caps_and_floor_below_ceiling_rule() {
    let s = settings("max_per_user_mbps = 25", "");
    let users = [user("alice", 0, false), user("tiny", M, false)];
    let sessions = [
        session(Some("alice"), "203.0.113.5", direct(8 * M)),
        session(Some("tiny"), "203.0.113.6", direct(8 * M)),
    ];
    let p = run(&sessions, &users, 0, &s);
    assert_eq!(target(&p, "alice"), 25 * M);
    // tiny's own limit (1 Mbps) is below the 2 Mbps floor: its own cap wins.
    assert_eq!(target(&p, "tiny"), M);
}

#[test]
fn the_ledger_original_is_the_ceiling_not_the_value_we_wrote() {
    let s = settings("", "");
    // alice's original was 0; jellydemon wrote 45 Mbps earlier. Alone now, she can go to 90.
    let mut ledger = Ledger::in_memory();
    let _ = ledger.record_intent(&uid("alice"), &"alice".into(), 0, 45 * M, 0);
    let users = [user("alice", 45 * M, false)];
    let sessions = [session(Some("alice"), "203.0.113.5", direct(8 * M))];
    let p = run_with(&sessions, &users, 0, &s, &ledger);
    assert_eq!(target(&p, "alice"), 90 * M);
}

#[test]
fn unmanaged_remote_streams_reduce_the_budget() {
    let s = settings("", "[users]\nexclude = [\"Guest\"]");
    let users = [user("alice", 0, false), user("guest", 0, false)];
    let sessions = [
        session(Some("alice"), "203.0.113.5", direct(8 * M)),
        session(Some("guest"), "203.0.113.6", direct(20 * M)),
    ];
    let p = run(&sessions, &users, 0, &s);
    assert_eq!(p.unmanaged_bps, 20 * M as u64);
    assert_eq!(target(&p, "alice"), 70 * M);
    assert!(p.decisions.iter().all(|d| d.user_name != "guest"));
}

#[test]
fn disabled_and_no_remote_access_users_are_not_managed_and_ledger_users_are_released() {
    let s = settings("", "");
    let mut disabled = user("dis", 0, false);
    disabled.policy.as_mut().unwrap()["IsDisabled"] = json!(true);
    let mut lan_only = user("lan", 5 * M, false);
    lan_only.policy.as_mut().unwrap()["EnableRemoteAccess"] = json!(false);
    let mut ledger = Ledger::in_memory();
    let _ = ledger.record_intent(&uid("lan"), &"lan".into(), 8 * M, 5 * M, 0);
    let p = run_with(&[], &[disabled, lan_only], 0, &s, &ledger);
    assert!(p.decisions.iter().all(|d| d.user_name != "dis"));
    assert_eq!(role(&p, "lan"), Role::Release);
    assert_eq!(target(&p, "lan"), 8 * M);
}

#[test]
fn priority_weights_by_name_and_admin() {
    let s = settings(
        "algorithm = \"priority\"\n[bandwidth.priority]\nadmin_weight = 2\nusers = { alice = 3 }",
        "",
    );
    let users = [
        user("alice", 0, false),
        user("root", 0, true),
        user("bob", 0, false),
    ];
    // Three remuxes whose clients accept pushes: they share the link 3 : 2 : 1.
    let sessions = [
        pushable(session(Some("alice"), "203.0.113.5", direct(80 * M))),
        pushable(session(Some("root"), "203.0.113.6", direct(80 * M))),
        pushable(session(Some("bob"), "203.0.113.7", direct(80 * M))),
    ];
    let p = run(&sessions, &users, 0, &s);
    assert_eq!(target(&p, "alice"), 45 * M);
    assert_eq!(target(&p, "root"), 30 * M);
    assert_eq!(target(&p, "bob"), 15 * M);
    assert!(
        p.streams()
            .all(|(_, s)| s.push.map(|p| p.direction) == Some(Direction::Down))
    );
    assert_eq!(p.held, 90 * M as u64);
}

#[test]
fn demand_is_the_source_bitrate_not_the_transcode_rate() {
    let s = settings(
        "algorithm = \"demand\"\n[bandwidth.demand]\ndefault_mbps = 5\noverhead = 1.0",
        "",
    );
    let users = [
        user("tx", 0, false),
        user("dp", 0, false),
        user("unk", 0, false),
    ];
    let sessions = [
        // Transcoded down to 6 by an earlier limit; the file is 80 Mbps.
        session(Some("tx"), "203.0.113.5", transcoding(6 * M)),
        session(Some("dp"), "203.0.113.6", direct(12 * M)),
        session(
            Some("unk"),
            "203.0.113.7",
            Some(json!({"NowPlayingItem": {"MediaStreams": []}})),
        ),
    ];
    let p = run(&sessions, &users, 0, &s);
    // The transcoding user's next item gets what the others' demands leave: 90 - 12 - 5.
    assert_eq!(target(&p, "tx"), 73 * M);
    assert_eq!(target(&p, "dp"), 12 * M);
    assert_eq!(target(&p, "unk"), 5 * M);
    assert_eq!(stream(&p, "tx").source, Some(80 * M as u64));
    assert_eq!(stream(&p, "tx").rate, Some(6 * M as u64));
}

#[test]
fn overload_gives_everyone_the_floor_and_says_so() {
    let s = settings("min_per_user_mbps = 40", "");
    let users = [
        user("a", 0, false),
        user("b", 0, false),
        user("c", 0, false),
    ];
    let sessions = [
        session(Some("a"), "203.0.113.5", direct(8 * M)),
        session(Some("b"), "203.0.113.6", direct(8 * M)),
        session(Some("c"), "203.0.113.7", direct(8 * M)),
    ];
    let p = run(&sessions, &users, 0, &s);
    assert!(p.overloaded);
    for n in ["a", "b", "c"] {
        assert_eq!(target(&p, n), 40 * M);
    }
    assert!(
        p.warnings
            .iter()
            .any(|w| w.to_string().contains("overload"))
    );
}

#[test]
fn hysteresis_keeps_a_close_value_but_never_past_the_headroom() {
    let s = settings("hysteresis_percent = 10", "");
    // Computed 81 each (see above). alice holds 80 (kept: close, and lower); bob holds 83,
    // close but more than the 82 free beside alice's stream: lowered to 81.
    let mut ledger = Ledger::in_memory();
    let _ = ledger.record_intent(&uid("alice"), &"alice".into(), 0, 80 * M, 0);
    let _ = ledger.record_intent(&uid("bob"), &"bob".into(), 0, 83 * M, 0);
    let users = [user("alice", 80 * M, false), user("bob", 83 * M, false)];
    let sessions = [
        session(Some("alice"), "203.0.113.5", direct(8 * M)),
        session(Some("bob"), "203.0.113.6", direct(8 * M)),
    ];
    let p = run_with(&sessions, &users, 0, &s, &ledger);
    assert_eq!(target(&p, "alice"), 80 * M);
    assert!(decision(&p, "alice").reason.starts_with("kept"));
    assert_eq!(target(&p, "bob"), 81 * M);

    let _ = ledger.record_intent(&uid("bob"), &"bob".into(), 83 * M, 82 * M, 0);
    let users = [user("alice", 80 * M, false), user("bob", 82 * M, false)];
    let p = run_with(&sessions, &users, 0, &s, &ledger);
    assert_eq!(target(&p, "bob"), 82 * M, "82 fits beside alice's 8");
}

#[test]
fn a_client_that_ignores_limits_is_found_and_counted_at_its_rate() {
    let s = settings("", "");
    // jellydemon held alice at 20 Mbps at most lately, yet her client plays 60 directly.
    let mut ledger = Ledger::in_memory();
    let _ = ledger.record_intent(&uid("alice"), &"alice".into(), 0, 20 * M, 0);
    let users = [user("alice", 20 * M, false), user("bob", 0, false)];
    let sessions = [pushable(session(
        Some("alice"),
        "203.0.113.5",
        direct(60 * M),
    ))];
    let p = run_with(&sessions, &users, 0, &s, &ledger);
    let st = stream(&p, "alice");
    assert_eq!(
        st.uncontrolled,
        Some(Uncontrolled::StartedAbove {
            limit: 20 * M as u64
        })
    );
    // Not pushed (it would not listen), and counted at its real rate.
    assert_eq!(st.push, None);
    assert_eq!(p.held, 60 * M as u64);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.to_string().contains("ignores limits")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn a_stream_still_above_the_bitrate_it_was_pushed_to_ignores_pushes() {
    let s = settings("", "");
    let users = [user("alice", 0, false), user("bob", 0, false)];
    let remux = pushable(session(Some("alice"), "203.0.113.5", direct(70 * M)));
    let other = session(Some("bob"), "198.51.100.9", direct(40 * M));
    let sessions = [remux, other];
    let ledger = Ledger::in_memory();
    let mut memory = Memory::default();
    let p = run_at(&sessions, &users, &s, &ledger, &memory, Duration::ZERO, 0);
    let pushed = stream(&p, "alice").push.expect("pushed down").bitrate;
    memory.observe(&p, Duration::ZERO);
    memory.record_push(&stream(&p, "alice").session_id, Duration::ZERO, pushed);
    // A moment later it has not re-negotiated yet: no second push, counted as pushed.
    let p = run_at(
        &sessions,
        &users,
        &s,
        &ledger,
        &memory,
        Duration::from_secs(5),
        0,
    );
    assert_eq!(stream(&p, "alice").push, None);
    assert_eq!(stream(&p, "alice").uncontrolled, None);
    assert_eq!(p.held, 86 * M as u64);
    // Long after, still at 70: its client ignores pushes.
    let p = run_at(
        &sessions,
        &users,
        &s,
        &ledger,
        &memory,
        Duration::from_secs(60),
        0,
    );
    assert_eq!(
        stream(&p, "alice").uncontrolled,
        Some(Uncontrolled::IgnoredPush { pushed })
    );
    assert_eq!(p.held, 110 * M as u64);
}

#[test]
fn a_stream_is_raised_once_per_cooldown_and_the_plan_says_when() {
    let s = settings("", "");
    let users = [user("alice", 0, false), user("bob", 0, false)];
    // bob was pushed down to 10 two minutes ago; the room is back.
    let bob = pushable(session(
        Some("bob"),
        "198.51.100.9",
        transcode(40 * M, 10 * M, "b1"),
    ));
    let ledger = Ledger::in_memory();
    let mut memory = Memory::default();
    let first = run_at(
        std::slice::from_ref(&bob),
        &users,
        &s,
        &ledger,
        &memory,
        Duration::ZERO,
        0,
    );
    memory.observe(&first, Duration::ZERO);
    let t0 = Duration::from_secs(600);
    memory.record_push(&stream(&first, "bob").session_id, t0, 10 * M as u64);
    let later = t0 + Duration::from_secs(120);
    let p = run_at(
        std::slice::from_ref(&bob),
        &users,
        &s,
        &ledger,
        &memory,
        later,
        0,
    );
    assert_eq!(stream(&p, "bob").push, None);
    assert_eq!(p.wake_at, Some(t0 + s.daemon.push_cooldown));
    let p = run_at(
        &[bob],
        &users,
        &s,
        &ledger,
        &memory,
        t0 + s.daemon.push_cooldown,
        0,
    );
    assert_eq!(
        stream(&p, "bob").push.map(|p| p.direction),
        Some(Direction::Up)
    );
    assert_eq!(p.wake_at, None);
}

#[test]
fn push_off_and_down_modes() {
    let users = [user("alice", 0, false), user("bob", 0, false)];
    let remux = pushable(session(Some("alice"), "203.0.113.5", direct(70 * M)));
    let newcomer = pushable(session(
        Some("bob"),
        "198.51.100.9",
        transcode(40 * M, 5 * M, "b1"),
    ));
    let sessions = [remux, newcomer];
    let s = settings("", "[daemon]\npush = \"down\"");
    let p = run(&sessions, &users, 0, &s);
    assert_eq!(
        stream(&p, "alice").push,
        None,
        "the budget does not need it"
    );
    assert_eq!(stream(&p, "bob").push, None, "never up");
    let s = settings("", "[daemon]\npush = \"both\"");
    let p = run(&sessions, &users, 0, &s);
    assert!(stream(&p, "bob").push.is_some());
    let s = settings("", "[daemon]\npush = false");
    let p = run(&sessions, &users, 0, &s);
    assert_eq!(p.push_count(), 0);
}

#[test]
fn a_written_limit_is_never_zero() {
    let s = settings("", "");
    let users = [user("a", 0, false)];
    // Budget fully consumed by unmanaged streams: the floor still applies.
    let s2 = settings("", "[users]\nexclude = [\"g\"]");
    let p = run(&[], &users, 0, &s);
    assert!(p.decisions.iter().all(|d| d.target > 0));
    let users = [user("a", 0, false), user("g", 0, false)];
    let sessions = [session(Some("g"), "203.0.113.6", direct(200 * M))];
    let p = run(&sessions, &users, 0, &s2);
    assert_eq!(target(&p, "a"), 2 * M);
}

#[test]
fn a_proxy_hiding_clients_is_reported() {
    let s = settings("", "");
    let users = [user("a", 0, false), user("b", 0, false)];
    let sessions = [
        session(Some("a"), "127.0.0.1", direct(8 * M)),
        session(Some("b"), "127.0.0.1", direct(8 * M)),
    ];
    // Distinct device names are needed for the warning: tweak the second.
    let mut sessions = sessions.to_vec();
    sessions[1].device_name = Some("other".into());
    let p = run(&sessions, &users, 0, &s);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.to_string().contains("reverse proxy")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn the_idle_users_in_one_plain_sentence() {
    const M: u64 = 1_000_000;
    assert_eq!(idle_sentence(&mut [8 * M]), "1 idle user held at 8 Mbps.");
    assert_eq!(
        idle_sentence(&mut [20 * M; 6]),
        "6 idle users held at 20 Mbps."
    );
    assert_eq!(
        idle_sentence(&mut [90 * M, 20 * M, 20 * M, 90 * M, 20 * M, 20 * M]),
        "4 idle users held at 20 Mbps and 2 at 90 Mbps."
    );
    assert_eq!(
        idle_sentence(&mut [2 * M, 20 * M, 20 * M, 9 * M]),
        "2 idle users held at 20 Mbps, 1 at 2 Mbps and 1 at 9 Mbps."
    );
}

const QBIT: &str = "[[downloader]]\nkind = \"qbittorrent\"\nurl = \"http://127.0.0.1:8080\"\n";

#[test]
fn without_downloaders_the_plan_has_no_part_for_them() {
    let s = settings("", "");
    let users = [user("alice", 0, false)];
    let p = run(
        &[session(Some("alice"), "203.0.113.1", direct(10 * M))],
        &users,
        0,
        &s,
    );
    assert_eq!(p.downloaders, None);
}

#[test]
fn streams_first_the_torrent_clients_get_what_the_streams_leave() {
    // A budget of 90; alice plays 10 Mbps, bob 30; the clients keep 1 Mbps whatever happens.
    let s = settings("", QBIT);
    let users = [
        user("alice", 0, false),
        user("bob", 0, false),
        user("carol", 0, false),
    ];
    let sessions = [
        session(Some("alice"), "203.0.113.1", direct(10 * M)),
        session(Some("bob"), "203.0.113.2", direct(30 * M)),
    ];
    let p = run(&sessions, &users, 0, &s);
    let d = p.downloaders.clone().expect("a part for the downloaders");
    assert_eq!(d.kept, 1_000_000);
    assert_eq!(d.limit, 90_000_000 - p.held);
    assert_eq!(p.held, 40_000_000, "{p:?}");
    assert!(
        d.reason.starts_with("what the remote streams leave"),
        "{}",
        d.reason
    );
    // The idle user's join share is what a newcomer gets with no seeding beside: the
    // downloaders yield, keeping only their minimum.
    let without = run(&sessions, &users, 0, &settings("", ""));
    let join = |p: &Plan| {
        p.decisions
            .iter()
            .find(|d| d.role == Role::Idle)
            .unwrap()
            .target
    };
    assert!(join(&p) <= join(&without));
    assert!(
        join(&p) >= join(&without) - M,
        "{} {}",
        join(&p),
        join(&without)
    );

    // Streams that fill the budget (they started above it and cannot be pushed) leave them
    // their minimum.
    let heavy = [
        session(Some("alice"), "203.0.113.1", direct(45 * M)),
        session(Some("bob"), "203.0.113.2", direct(80 * M)),
    ];
    let p = run(&heavy, &users, 0, &s);
    let d = p.downloaders.expect("a part");
    assert_eq!(d.limit, 1_000_000, "{d:?} held {}", p.held);
    assert!(
        d.reason.starts_with("the minimum of 1 Mbps"),
        "{}",
        d.reason
    );
}

#[test]
fn shared_the_torrent_clients_are_one_weighted_claimant() {
    let s = settings(
        "[bandwidth.downloaders]\npriority = \"share\"\nweight = 2.0",
        QBIT,
    );
    let users = [user("alice", 0, false), user("bob", 0, false)];
    // Both want more than the budget: the clients take two shares of four, 45 Mbps.
    let sessions = [
        session(Some("alice"), "203.0.113.1", direct(80 * M)),
        session(Some("bob"), "203.0.113.2", direct(80 * M)),
    ];
    let p = run(&sessions, &users, 0, &s);
    let d = p.downloaders.clone().expect("a part");
    assert_eq!(d.kept, 45_000_000, "{d:?}");
    assert!(d.limit >= 45_000_000);
    for dec in p.decisions.iter().filter(|d| d.role.is_active()) {
        assert!(dec.target <= 23 * M, "{}: {}", dec.user_name, dec.target);
    }
    // A light stream leaves them the rest.
    let light = [session(Some("alice"), "203.0.113.1", direct(5 * M))];
    let p = run(&light, &users, 0, &s);
    let d = p.downloaders.expect("a part");
    assert_eq!(d.limit, 90_000_000 - p.held, "{d:?}");
}

const CAPACITY_1: &str = "[transcoding]\ncapacity = 1";

/// Four pushable web clients whose fair shares (about 30 Mbps each beside alice and dave)
/// leave bob's 35 and carol's 40 Mbps sources transcoding.
fn two_would_transcode() -> (Vec<User>, Vec<Session>) {
    let users = ["alice", "bob", "carol", "dave"].map(|n| user(n, 0, false));
    let sessions = [
        ("alice", "203.0.113.5", 10),
        ("bob", "203.0.113.6", 35),
        ("carol", "203.0.113.7", 40),
        ("dave", "203.0.113.8", 20),
    ]
    .map(|(n, ep, mbps)| pushable(session(Some(n), ep, direct(mbps * M))));
    (users.to_vec(), sessions.to_vec())
}

#[test]
fn without_a_capacity_the_shares_transcode_whatever_the_server_can_do() {
    let (users, sessions) = two_would_transcode();
    let p = run(&sessions, &users, 0, &settings("", ""));
    assert!(target(&p, "bob") < 35 * M, "{:#?}", p.decisions);
    assert!(target(&p, "carol") < 40 * M);
    assert_eq!(p.transcodes, None);
}

#[test]
fn within_the_capacity_the_smallest_stream_that_would_transcode_is_kept_direct() {
    let (users, sessions) = two_would_transcode();
    let p = run(&sessions, &users, 0, &settings("", CAPACITY_1));
    let bob = decision(&p, "bob");
    assert!(bob.target >= 35 * M, "{:#?}", p.decisions);
    assert!(
        bob.reason
            .ends_with("; kept direct play: the server transcodes 1 stream at most"),
        "{}",
        bob.reason
    );
    // carol pays for it, and transcodes: the one the server runs.
    assert!(target(&p, "carol") < 40 * M);
    assert!(!decision(&p, "carol").reason.contains("beyond capacity"));
    let load = p.transcodes.unwrap();
    assert_eq!(load.count.total(), 1);
    assert!(!load.beyond);
    assert_eq!(load.kept_direct, 1);
    assert!(
        !p.warnings
            .iter()
            .any(|w| matches!(w, Warning::TranscodeBeyondCapacity { .. }))
    );
    // What the streams then use (their source, or their limit when it makes them transcode)
    // fits the 90 Mbps.
    let used: i64 = [("alice", 10), ("bob", 35), ("carol", 40), ("dave", 20)]
        .iter()
        .map(|(n, source)| target(&p, n).min(source * M))
        .sum();
    assert!(used <= 90 * M, "{used} {:#?}", p.decisions);
}

#[test]
fn what_the_budget_cannot_keep_direct_is_reported_beyond_capacity() {
    let users = ["alice", "bob", "carol"].map(|n| user(n, 0, false));
    let sessions = [
        ("alice", "203.0.113.5", 70),
        ("bob", "203.0.113.6", 75),
        ("carol", "203.0.113.7", 80),
    ]
    .map(|(n, ep, mbps)| pushable(session(Some(n), ep, direct(mbps * M))));
    let p = run(&sessions, &users, 0, &settings("", CAPACITY_1));
    // One remux fits the 90 Mbps beside the others' floors; the other two transcode.
    assert!(target(&p, "alice") >= 70 * M, "{:#?}", p.decisions);
    for name in ["bob", "carol"] {
        let d = decision(&p, name);
        assert!(d.target < 75 * M);
        assert!(
            d.reason.contains(
                "; forces a transcode beyond capacity (2 video transcodes, the server runs 1 \
                 stream at most)"
            ),
            "{}",
            d.reason
        );
    }
    let beyond: Vec<String> = p
        .warnings
        .iter()
        .filter(|w| matches!(w, Warning::TranscodeBeyondCapacity { .. }))
        .map(ToString::to_string)
        .collect();
    assert_eq!(beyond.len(), 2, "{beyond:?}");
    assert!(beyond[0].contains("its viewers stall"), "{beyond:?}");
    assert!(p.transcodes.unwrap().beyond);
}

#[test]
fn a_local_transcode_takes_the_servers_capacity() {
    let (users, mut sessions) = two_would_transcode();
    let mut all = users.clone();
    all.push(user("erin", 0, false));
    sessions.push(session(
        Some("erin"),
        "192.168.1.20",
        transcode(20 * M, 8 * M, "local"),
    ));
    let p = run(&sessions, &all, 0, &settings("", CAPACITY_1));
    // The local transcode is the one the server runs: keeping bob direct still leaves carol
    // beyond it.
    let load = p.transcodes.unwrap();
    assert!(load.beyond, "{load:?}");
    assert_eq!(load.count.total(), 2);
    assert!(decision(&p, "carol").reason.contains("beyond capacity"));
}

#[test]
fn neither_rounding_nor_hysteresis_leaves_a_kept_stream_below_its_source() {
    let (users, mut sessions) = two_would_transcode();
    // bob's 35.3 Mbps source transcodes now at his 34.9 Mbps limit; kept direct, the 0.5 Mbps
    // step would round his limit to 35 and the 5 % hysteresis keep the 34.9: both transcode.
    sessions[1] = pushable(session(
        Some("bob"),
        "203.0.113.6",
        transcode(35_300_000, 34_900_000, "b"),
    ));
    let mut ledger = Ledger::in_memory();
    let _ = ledger.record_intent(&uid("bob"), &"bob".into(), 0, 34_900_000, 0);
    let mut users = users;
    users[1] = user("bob", 34_900_000, false);
    let s = settings(
        "",
        &format!("[bandwidth.demand]\noverhead = 1.0\n{CAPACITY_1}"),
    );
    let p = run_with(&sessions, &users, 0, &s, &ledger);
    let bob = decision(&p, "bob");
    assert_eq!(bob.target, 35_300_000, "{:#?}", p.decisions);
    assert!(!bob.reason.starts_with("kept:"), "{}", bob.reason);
}

#[test]
fn auto_capacity_is_learned_from_transcodes_that_fall_behind() {
    let s = settings("", "[transcoding]\ncapacity = \"auto\"");
    let (users, sessions) = two_would_transcode();
    let ledger = Ledger::in_memory();
    let mut memory = Memory::default();
    // Nothing learned yet: limits as without a capacity.
    let p = run_at(&sessions, &users, &s, &ledger, &memory, Duration::ZERO, 0);
    assert_eq!(p.transcodes, None);
    assert!(target(&p, "bob") < 35 * M);
    // Two local transcodes at 11 fps of 24 fps sources, for 30 s: the server runs one.
    let behind = |item: &str| {
        Some(json!({
            "NowPlayingItem": {"Id": item, "MediaStreams": [
                {"Type": "Video", "BitRate": 20 * M, "RealFrameRate": 24.0}
            ]},
            "TranscodingInfo": {"Bitrate": 8 * M, "Framerate": 11.0}
        }))
    };
    let mut local_users = users.clone();
    local_users.extend([user("erin", 0, false), user("frank", 0, false)]);
    let local = [
        session(Some("erin"), "192.168.1.20", behind("e")),
        session(Some("frank"), "192.168.1.21", behind("f")),
    ];
    for at in [Duration::from_secs(1), Duration::from_secs(31)] {
        let p = run_at(&local, &local_users, &s, &ledger, &memory, at, 0);
        assert_eq!(
            p.server_transcodes,
            transcode::Sample {
                running: 2,
                behind: true,
                measured: true
            }
        );
        memory.observe(&p, at);
    }
    assert_eq!(memory.learned_capacity(), Some(1));
    // Then the four streamers: as with capacity = 1.
    let at = Duration::from_secs(40);
    let p = run_at(&sessions, &users, &s, &ledger, &memory, at, 0);
    assert!(target(&p, "bob") >= 35 * M, "{:#?}", p.decisions);
    assert!(
        decision(&p, "bob")
            .reason
            .ends_with("kept direct play: the server transcodes 1 stream at most")
    );
}

#[test]
fn a_user_who_watched_on_a_client_that_cannot_be_pushed_joins_as_one_who_might_again() {
    let s = settings("", "");
    let users = [
        user("alice", 0, false),
        user("bob", 0, false),
        user("carol", 0, false),
        user("dave", 0, false),
    ];
    let ledger = Ledger::in_memory();
    let mut memory = Memory::default();
    let at = Duration::from_secs;
    // carol watches an episode on her TV (no pushes), then one in the browser; dave only
    // ever in the browser.
    let tv = session(Some("carol"), "203.0.113.20", direct(8 * M));
    let web = |who: &str, ep: &str| pushable(session(Some(who), ep, direct(8 * M)));
    for (t, sessions) in [
        (at(0), vec![tv, web("dave", "203.0.113.30")]),
        (at(3000), vec![web("carol", "203.0.113.21")]),
    ] {
        let p = run_at(&sessions, &users, &s, &ledger, &memory, t, 0);
        memory.observe(&p, t);
    }
    assert_eq!(memory.user_pushable(&uid("carol")), Some(false));
    assert_eq!(memory.user_pushable(&uid("dave")), Some(true));
    // Later alice and bob stream. carol's last item took pushes, but her next may be on the
    // TV again: she gets the share with one more user after her, as one never seen streaming
    // (the first test: 36 Mbps); dave, whose clients always took pushes, the larger share
    // a push can still lower.
    let sessions = [
        session(Some("alice"), "203.0.113.5", direct(8 * M)),
        session(Some("bob"), "2001:db8::7", direct(8 * M)),
    ];
    let p = run_at(&sessions, &users, &s, &ledger, &memory, at(6000), 0);
    assert_eq!(target(&p, "carol"), 36 * M);
    assert!(target(&p, "dave") > 36 * M, "{}", target(&p, "dave"));
    // Once her last ten items all played in the browser the TV is forgotten: nine more.
    let more = memory::CLIENT_ITEMS as u64 - 1;
    for n in 1..=more {
        let t = at(6000 + 3000 * n);
        let sessions = [web("carol", &format!("198.51.100.{n}"))];
        let p = run_at(&sessions, &users, &s, &ledger, &memory, t, 0);
        memory.observe(&p, t);
        let expected = Some(n == more);
        assert_eq!(memory.user_pushable(&uid("carol")), expected, "item {n}");
    }
}

/// A user of another server, as `src/jellyfin/fleet.rs` names it (`den:…`, `name@den`), the
/// same person as the `[jellyfin]` user `same_as` when given.
fn member_user(name: &str, limit: i64, same_as: Option<&str>) -> User {
    let mut u = user(name, limit, false);
    u.id = UserId::new(format!("den:{}", id(name)));
    u.name = Some(UserName::new(format!("{name}@den")));
    u.server_limit = Some(0);
    u.same_as = same_as.map(uid);
    u
}

fn member_session(name: &str, ep: &str, playing: Option<Value>) -> Session {
    let mut s = session(Some(name), ep, playing);
    s.id = crate::ids::SessionId::new(format!("den:{}", s.id.as_str()));
    s.user_id = Some(UserId::new(format!("den:{}", id(name))));
    s.user_name = Some(UserName::new(format!("{name}@den")));
    s
}

#[test]
fn the_same_person_on_two_servers_is_one_claimant_when_matched_by_name() {
    let s = settings("", "");
    // bob streams on both servers, carol on the `[jellyfin]` one, dave on the other.
    let sessions = [
        session(Some("bob"), "203.0.113.5", direct(20 * M)),
        member_session("bob", "203.0.113.6", direct(20 * M)),
        session(Some("carol"), "203.0.113.7", direct(20 * M)),
        member_session("dave", "203.0.113.8", direct(20 * M)),
    ];
    let two = [
        user("bob", 0, false),
        user("carol", 0, false),
        member_user("bob", 0, None),
        member_user("dave", 0, None),
    ];
    let one = [
        user("bob", 0, false),
        user("carol", 0, false),
        member_user("bob", 7 * M, Some("bob")),
        member_user("dave", 0, None),
    ];
    // Unmatched, bob is two claimants of four, each with his own limit.
    let p = run(&sessions, &two, 0, &s);
    assert_eq!(p.claimants(), 4);
    // Matched, bob is one of three: his two streams share one claimant's share, and the
    // limit is written on both servers, on the other one first.
    let p = run(&sessions, &one, 0, &s);
    assert_eq!(p.claimants(), 3, "{:#?}", p.decisions);
    let bob = decision(&p, "bob");
    assert_eq!(bob.streams.len(), 2, "{bob:#?}");
    let mirror = decision(&p, "bob@den");
    assert_eq!(mirror.target, bob.target);
    assert_eq!(mirror.current, 7 * M);
    assert!(
        mirror.reason.starts_with("the same person as bob"),
        "{}",
        mirror.reason
    );
    let at = |name: &str| {
        p.decisions
            .iter()
            .position(|d| d.user_name == name)
            .unwrap()
    };
    assert_eq!(at("bob@den") + 1, at("bob"));
    // His limit is per stream: his two streams share one claimant's share, so each gets
    // less than carol's one.
    assert!(bob.target < target(&p, "carol"), "{:#?}", p.decisions);
}

#[test]
fn a_match_is_dropped_when_either_user_is_not_managed() {
    let s = settings("", "[users]\nexclude = [\"bob\"]\n");
    let sessions = [member_session("bob", "203.0.113.6", direct(40 * M))];
    let users = [user("bob", 0, false), member_user("bob", 0, Some("bob"))];
    // The `[jellyfin]` bob is excluded: bob@den is managed on his own.
    let p = run(&sessions, &users, 0, &s);
    assert_eq!(p.claimants(), 1);
    assert!(decision(&p, "bob@den").role.is_active());
    assert!(p.decisions.iter().all(|d| d.user_name != "bob"));
}
