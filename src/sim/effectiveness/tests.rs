use std::collections::HashMap;

use super::*;

/// The yardstick in `cargo test`: the bench's first seed, 24 simulated hours, 8 and 16
/// users, half the clients accepting pushes and none. The targets of `BENCHMARKS.md`;
/// Jain, met on average only with pushes, is held at the level measured so a regression
/// shows.
#[test]
fn the_rule_meets_the_effectiveness_targets() {
    for users in [8, 16] {
        for clients in [Clients::HALF_PUSHABLE, Clients::NONE_PUSHABLE] {
            let traces = trace(users, 24, 0x5EED_0000 + users as u64, clients);
            let first = run(Manager::FirstRule(Algorithm::Equal), &traces, 24);
            let now = run(Manager::Daemon(Algorithm::Equal), &traces, 24);
            let pushes = clients.pushable_every > 0;
            let case = format!("{users} users, pushes {pushes}: {now:?}");
            assert!(
                now.over_percent() <= if pushes { 1.0 } else { 3.0 },
                "over budget: {case}"
            );
            assert!(now.served_percent() >= 70.0, "served: {case}");
            assert!(
                now.served_percent() >= 1.6 * first.served_percent(),
                "served against the first rule's {first:?}: {case}"
            );
            assert!(now.pushes_per_start() <= 1.2, "pushes: {case}");
            assert!(
                now.writes_per_hour() <= 2.0 * first.writes_per_hour(),
                "writes against the first rule's {first:?}: {case}"
            );
            assert!(
                now.jain() >= if pushes { 0.94 } else { 0.9 },
                "fairness: {case}"
            );
        }
    }
}

/// A quarter of the users on a second Jellyfin, whose starts and stops the daemon sees
/// at its next read of that server (no webhook): served and over budget as with one server
/// (the targets of `BENCHMARKS.md`), on the bench's first seed.
#[test]
fn a_second_jellyfin_is_served_as_one_server() {
    for users in [8, 16] {
        for clients in [Clients::HALF_PUSHABLE, Clients::NONE_PUSHABLE] {
            let traces = trace(users, 24, 0x5EED_0000 + users as u64, clients);
            let one = run(Manager::Daemon(Algorithm::Equal), &traces, 24);
            let on_member: Vec<bool> = (0..users).map(|u| u % 4 == 3).collect();
            let two = run_beside_second_jellyfin(Algorithm::Equal, &traces, 24, &on_member);
            let pushes = clients.pushable_every > 0;
            let case = format!("{users} users, pushes {pushes}: {two:?} against {one:?}");
            assert!(
                two.served_percent() >= one.served_percent() - 1.0,
                "served: {case}"
            );
            assert!(
                two.over_percent() <= one.over_percent() + 0.25
                    && two.over_percent() <= if pushes { 1.0 } else { 3.0 },
                "over budget: {case}"
            );
        }
    }
}

#[test]
fn the_model_is_jellyfins() {
    // One user, a 70 Mbps item, a pushable client, no manager: the source plays.
    let t = vec![UserTrace {
        name: "solo".into(),
        client: ClientKind::Pushable,
        items: vec![Item {
            start: 0,
            end: 3600,
            source: 70 * M,
        }],
    }];
    let f = run(Manager::None, &t, 1);
    assert_eq!(f.streamed_ms, 3_600_000);
    assert_eq!(f.over_ms, 0);
    assert!((f.served_percent() - 100.0).abs() < 1e-9);
    // Two at once over a 90 Mbps budget without a manager: over the whole time.
    let mut two = t.clone();
    two.push(UserTrace {
        name: "duo".into(),
        ..t[0].clone()
    });
    let f = run(Manager::None, &two, 1);
    assert_eq!(f.over_ms, f.streamed_ms);
    // With jellydemon both start at once on the idle link and are pushed to 45 each half a
    // second later.
    let f = run(Manager::Daemon(Algorithm::Equal), &two, 1);
    assert!(f.over_percent() < 1.0, "{f:?}");
    assert!(f.served_percent() > 90.0, "{f:?}");
}

/// A stream below its source transcodes; beyond the capacity the transcodes share the
/// server and their viewers wait.
#[test]
fn transcodes_beyond_the_capacity_stall_their_viewers() {
    let f = Figures {
        play_ms: 3000,
        transcodes_ms: vec![0, 1000, 1000],
        ..Figures::default()
    };
    assert!((f.transcoded_percent() - 100.0).abs() < 1e-9);
    assert!((f.stall_percent(1) - 100.0 / 3.0).abs() < 1e-9);
    assert_eq!(f.stall_percent(2), 0.0);
    // Two 70 Mbps remuxes over a 90 Mbps budget: no manager, both play the source.
    let one = |name: &str| UserTrace {
        name: name.into(),
        client: ClientKind::Pushable,
        items: vec![Item {
            start: 0,
            end: 3600,
            source: 70 * M,
        }],
    };
    let two = vec![one("a"), one("b")];
    let f = run(Manager::None, &two, 1);
    assert_eq!(f.play_ms, 2 * 3_600_000);
    assert_eq!(f.transcoded_percent(), 0.0);
    // jellydemon pushes both to 45 Mbps: two transcodes, half the time waiting on a
    // server that runs one.
    let f = run(Manager::Daemon(Algorithm::Equal), &two, 1);
    assert!(f.transcoded_percent() > 99.0, "{f:?}");
    assert!((f.stall_percent(1) - 50.0).abs() < 1.0, "{f:?}");
    assert!(f.stall_percent(2) < 1e-9, "{f:?}");
}

