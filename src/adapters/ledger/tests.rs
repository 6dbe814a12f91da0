use super::*;

fn id(s: &str) -> UserId {
    UserId::new(s)
}
fn name(s: &str) -> UserName {
    UserName::new(s)
}

fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(&dir.path().join("state.json")).unwrap();
    (dir, l)
}

#[test]
fn missing_file_is_empty_and_roundtrips() {
    let (dir, mut l) = ledger();
    assert!(l.is_empty());
    let _ = l.record_intent(&id("u1"), &name("alice"), 0, 20_000_000, 0);
    l.save().unwrap();
    let back = Ledger::open(&dir.path().join("state.json")).unwrap();
    assert_eq!(back.original(&id("u1")), Some(0));
    assert_eq!(back.get(&id("u1")).unwrap().written(), Some(20_000_000));
    // No temp file left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn our_own_values_are_never_taken_for_originals() {
    let (_d, mut l) = ledger();
    let _ = l.record_intent(&id("u"), &name("a"), 8_000_000, 5_000_000, 0);
    let _ = l.record_intent(&id("u"), &name("a"), 5_000_000, 4_000_000, 0);
    // A crash before the second request arrived leaves 5 Mbps in Jellyfin: ours.
    assert_eq!(l.observe(&id("u"), &name("a"), 5_000_000), Observed::Ours);
    assert_eq!(l.observe(&id("u"), &name("a"), 4_000_000), Observed::Ours);
    assert_eq!(
        l.observe(&id("u"), &name("a"), 8_000_000),
        Observed::Original
    );
    assert_eq!(l.original(&id("u")), Some(8_000_000));
}

#[test]
fn only_the_recent_values_are_remembered() {
    let (_d, mut l) = ledger();
    for v in 1..=20 {
        let _ = l.record_intent(&id("u"), &name("a"), 0, v, 0);
    }
    assert_eq!(l.get(&id("u")).unwrap().ours.len(), RECENT);
    assert_eq!(l.observe(&id("u"), &name("a"), 20), Observed::Ours);
    assert_eq!(l.observe(&id("u"), &name("a"), 13), Observed::Ours);
    assert_eq!(l.original(&id("u")), Some(0));
}

#[test]
fn a_hand_change_becomes_the_new_original() {
    let (_d, mut l) = ledger();
    let t = l.record_intent(&id("u"), &name("a"), 0, 5_000_000, 0);
    l.settle(&id("u"), t, 0); // answered
    assert_eq!(
        l.observe(&id("u"), &name("a"), 3_000_000),
        Observed::HandChanged { old_original: 0 }
    );
    assert_eq!(l.original(&id("u")), Some(3_000_000));
    assert_eq!(
        l.observe(&id("u"), &name("a"), 5_000_000),
        Observed::HandChanged {
            old_original: 3_000_000
        }
    );
}

#[test]
fn a_write_in_flight_keeps_the_user_until_it_is_answered_or_its_time_is_over() {
    let (dir, mut l) = ledger();
    let t = l.record_intent(&id("u"), &name("a"), 20_000_000, 17_000_000, 5_000);
    // Jellyfin still shows the original, but the write may land: the user stays.
    assert_eq!(l.landing_until(&id("u"), 1_000), Some(5_000));
    assert!(!l.forget(&id("u"), 1_000));
    // A process after this one reads the write from the file: only its time settles it.
    l.save().unwrap();
    let mut after_crash = Ledger::open(&dir.path().join("state.json")).unwrap();
    assert_eq!(after_crash.landing_until(&id("u"), 4_999), Some(5_000));
    assert_eq!(
        after_crash.observe(&id("u"), &name("a"), 17_000_000),
        Observed::Ours,
        "the late write is recognized"
    );
    assert!(after_crash.forget(&id("u"), 5_000));
    // Answered: settled at once.
    l.settle(&id("u"), t, 1_000);
    assert_eq!(l.landing_until(&id("u"), 1_000), None);
    assert!(l.forget(&id("u"), 1_000));
    assert!(l.is_empty());
}

