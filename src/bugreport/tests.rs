use super::*;

#[test]
fn the_tail_of_a_log_is_bounded() {
    let text = (1..=10).map(|i| format!("line {i}\n")).collect::<String>();
    assert_eq!(
        tail(text.as_bytes(), 3).unwrap(),
        ["line 8", "line 9", "line 10"]
    );
    assert_eq!(tail(text.as_bytes(), 0).unwrap(), Vec::<String>::new());
    assert_eq!(tail("no newline".as_bytes(), 5).unwrap(), ["no newline"]);
    let long = format!("{}\nshort\n", "x".repeat(3 * MAX_LINE));
    let lines = tail(long.as_bytes(), 5).unwrap();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].ends_with("(cut)") && lines[0].len() < MAX_LINE + 10);
    assert_eq!(lines[1], "short");
    assert_eq!(tail(&b"caf\xe9\n"[..], 1).unwrap(), ["caf\u{fffd}"]);
}

#[test]
fn colours_are_taken_out() {
    assert_eq!(
        strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m ok"),
        "2026  INFO ok"
    );
}

#[test]
fn the_daemon_state_reads_as_text() {
    let state = serde_json::json!({
        "version": "0.1.0", "mode": "webhook", "dry_run": false, "uptime_seconds": 60,
        "budget_bps": 90_000_000u64,
        "poll": {"polls": 3, "recomputes": 4, "last_ok_age_seconds": 12.3,
                 "consecutive_failures": 0, "last_error": null},
        "events": {"PlaybackStart": 2}, "writes": {"written": 1},
        "overrides": [{"what": "pinned at 10 Mbps", "user": "User-002", "by": "page",
                       "at_unix": 0, "until_unix": null}],
        "recent": [{"t": 0, "trigger": "webhook", "changes": 1, "summary": "User-001 -> 20 Mbps"}],
        "last_decision": {"users": []},
        "budget": {"cause": "90 Mbps; plex streams 20 Mbps outside the house, which leaves 70 Mbps",
                   "source": "static",
                   "servers": [{"name": "plex", "up": true, "remote_streams": 1}]}
    });
    let text = render_daemon_state(&state);
    assert!(
        text.contains(
            "budget: 90 Mbps; plex streams 20 Mbps outside the house, which leaves 70 Mbps (static)"
        ),
        "{text}"
    );
    assert!(
        text.contains("other media servers:\n  {\"name\":\"plex\""),
        "{text}"
    );
    assert!(text.contains("mode webhook, dry run false"), "{text}");
    assert!(text.contains("last error: -"), "{text}");
    assert!(text.contains("last success 12 s ago"), "{text}");
    assert!(
        text.contains("1970-01-01T00:00:00Z webhook, 1 change: User-001 -> 20 Mbps"),
        "{text}"
    );
    assert!(text.contains("\"users\": []"), "{text}");
    assert!(
        text.contains(
            "the owner's overrides:\n  pinned at 10 Mbps: User-002 (by page, until cleared)\n"
        ),
        "{text}"
    );
    assert!(render_daemon_state(&serde_json::json!({})).contains("(none yet)"));
}
