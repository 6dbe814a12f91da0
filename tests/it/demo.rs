//! `jellydemon demo` runs the real daemon against the simulated Jellyfin, prints the decisions
//! as they happen, and restores every original when it ends.

#[tokio::test]
async fn the_demo_runs_prints_decisions_and_restores() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_jellydemon"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--step-secs",
            "0.3",
            "--duration-secs",
            "5",
        ])
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for needle in [
        "Status page: http://127.0.0.1:",
        "▶ alice starts",
        "▶ bob starts a 4K remux",
        "↳ limits: alice: 90 Mbps, fair share 90 Mbps of 90 Mbps among 1.",
        // The remux started at the join share; its web client is raised to the source.
        "stream pushed up to 76 Mbps, its source rate",
        // When the admin starts too, the link is full: the remux is pushed down.
        "▶ admin starts",
        "stream pushed down to",
        "headroom beside",
        "Originals restored in the simulated server (0 failure(s))",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
}
