//! Streams that ignore limits, pushes down and up, the push modes, the warnings.

use super::*;

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
    sessions[1].device = crate::core::media::device_label(Some("Jellyfin Web"), Some("other"));
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
