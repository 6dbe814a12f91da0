//! `jellydemon demo` runs the real daemon against the simulated Jellyfin and a simulated
//! router, prints the decisions as they happen (the budget making room for a backup in the
//! house too, a simulated torrent client given what the streams leave), and restores every
//! original when it ends.

use crate::common::bin::Bin;

#[tokio::test]
async fn the_demo_runs_prints_decisions_and_restores() {
    let out = Bin::new()
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--step-secs",
            "0.3",
            "--duration-secs",
            "7",
        ])
        .output()
        .await;
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert_eq!(out.code, 0, "{stdout}\n{stderr}");
    for needle in [
        "Status page: http://127.0.0.1:",
        "▶ alice starts",
        "▶ bob starts a 4K remux",
        // The torrent client keeps its 1 Mbps: 89 of the 90 for the streams.
        "↳ limits: alice: 89 Mbps, fair share 89 Mbps of 89 Mbps among 1.",
        "a simulated qBittorrent seeds all it is allowed",
        "↳ seeder: limit ",
        // The remux started at the join share; its web client is raised to the source.
        "stream pushed up to 76 Mbps, its source rate",
        // When the admin starts too, the link is full: the remux is pushed down.
        "▶ admin starts",
        "stream pushed down to",
        "headroom beside",
        // The simulated router sees a backup in the house: the budget makes room for it.
        "⌂ a 30 Mbps cloud backup starts in the house",
        "of other upload in the house",
        "Originals restored in the simulated server and the torrent client (upload limit \
         unlimited again; 0 failure(s))",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
}
