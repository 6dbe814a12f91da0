//! `[transcoding] capacity` in the daemon: limits that force more video transcodes than the
//! server runs are shown in `/api/state` and `/metrics`, notified once when they start and
//! once when they clear, and kept in the history.

use crate::common::{Harness, KEY, event, eventually, two_remuxes};
use crate::notify::{Mode, Receiver};
use jellydemon::sim::fake::FakeJellyfin;

#[tokio::test]
async fn transcodes_beyond_capacity_are_shown_counted_and_notified_until_they_clear() {
    let (good, good_url) = Receiver::start(Mode::Ok, false).await;
    let fake = FakeJellyfin::new(KEY);
    let [_, (ben, ben_s)] = two_remuxes(&fake);
    let h = Harness::start(
        fake,
        "",
        &format!(
            "[transcoding]\ncapacity = 1\n[[notify]]\nname = \"good\"\nkind = \"webhook\"\n\
             url = \"{good_url}\"\n"
        ),
    )
    .await;
    let d = h
        .daemon("debounce = \"50ms\"\npoll_interval = \"1h\"\nshutdown_timeout = \"3s\"")
        .await;
    eventually("the notice", || {
        good.titles()
            .iter()
            .any(|t| t == "More transcodes than the server runs")
    })
    .await;
    let notice = &good.seen()[0].2;
    assert_eq!(notice["event"], "transcodes_beyond_capacity");
    assert_eq!(notice["data"]["transcodes"], 2, "{notice:#}");

    let s = d.state().await;
    let t = &s["last_decision"]["transcodes"];
    assert_eq!(t["count"], 2, "{s:#}");
    assert_eq!(t["capacity"], "1 stream at most");
    assert_eq!(t["beyond_capacity"], true);
    assert_eq!(
        s["notifications"]["active"][0]["event"],
        "transcodes_beyond_capacity"
    );
    let metrics = d.text("/metrics").await;
    for line in [
        "jellydemon_video_transcodes 2",
        "jellydemon_transcode_capacity 1",
        "jellydemon_transcodes_beyond_capacity 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }

    // ben stops: ann's transcode is the one the server runs.
    h.fake.stop_playback(&ben_s);
    d.hook(&event("PlaybackStop", &ben, &ben_s)).await;
    eventually("the clearing notice", || {
        good.titles()
            .iter()
            .any(|t| t == "✓ Transcodes within the server's capacity again")
    })
    .await;
    let s = d
        .wait_for(|s| s["last_decision"]["transcodes"]["beyond_capacity"] == false)
        .await;
    assert_eq!(s["last_decision"]["transcodes"]["count"], 1, "{s:#}");
    assert_eq!(
        good.titles(),
        [
            "More transcodes than the server runs",
            "✓ Transcodes within the server's capacity again"
        ]
    );
    d.stop().await;

    // The history keeps it: the samples say how many transcoded and that it was beyond the
    // capacity, and the daily figures count that time (from a capacity the day knew).
    let db = rusqlite::Connection::open_with_flags(
        h.dir.path().join("history.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let beyond: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM samples WHERE beyond_capacity = 1 AND video_transcodes = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(beyond >= 1, "samples beyond the capacity: {beyond}");
    let (code, out, err) = h.cli(&["stats", "--since", "1h", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        stats["days"][0]["beyond_capacity_minutes"].is_number(),
        "{stats:#}"
    );
    let (_, text, _) = h.cli(&["stats", "--since", "1h"]).await;
    assert!(text.contains("min beyond the transcode capacity"), "{text}");
}
