//! The systemd unit stays in step with the program: its command line parses, and every
//! JELLYDEMON_ variable it sets is a real configuration key.

use clap::Parser;
use jellydemon::cli::{Cli, Command};
use jellydemon::config::Settings;

const UNIT: &str = include_str!("../packaging/jellydemon.service");

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
// figment's Jail API returns figment::Error, which is large; that is figment's choice.
#[allow(clippy::result_large_err)]
fn the_environment_it_sets_is_accepted_by_the_config_loader() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path();
    std::fs::write(creds.join("api_key"), "key-from-credential\n").unwrap();
    std::fs::write(creds.join("webhook_token"), "0123456789abcdef0123\n").unwrap();
    let config = creds.join("config.toml");
    std::fs::write(
        &config,
        "[jellyfin]\nurl = \"http://127.0.0.1:8096\"\n[bandwidth]\ntotal_upload_mbps = 50\n",
    )
    .unwrap();
    figment::Jail::expect_with(|jail| {
        for env in values("Environment") {
            let (k, v) = env.split_once('=').unwrap();
            let v = v
                .replace("%d", &creds.display().to_string())
                .replace("%S", &creds.display().to_string());
            jail.set_env(k, v);
        }
        let s = Settings::load(&config).map_err(|e| e.to_string())?;
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&s.api_key().unwrap()),
            "key-from-credential"
        );
        assert!(s.daemon.webhook_token().unwrap().is_some());
        assert!(s.state.file.ends_with("jellydemon/state.json"));
        Ok(())
    });
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