/// The bound keeps the smallest videos direct beside the others' floors: what no manager
/// within the budget goes below, and what the two remuxes above cannot avoid.
#[test]
fn the_fewest_transcodes_keep_the_smallest_videos_direct() {
    // 90 Mbps, floor 2: audio plays at its source; 10 + 40 direct beside the remux's
    // floor (52.32), the remux cannot be added.
    let sources = [320_000, 10 * M, 40 * M, 70 * M];
    assert_eq!(fewest_transcodes(&sources, 90 * M, 2 * M), 1);
    // Everything fits: nothing needs a transcode.
    assert_eq!(fewest_transcodes(&[10 * M, 40 * M], 90 * M, 2 * M), 0);
    // The floors alone fill it: every video transcodes.
    assert_eq!(fewest_transcodes(&[10 * M; 3], 6 * M, 2 * M), 3);
    // Two 70 Mbps remuxes over 90: one must transcode, so a server that runs one never
    // stalls, while jellydemon (without a capacity) splits the link and stalls half.
    let one = |name: &str| UserTrace {
        name: name.into(),
        client: ClientKind::Pushable,
        items: vec![Item {
            start: 0,
            end: 3600,
            source: 70 * M,
        }],
    };
    let f = run(Manager::Daemon(Algorithm::Equal), &[one("a"), one("b")], 1);
    assert_eq!(f.fewest_transcodes_ms, vec![0, 3_600_000]);
    assert_eq!(f.least_stall_percent(1), 0.0);
    assert!(f.stall_percent(1) > 49.0, "{f:?}");
    // Told the capacity, it keeps one remux direct and reaches the bound.
    let told = run_capacity(
        Manager::Daemon(Algorithm::Equal),
        &[one("a"), one("b")],
        1,
        1,
    );
    assert_eq!(told.stall_percent(1), 0.0, "{told:?}");
}

/// The history bench's rows are the daemon's: one play per item that started, every push
/// counted against a play, a sample at least every five minutes and a poll, all timed from
/// the start.
#[test]
fn a_recorded_run_keeps_what_the_daemon_would() {
    use crate::adapters::history::{Record, SAMPLE_AT_LEAST};
    let traces = trace(8, 6, 0x5EED_0008, Clients::HALF_PUSHABLE);
    let start_ms = 1_793_491_200_000;
    let (fig, rows) = run_recorded(Algorithm::Equal, &traces, 6, start_ms);
    let mut plays: HashMap<String, &crate::adapters::history::plays::Play> = HashMap::new();
    let mut samples = Vec::new();
    for r in &rows {
        match r {
            Record::Play(p) => {
                plays.insert(p.key.clone(), p);
            }
            Record::Sample(s) => samples.push(s.t_ms),
            Record::Decision(d) => assert!(d.t_ms >= start_ms),
            Record::Action(_) => panic!("nobody acted"),
        }
    }
    let started = traces
        .iter()
        .flat_map(|t| &t.items)
        .filter(|i| i.start < 6 * 3600)
        .count();
    // An item shorter than one plan's reaction is never seen by a plan.
    assert!(
        plays.len() <= started && plays.len() >= started * 9 / 10,
        "{} of {started}",
        plays.len()
    );
    assert!(plays.values().all(|p| p.remote && p.start_ms >= start_ms));
    let pushes: u64 = plays.values().map(|p| u64::from(p.pushes)).sum();
    assert_eq!(pushes, fig.pushes);
    // A quiet link is sampled at the first plan after five minutes: the poll's.
    let poll = settings(Algorithm::Equal).daemon.poll_interval();
    let gap = samples.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(gap <= (SAMPLE_AT_LEAST + poll).as_millis() as u64, "{gap}");
}

#[test]
fn traces_are_reproducible() {
    let a = trace(8, 6, 7, Clients::HALF_PUSHABLE);
    let b = trace(8, 6, 7, Clients::HALF_PUSHABLE);
    assert_eq!(
        a.iter().map(|u| u.items.clone()).collect::<Vec<_>>(),
        b.iter().map(|u| u.items.clone()).collect::<Vec<_>>()
    );
    assert_eq!(a[0].client, ClientKind::Pushable);
    assert_eq!(a[1].client, ClientKind::Fixed);
}
