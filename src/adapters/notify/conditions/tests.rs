use super::*;

const MIN: Duration = Duration::from_secs(60);

fn conditions() -> Conditions {
    Conditions::new(30 * MIN, 10 * MIN, 10 * MIN)
}

fn plan(overload: bool, uncontrolled: &[&str]) -> Observation {
    Observation::Plan {
        overload: overload.then_some((9, 2_000_000, 15_000_000)),
        uncontrolled: uncontrolled
            .iter()
            .map(|u| (u.to_string(), "Infuse on Apple TV".to_string(), 40_000_000))
            .collect(),
        beyond_capacity: None,
        hand_changes: vec![],
    }
}

fn kinds(n: &[Notice]) -> Vec<(EventKind, bool)> {
    n.iter().map(|n| (n.event, n.cleared)).collect()
}

#[test]
fn a_condition_is_notified_once_when_it_starts_and_once_when_it_clears() {
    let mut c = conditions();
    assert_eq!(
        kinds(&c.observe(plan(true, &[]), MIN)),
        [(EventKind::Overload, false)]
    );
    assert!(
        c.observe(plan(true, &[]), 2 * MIN).is_empty(),
        "not while it lasts"
    );
    assert_eq!(
        kinds(&c.observe(plan(false, &[]), 3 * MIN)),
        [(EventKind::Overload, true)]
    );
    assert!(c.observe(plan(false, &[]), 4 * MIN).is_empty());
    // Again within the cooldown: neither its start nor its end.
    assert!(c.observe(plan(true, &[]), 5 * MIN).is_empty());
    assert!(c.observe(plan(false, &[]), 6 * MIN).is_empty());
    // After the cooldown: both.
    assert_eq!(c.observe(plan(true, &[]), 40 * MIN).len(), 1);
    let n = c.observe(plan(false, &[]), 41 * MIN);
    assert_eq!(n[0].severity, Severity::Success);
}

#[test]
fn unreachable_is_notified_only_after_the_threshold() {
    let mut c = conditions();
    let err = || Observation::Poll(Some("HTTP 503".into()));
    for m in 0..10 {
        assert!(c.observe(err(), m * MIN).is_empty(), "minute {m}");
    }
    let n = c.observe(err(), 10 * MIN);
    assert_eq!(kinds(&n), [(EventKind::JellyfinUnreachable, false)]);
    assert!(
        n[0].message.contains("for 10 min: HTTP 503"),
        "{}",
        n[0].message
    );
    assert!(n[0].message.contains("jellydemon check"));
    assert!(c.observe(err(), 11 * MIN).is_empty());
    assert_eq!(
        kinds(&c.observe(Observation::Poll(None), 12 * MIN)),
        [(EventKind::JellyfinUnreachable, true)]
    );
    // A short outage is never notified, nor its end.
    assert!(c.observe(err(), 50 * MIN).is_empty());
    assert!(c.observe(Observation::Poll(None), 51 * MIN).is_empty());
    assert_eq!(c.active(), []);
}

#[test]
fn writes_failing_and_clients_ignoring_limits_are_edges_too() {
    let mut c = conditions();
    assert!(
        c.observe(Observation::Write(Some("HTTP 500".into())), MIN)
            .is_empty()
    );
    let n = c.observe(Observation::Write(Some("HTTP 500".into())), 11 * MIN);
    assert_eq!(kinds(&n), [(EventKind::WritesFailing, false)]);
    assert_eq!(c.active(), [(EventKind::WritesFailing, String::new())]);

    let n = c.observe(plan(false, &["User-001", "User-002"]), 12 * MIN);
    assert_eq!(n.len(), 2);
    assert!(
        n[0].message.contains("Infuse on Apple TV at 40 Mbps"),
        "{}",
        n[0].message
    );
    assert!(
        c.observe(plan(false, &["User-001", "User-002"]), 13 * MIN)
            .is_empty()
    );
    let n = c.observe(plan(false, &["User-002"]), 14 * MIN);
    assert_eq!(kinds(&n), [(EventKind::IgnoresLimits, true)]);
    assert!(n[0].title.contains("User-001"));
}

