//! How the fake plays a stream as Jellyfin does: the limit in force for a session, the rate a
//! client negotiates under it, and the server's transcoding hardware by version.

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::network;

use super::{FakeSession, Inner, Playback};

/// Whether a version string such as "10.10.7" is older than `(major, minor)`.
/// The most a stream may carry: the user's effective limit (0: none) and the client's own
/// maximum; `None` when neither limits it.
pub(super) fn cap(limit: i64, client_max: Option<i64>) -> Option<i64> {
    match (limit > 0, client_max) {
        (true, Some(m)) => Some(limit.min(m)),
        (true, None) => Some(limit),
        (false, m) => m,
    }
}

/// Jellyfin's decision for a stream under `cap`: a transcode at the cap when the source is
/// above it; direct play again when a stream transcoded for a cap now fits.
pub(super) fn negotiate(p: &mut Playback, cap: Option<i64>) {
    match cap {
        Some(c) if p.source_rate() > c => {
            p.transcode_bitrate = Some(c);
            p.play_method = "Transcode".into();
            p.capped = true;
        }
        _ if p.capped => {
            // The source fits now: a re-negotiated stream plays it directly.
            p.transcode_bitrate = None;
            p.play_method = "DirectPlay".into();
            p.capped = false;
        }
        _ => {}
    }
}

/// The frames per second of the fake's video sources.
pub const SOURCE_FPS: f32 = 23.976;

/// `TranscodingInfo.HardwareAccelerationType` for the configured acceleration: 10.9 names the
/// encoder (`VAAPI`, `VideoToolBox`, … and nothing for software), 10.10 and later use the
/// configuration's lower-case names, `none` included.
pub(super) fn transcoding_hardware(version: &str, kind: &str) -> Option<String> {
    if !version_before(version, (10, 10)) {
        return Some(kind.to_string());
    }
    match kind {
        "none" | "" => None,
        "videotoolbox" => Some("VideoToolBox".into()),
        k => Some(k.to_ascii_uppercase()),
    }
}

/// `GET /System/Configuration/encoding`: the transcoding settings (10.9 writes an empty
/// `HardwareAccelerationType` for software, later versions `none`).
pub(super) fn encoding_config(g: &Inner) -> Value {
    let hw = if version_before(&g.version, (10, 10)) && g.hardware_acceleration == "none" {
        String::new()
    } else {
        g.hardware_acceleration.clone()
    };
    json!({
        "EncodingThreadCount": -1,
        "TranscodingTempPath": "/cache/transcodes",
        "EnableThrottling": false,
        "ThrottleDelaySeconds": 180,
        "HardwareAccelerationType": hw,
        "EnableHardwareEncoding": hw != "none" && !hw.is_empty(),
        "AllowHevcEncoding": false,
        "AllowAv1Encoding": false,
        "HardwareDecodingCodecs": ["h264", "vc1"]
    })
}

pub(super) fn version_before(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) < (major, minor)
}

pub(super) fn effective_limit(g: &Inner, s: &FakeSession) -> i64 {
    let ranges: Vec<IpNet> = g.network_config["LocalNetworkSubnets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().and_then(|s| network::parse_cidr(s).ok()))
                .collect()
        })
        .unwrap_or_default();
    let ranges = if ranges.is_empty() {
        network::jellyfin_default_ranges()
    } else {
        ranges
    };
    let remote = match s.remote_end_point.as_deref().map(network::parse_endpoint) {
        Some(Ok(ip)) => !network::is_internal(ip, &ranges),
        _ => false,
    };
    if !remote {
        return 0;
    }
    let user_limit = s
        .user_id
        .as_deref()
        .and_then(|id| g.users.iter().find(|u| u.id == id))
        .and_then(|u| u.policy["RemoteClientBitrateLimit"].as_i64())
        .unwrap_or(0);
    if user_limit > 0 {
        user_limit
    } else {
        g.server_config["RemoteClientBitrateLimit"]
            .as_i64()
            .unwrap_or(0)
    }
}
