//! The history database (`src/adapters/history.rs`) as the daemon writes it: plays, samples and the
//! owner's actions, read back by `jellydemon stats` and `/api/history?since=`; and a daemon
//! killed while it writes leaves a database that opens.

use crate::common::*;
use jellydemon::sim::fake::FakeJellyfin;
use serde_json::{Value, json};

fn rows(path: &std::path::Path, table: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap_or(0)
}

#[tokio::test]
async fn plays_samples_and_actions_are_kept_and_summed_up() {
    let fake = FakeJellyfin::new(KEY);
    let m = mixed_scenario(&fake);
    let h = Harness::start(fake, "", "").await;
    let d = h.daemon("").await;
    eventually("alice managed", || h.fake.limit(&m.alice) != 0).await;
    let r = d
        .http
        .post(format!("{}/api/control", d.url))
        .bearer_auth(HOOK_TOKEN)
        .json(&json!({"action": "reserve", "mbps": 5, "for": "1h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A second plan, so that the plays run for a while.
    d.wait_for(|s| s["reserved_bps"] == 5 * M).await;
    d.stop().await;

    let db = h.dir.path().join("history.sqlite");
    assert!(rows(&db, "samples") >= 1);
    assert!(rows(&db, "decisions") >= 1);
    assert_eq!(rows(&db, "actions"), 1);
    // alice, bob and the admin stream from outside; carol plays at home.
    let (code, out, err) = h.cli(&["stats", "--since", "1h", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let stats: Value = serde_json::from_str(&out).unwrap();
    let users: Vec<&str> = stats["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    for name in ["Admin", "alice", "Bob O'Brien"] {
        assert!(users.contains(&name), "{name} in {users:?}");
    }
    assert!(!users.contains(&"carol"), "{users:?}");
    let bob = &stats["users"][users.iter().position(|u| *u == "Bob O'Brien").unwrap()];
    assert_eq!(bob["plays"], 1);
    assert_eq!(bob["transcodes"], 1, "{bob}");
    let (code, out, _) = h.cli(&["stats", "--since", "1h", "--user", "ALICE"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("alice"), "{out}");
    assert!(!out.contains("Bob"), "{out}");
    assert!(out.contains("Time over budget per day:"), "{out}");

    // The page's view of the same file, from the next daemon.
    let d = h.daemon("").await;
    let r: Value = serde_json::from_str(&d.text("/api/history?since=1h").await).unwrap();
    assert!(r["stats"]["users"].as_array().unwrap().len() >= 3, "{r:#}");
    assert!(!r["series"].as_array().unwrap().is_empty(), "{r:#}");
    let bad = d
        .http
        .get(format!("{}/api/history?since=forever", d.url))
        .bearer_auth(HOOK_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    d.stop().await;
}

#[tokio::test]
async fn a_daemon_killed_while_it_writes_leaves_a_database_that_opens() {
    let fake = FakeJellyfin::new(KEY);
    mixed_scenario(&fake);
    let h = Harness::start(
        fake,
        "",
        "[daemon]\nlisten = \"127.0.0.1:0\"\npoll_interval = \"1s\"\n[history]\nretention_days = 30",
    )
    .await;
    let db = h.dir.path().join("history.sqlite");
    let child = spawn_run(&h.config_path);
    eventually("rows written", || db.exists() && rows(&db, "samples") >= 1).await;
    child.signal(rustix::process::Signal::KILL);
    child.wait(std::time::Duration::from_secs(10)).await;
    // Opened for writing as the next daemon does: nothing moved aside, the rows are there.
    let (store, note) = jellydemon::adapters::history::Store::open(&db).unwrap();
    assert_eq!(note, None);
    assert_eq!(
        store.version().unwrap(),
        jellydemon::adapters::history::schema_version()
    );
    assert!(rows(&db, "samples") >= 1);
    assert!(rows(&db, "plays") >= 1);
}