#[test]
fn settling_one_write_leaves_an_earlier_unanswered_one_in_flight() {
    let (_d, mut l) = ledger();
    let _timed_out = l.record_intent(&id("u"), &name("a"), 0, 5_000_000, 9_000);
    let answered = l.record_intent(&id("u"), &name("a"), 0, 4_000_000, 9_500);
    l.settle(&id("u"), answered, 2_000);
    assert_eq!(l.landing_until(&id("u"), 2_000), Some(9_000));
    // A hand change keeps the writes in flight: one landing later is still ours.
    assert!(matches!(
        l.observe(&id("u"), &name("a"), 3_000_000),
        Observed::HandChanged { .. }
    ));
    assert_eq!(l.observe(&id("u"), &name("a"), 5_000_000), Observed::Ours);
}

#[test]
fn a_version_1_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::write(
        &path,
        r#"{"version":1,"users":{"u":{"name":"a","original":0,"ours":[5]}}}"#,
    )
    .unwrap();
    let l = Ledger::open(&path).unwrap();
    assert_eq!(l.original(&id("u")), Some(0));
    assert_eq!(l.landing_until(&id("u"), 0), None);
}

#[test]
fn untracked_users_are_reported_as_such() {
    let (_d, mut l) = ledger();
    assert_eq!(l.observe(&id("nobody"), &name("x"), 1), Observed::Untracked);
    assert!(l.is_empty());
}

#[test]
fn corrupt_truncated_and_empty_files_are_errors_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    for content in [
        "",
        "{\"version\":1,\"users\":{\"u\":{\"name\":\"a\",\"orig",
        "garbage",
        "{\"version\":9,\"users\":{}}",
    ] {
        fs::write(&path, content).unwrap();
        let err = Ledger::open(&path).unwrap_err();
        assert!(
            matches!(err, LedgerError::Corrupt { .. }),
            "{content}: {err}"
        );
        assert!(err.to_string().contains("will not overwrite"));
        assert_eq!(fs::read_to_string(&path).unwrap(), content);
    }
}

#[test]
fn unreadable_path_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be cannot be read as a file.
    let err = Ledger::open(dir.path()).unwrap_err();
    assert!(matches!(err, LedgerError::Read { .. }), "{err}");
}

#[test]
fn a_torrent_clients_settings_are_kept_like_a_users_limit() {
    let (dir, mut l) = ledger();
    let key = "qbittorrent/up_limit";
    assert_eq!(
        l.observe_setting(key, "qbittorrent", 0),
        Observed::Untracked
    );
    let t = l.record_setting_intent(key, "qbittorrent", 0, 1_249_280, u64::MAX);
    l.save().unwrap();
    // Killed before the answer: the next process knows the original and that the write
    // may still land.
    let mut back = Ledger::open(&dir.path().join("state.json")).unwrap();
    assert_eq!(back.setting(key).unwrap().original, 0);
    assert_eq!(
        back.observe_setting(key, "qbittorrent", 1_249_280),
        Observed::Ours
    );
    assert!(!back.forget_setting(key, 0), "a write may still land");
    l.settle_setting(key, t, 1);
    assert!(l.forget_setting(key, 1));
    // A value set by hand in the client's UI becomes the original.
    let _ = back.record_setting_intent(key, "qbittorrent", 1_249_280, 2_048_000, 0);
    assert_eq!(
        back.observe_setting(key, "qbittorrent", 512_000),
        Observed::HandChanged { old_original: 0 }
    );
    assert_eq!(back.setting(key).unwrap().original, 512_000);
    assert!(back.is_empty(), "no user is tracked");
    assert_eq!(back.settings().count(), 1);
}

#[test]
fn a_version_2_file_reads_without_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::write(
        &path,
        r#"{"version":2,"users":{"u1":{"name":"alice","original":0,"ours":[5]}}}"#,
    )
    .unwrap();
    let l = Ledger::open(&path).unwrap();
    assert_eq!(l.original(&id("u1")), Some(0));
    assert_eq!(l.settings().count(), 0);
}