#[test]
fn a_history_that_cannot_be_written_is_notified_after_the_writes_threshold() {
    let mut c = conditions();
    let full = || Observation::History(Some("database or disk is full".into()));
    assert!(c.observe(full(), MIN).is_empty());
    let n = c.observe(full(), 11 * MIN);
    assert_eq!(kinds(&n), [(EventKind::HistoryFailing, false)]);
    assert!(
        n[0].message.contains("database or disk is full")
            && n[0].message.contains("Limits are managed as ever"),
        "{}",
        n[0].message
    );
    assert_eq!(c.active(), [(EventKind::HistoryFailing, String::new())]);
    assert!(c.observe(full(), 12 * MIN).is_empty(), "not while it lasts");
    let n = c.observe(Observation::History(None), 13 * MIN);
    assert_eq!(kinds(&n), [(EventKind::HistoryFailing, true)]);
    assert_eq!(c.active(), []);
}

#[test]
fn transcodes_beyond_capacity_are_notified_once_until_they_clear() {
    let beyond = |users: &[&str]| Observation::Plan {
        overload: None,
        uncontrolled: vec![],
        beyond_capacity: (!users.is_empty()).then(|| BeyondCapacity {
            transcodes: 2,
            capacity: "1 stream at most".into(),
            users: users.iter().map(|u| u.to_string()).collect(),
        }),
        hand_changes: vec![],
    };
    let mut c = conditions();
    let n = c.observe(beyond(&["bob", "carol"]), MIN);
    assert_eq!(kinds(&n), [(EventKind::TranscodesBeyondCapacity, false)]);
    assert!(
        n[0].message
            .contains("2 video transcodes while the server runs 1 stream at most"),
        "{}",
        n[0].message
    );
    assert!(n[0].message.contains("bob, carol"));
    assert_eq!(n[0].data["transcodes"], 2);
    // Other users beyond it, later: the same condition, nothing more.
    assert!(c.observe(beyond(&["carol"]), 2 * MIN).is_empty());
    assert_eq!(
        c.active(),
        [(EventKind::TranscodesBeyondCapacity, String::new())]
    );
    assert_eq!(
        kinds(&c.observe(beyond(&[]), 3 * MIN)),
        [(EventKind::TranscodesBeyondCapacity, true)]
    );
    // Within the cooldown, a new start is not notified, nor its clearing.
    assert!(c.observe(beyond(&["bob"]), 4 * MIN).is_empty());
    assert!(c.observe(beyond(&[]), 5 * MIN).is_empty());
    assert!(c.active().is_empty());
}

#[test]
fn one_off_events_say_what_to_do() {
    let mut c = conditions();
    let n = c.observe(
        Observation::Plan {
            overload: None,
            uncontrolled: vec![],
            beyond_capacity: None,
            hand_changes: vec![("User-003".into(), 0, 8_000_000)],
        },
        MIN,
    );
    assert_eq!(n[0].event, EventKind::LimitChangedByHand);
    assert!(
        n[0].message
            .contains("to 8 Mbps (it was 0 (the server's default))")
    );
    let n = c.observe(
        Observation::RestoreFailed {
            users: 2,
            state_file: "/var/lib/jellydemon/state.json".into(),
        },
        MIN,
    );
    assert_eq!(n[0].severity, Severity::Failure);
    assert!(n[0].message.contains("jellydemon restore"));
    assert_eq!(
        c.observe(Observation::Started, MIN)[0].event,
        EventKind::Started
    );
}

#[test]
fn a_torrent_client_that_keeps_failing_is_notified_by_name_after_the_threshold() {
    let mut c = conditions();
    let down = |n: &str| Observation::Downloader {
        name: n.into(),
        error: Some("Connection refused".into()),
    };
    let up = |n: &str| Observation::Downloader {
        name: n.into(),
        error: None,
    };
    assert!(c.observe(down("seedbox"), MIN).is_empty(), "not at once");
    assert!(c.observe(up("qbittorrent"), MIN).is_empty());
    let n = c.observe(down("seedbox"), 12 * MIN);
    assert_eq!(kinds(&n), [(EventKind::DownloaderUnreachable, false)]);
    assert!(n[0].title.starts_with("seedbox: "), "{}", n[0].title);
    assert!(
        n[0].message.contains("Connection refused"),
        "{}",
        n[0].message
    );
    assert_eq!(n[0].data["downloader"], "seedbox");
    assert_eq!(
        c.active(),
        [(EventKind::DownloaderUnreachable, "seedbox".to_string())]
    );
    // Another client failing is its own condition; the first clears by itself.
    assert!(c.observe(down("qbittorrent"), 13 * MIN).is_empty());
    assert_eq!(
        kinds(&c.observe(up("seedbox"), 14 * MIN)),
        [(EventKind::DownloaderUnreachable, true)]
    );
    assert!(c.active().is_empty());
}
