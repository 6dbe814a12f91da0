use rusqlite::Connection;

use super::*;

fn sample(t_ms: u64) -> Record {
    Record::Sample(Sample {
        t_ms,
        budget_bps: 55_000_000,
        cause: "static".into(),
        streaming_bps: 20_000_000,
        held_bps: 20_000_000,
        other_bps: None,
        downloaders_bps: Some(5_000_000),
        claimants: 2,
        video_transcodes: Some(2),
        beyond_capacity: Some(true),
    })
}

fn rows(s: &Store, table: &str) -> i64 {
    s.conn()
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn every_older_schema_is_migrated_and_keeps_its_rows() {
    for from in 0..MIGRATIONS.len() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            for m in &MIGRATIONS[..from] {
                conn.execute_batch(m).unwrap();
            }
            conn.pragma_update(None, "user_version", from as i64)
                .unwrap();
            if from >= 1 {
                conn.execute(
                    "INSERT INTO samples (t_ms, budget_bps, cause, streaming_bps, held_bps, claimants) VALUES (1, 2, 'static', 3, 4, 1)",
                    [],
                )
                .unwrap();
            }
        }
        let (mut s, note) = Store::open(&path).unwrap();
        assert_eq!(note, None);
        assert_eq!(s.version().unwrap(), schema_version(), "from {from}");
        assert_eq!(rows(&s, "samples"), i64::from(from >= 1));
        s.write(&[sample(10)]).unwrap();
    }
}

#[test]
fn a_newer_schema_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.sqlite");
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let e = Store::open(&path).err().unwrap();
    assert!(matches!(e, HistoryError::Newer { found: 99, .. }), "{e}");
    assert!(path.exists());
}

#[test]
fn a_corrupt_file_is_moved_aside_and_a_new_one_started() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.sqlite");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let (mut s, note) = Store::open(&path).unwrap();
    let note = note.unwrap();
    assert!(note.contains("moved aside"), "{note}");
    s.write(&[sample(1)]).unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("history.sqlite.corrupt-")),
        "{names:?}"
    );
}

#[test]
fn retention_prunes_old_rows_and_the_size_cap_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Store::open(&dir.path().join("h.sqlite")).unwrap();
    let day = 24 * 3600 * 1000;
    let now = 40 * day;
    let batch: Vec<Record> = (0..40).map(|d| sample(d * day + 5)).collect();
    s.write(&batch).unwrap();
    let deleted = s
        .prune(now, Duration::from_secs(30 * 24 * 3600), u64::MAX)
        .unwrap();
    assert_eq!(deleted, 10);
    assert_eq!(rows(&s, "samples"), 30);
    // A cap below what is there: the oldest days go until it fits (or nothing is left).
    let many: Vec<Record> = (0..20_000).map(|i| sample(35 * day + i)).collect();
    s.write(&many).unwrap();
    let before = s.size().unwrap();
    s.prune(now, Duration::from_secs(30 * 24 * 3600), before / 2)
        .unwrap();
    assert!(s.size().unwrap() <= before / 2 || rows(&s, "samples") == 0);
    let oldest: i64 = s
        .conn()
        .query_row("SELECT MIN(t_ms) FROM samples", [], |r| r.get(0))
        .unwrap_or(0);
    assert!(oldest == 0 || oldest >= 35 * day as i64, "{oldest}");
}

#[tokio::test]
async fn the_writer_batches_and_flushes_at_the_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.sqlite");
    let metrics = Arc::new(Metrics::new());
    let (h, w) = start(
        path.clone(),
        Duration::from_secs(3600),
        u64::MAX,
        metrics.clone(),
        Box::new(|e| assert_eq!(e, None, "no failure")),
    );
    // Recent rows: the first prune (at once) keeps them.
    let now = crate::clock::unix_millis_now();
    for t in 0..2_500 {
        h.record(sample(now + t));
    }
    w.stop(Duration::from_secs(10)).await;
    let s = Store::open_read_only(&path).unwrap();
    assert_eq!(rows(&s, "samples"), 2_500);
    let written = metrics
        .history_rows
        .get_or_create(&ResultLabels {
            result: "written".into(),
        })
        .get();
    assert_eq!(written, 2_500);
}

#[test]
fn a_database_not_yet_brought_to_this_version_reads_as_an_empty_history() {
    // The daemon's writer thread has created the file but not its tables yet: the page and
    // `stats` asking then see an empty history, not "no such table".
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.sqlite");
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 0;")
        .unwrap();
    let (stats, points) =
        stats::load(&path, 0, 3_600_000, None, &jiff::tz::TimeZone::UTC, 24).unwrap();
    assert!(stats.users.is_empty() && stats.busiest.is_empty());
    assert!(points.is_empty());
}
