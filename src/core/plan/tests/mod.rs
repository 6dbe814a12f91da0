//! The planner's tests: the fixtures here (users, sessions, settings, a plan's lookups), the
//! rules by topic in the files beside.

use serde_json::{Value, json};

use super::reasons::idle_sentence;
use super::*;
use crate::adapters::ledger::Ledger;
use crate::config::Settings;
use crate::ids::UserName;
use crate::network::jellyfin_default_ranges;

const M: i64 = 1_000_000;

fn settings(extra_bandwidth: &str, extra: &str) -> Settings {
    Settings::from_toml_str(&format!(
        r#"
        [jellyfin]
        url = "http://127.0.0.1:8096"
        api_key = "k"
        [bandwidth]
        total_upload_mbps = 100
        reserved_mbps = 10
        step_mbps = 0.5
        {extra_bandwidth}
        {extra}
        "#
    ))
    .unwrap()
}

/// A user as Jellyfin lists it, in the planner's terms.
fn user(name: &str, limit: i64, admin: bool) -> Account {
    let dto: crate::adapters::jellyfin::User = serde_json::from_value(json!({
        "Id": id(name),
        "Name": name,
        "Policy": {
            "IsAdministrator": admin,
            "IsDisabled": false,
            "EnableRemoteAccess": true,
            "RemoteClientBitrateLimit": limit,
            "AuthenticationProviderId": "a",
            "PasswordResetProviderId": "b"
        }
    }))
    .unwrap();
    Account::from(&dto)
}

fn id(name: &str) -> String {
    format!(
        "{:0>32}",
        name.bytes().map(|b| format!("{b:02x}")).collect::<String>()
    )[..32]
        .to_string()
}

fn uid(name: &str) -> UserId {
    UserId::new(id(name))
}

/// A session as Jellyfin lists it, in the planner's terms.
fn session(user: Option<&str>, ep: &str, playing: Option<Value>) -> Playback {
    let mut v = json!({
        "Id": format!("s{}{}", user.unwrap_or("none"), ep),
        "UserId": user.map(id).unwrap_or_else(|| "0".repeat(32)),
        "RemoteEndPoint": ep,
        "Client": "Jellyfin Web",
        "DeviceName": format!("dev-{ep}"),
        "PlayState": {"IsPaused": false}
    });
    if let Some(name) = user {
        v["UserName"] = json!(name);
    }
    if let Some(p) = playing {
        for (k, val) in p.as_object().unwrap() {
            v[k] = val.clone();
        }
    }
    Playback::from(&serde_json::from_value::<crate::adapters::jellyfin::Session>(v).unwrap())
}

fn direct(bitrate: i64) -> Option<Value> {
    Some(json!({"NowPlayingItem": {"MediaStreams": [{"Type": "Video", "BitRate": bitrate}]}}))
}

fn transcoding(out: i64) -> Option<Value> {
    Some(json!({
        "NowPlayingItem": {"MediaStreams": [{"Type": "Video", "BitRate": 80 * M}]},
        "TranscodingInfo": {"Bitrate": out}
    }))
}

fn paused(bitrate: i64) -> Option<Value> {
    Some(json!({
        "NowPlayingItem": {"MediaStreams": [{"Type": "Video", "BitRate": bitrate}]},
        "PlayState": {"IsPaused": true}
    }))
}

fn run(sessions: &[Playback], users: &[Account], server_limit: i64, s: &Settings) -> Plan {
    run_with(sessions, users, server_limit, s, &Ledger::in_memory())
}

fn run_with(
    sessions: &[Playback],
    users: &[Account],
    server_limit: i64,
    s: &Settings,
    ledger: &Ledger,
) -> Plan {
    run_at(
        sessions,
        users,
        s,
        ledger,
        &Memory::default(),
        Duration::ZERO,
        server_limit,
    )
}

fn run_at(
    sessions: &[Playback],
    users: &[Account],
    s: &Settings,
    ledger: &Ledger,
    memory: &Memory,
    now: Duration,
    server_limit: i64,
) -> Plan {
    let ranges = jellyfin_default_ranges();
    plan(
        &Inputs {
            sessions,
            users,
            server_limit,
            ranges: &ranges,
            budget_bps: s.budget().budget_bps,
            overrides: &crate::core::control::Overrides::NONE,
            servers: &[],
        },
        &ledger.originals(),
        memory,
        now,
        s,
    )
}

/// The session accepts `SetMaxStreamingBitrate` (the web client).
fn pushable(mut s: Playback) -> Playback {
    s.supports_push = true;
    s
}

/// A transcode of `source` at `out`, of the item `item`.
fn transcode(source: i64, out: i64, item: &str) -> Option<Value> {
    Some(json!({
        "NowPlayingItem": {"Id": item, "MediaStreams": [{"Type": "Video", "BitRate": source}]},
        "TranscodingInfo": {"Bitrate": out}
    }))
}

fn decision<'a>(p: &'a Plan, name: &str) -> &'a Decision {
    p.decisions
        .iter()
        .find(|d| d.user_name == name)
        .unwrap_or_else(|| panic!("no decision for {name}: {:#?}", p.decisions))
}

fn stream<'a>(p: &'a Plan, name: &str) -> &'a StreamRef {
    &decision(p, name).streams[0]
}

/// The push a user's first stream gets: direction and bitrate.
fn pushed(p: &Plan, name: &str) -> Option<(Direction, i64)> {
    stream(p, name)
        .push
        .map(|p| (p.direction, p.bitrate as i64))
}

fn target(p: &Plan, name: &str) -> i64 {
    p.decisions
        .iter()
        .find(|d| d.user_name == name)
        .unwrap_or_else(|| panic!("no decision for {name}: {:#?}", p.decisions))
        .target
}

fn role(p: &Plan, name: &str) -> Role {
    p.decisions
        .iter()
        .find(|d| d.user_name == name)
        .unwrap()
        .role
        .clone()
}

mod beside;
mod pushes;
mod servers;
mod shares;
