//! What shares the link beside the streams: the torrent clients, and the server's transcoding
//! capacity.

use super::*;

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
        d.reason
            .to_string()
            .starts_with("what the remote streams leave"),
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
        d.reason.to_string().starts_with("the minimum of 1 Mbps"),
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
fn two_would_transcode() -> (Vec<Account>, Vec<Playback>) {
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
            .to_string()
            .ends_with("; kept direct play: the server transcodes 1 stream at most"),
        "{}",
        bob.reason
    );
    // carol pays for it, and transcodes: the one the server runs.
    assert!(target(&p, "carol") < 40 * M);
    assert!(
        !decision(&p, "carol")
            .reason
            .to_string()
            .contains("beyond capacity")
    );
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
            d.reason.to_string().contains(
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
    assert!(
        decision(&p, "carol")
            .reason
            .to_string()
            .contains("beyond capacity")
    );
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
    assert!(
        !bob.reason.to_string().starts_with("kept:"),
        "{}",
        bob.reason
    );
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
            .to_string()
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
