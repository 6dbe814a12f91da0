//! The systemd unit stays in step with the program: its command line parses, its stop timeout
//! leaves room for the restore and its open-file limit for the connection cap. (That every
//! JELLYDEMON_ variable it sets is a real configuration key is in `tests/environment.rs`.)

use clap::Parser;
use jellydemon::cli::{Cli, Command};
use jellydemon::config::Settings;

const UNIT: &str = include_str!("../../packaging/jellydemon.service");

fn values(key: &str) -> Vec<&'static str> {
    UNIT.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn exec_start_is_a_valid_command_line() {
    let exec = values("ExecStart");
    assert_eq!(exec.len(), 1);
    let args: Vec<&str> = exec[0].split_whitespace().collect();
    let cli = Cli::try_parse_from(&args).unwrap();
    assert!(matches!(cli.command(), Command::Run { .. }));
}

#[test]
fn the_stop_timeout_leaves_room_for_the_restore() {
    let stop: u64 = values("TimeoutStopSec")[0].parse().unwrap();
    let default = Settings::from_toml_str(
        "[jellyfin]\nurl = \"http://h\"\napi_key = \"k\"\n[bandwidth]\ntotal_upload_mbps = 1\n",
    )
    .unwrap()
    .daemon
    .shutdown_timeout
    .as_secs();
    assert!(
        stop > default,
        "TimeoutStopSec {stop} <= shutdown_timeout {default}"
    );
}

#[test]
fn the_open_file_limit_is_far_above_the_connection_cap() {
    let limit: usize = values("LimitNOFILE")[0].parse().unwrap();
    let cap = jellydemon::config::Settings::from_toml_str(
        "[jellyfin]\nurl = \"http://127.0.0.1:8096\"\napi_key = \"k\"\n[bandwidth]\ntotal_upload_mbps = 100\n",
    )
    .unwrap()
    .daemon
    .http_max_connections;
    assert!(
        limit >= 16 * cap,
        "LimitNOFILE={limit}, http_max_connections={cap}"
    );
}

/// The compose example: jellydemon finds Jellyfin by its service name, keeps its ledger on a
/// volume, reads the folder `init` writes, and gets time for the restore on stop.
#[test]
fn the_compose_example_runs_jellydemon_beside_jellyfin() {
    use yaml_rust2::{Yaml, YamlLoader};
    let text = include_str!("../../packaging/container/compose.yaml");
    let doc = &YamlLoader::load_from_str(text).unwrap()[0];
    let jd = &doc["services"]["jellydemon"];
    assert!(!doc["services"]["jellyfin"].is_badvalue());
    assert_eq!(
        jd["environment"]["JELLYDEMON_JELLYFIN__URL"].as_str(),
        Some("http://jellyfin:8096")
    );
    let volumes: Vec<&str> = jd["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(
        volumes.contains(&"./jellydemon:/etc/jellydemon:ro"),
        "{volumes:?}"
    );
    assert!(
        volumes.contains(&"jellydemon-state:/var/lib/jellydemon"),
        "{volumes:?}"
    );
    assert_eq!(jd["stop_grace_period"].as_str(), Some("30s"));
    assert!(text.contains("init --url http://127.0.0.1:8096 --webhooks"));
}
