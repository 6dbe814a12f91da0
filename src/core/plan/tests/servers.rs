//! Several media servers: the same person on two servers is one claimant.

use super::*;

/// A user of another server, as `src/adapters/jellyfin/fleet.rs` names it (`den:…`, `name@den`), the
/// same person as the `[jellyfin]` user `same_as` when given.
fn member_user(name: &str, limit: i64, same_as: Option<&str>) -> Account {
    let mut u = user(name, limit, false);
    u.id = UserId::new(format!("den:{}", id(name)));
    u.name = Some(UserName::new(format!("{name}@den")));
    u.server_limit = Some(0);
    u.same_as = same_as.map(uid);
    u
}

fn member_session(name: &str, ep: &str, playing: Option<Value>) -> Playback {
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
        mirror
            .reason
            .to_string()
            .starts_with("the same person as bob"),
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
