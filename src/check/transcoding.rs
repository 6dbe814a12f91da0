//! How the server transcodes, and which remote transcode cannot keep up.

use crate::adapters::jellyfin::JellyfinError;
use crate::core::plan;

use super::{CheckReport, Level};

/// How the server transcodes (`/System/Configuration/encoding`) and the video transcodes of
/// remote streams now, with those that run slower than their source plays (the server cannot
/// keep up: the viewer stalls). A limit below an item's source makes Jellyfin transcode it.
pub(super) fn transcoding_lines(
    r: &mut CheckReport,
    encoding: Result<crate::adapters::jellyfin::EncodingOptions, JellyfinError>,
    plan: &plan::Plan,
    sessions: &[crate::adapters::jellyfin::Session],
    auto: bool,
) {
    match encoding.map(|e| e.hardware()) {
        Ok(Some(hw)) => r.push(
            Level::Ok,
            format!("Jellyfin transcodes with {hw} hardware acceleration"),
        ),
        Ok(None) => r.push(
            Level::Info,
            "Jellyfin transcodes in software (no hardware acceleration set): a 4K video \
             transcode may run slower than real time, and a limit below an item's source \
             bitrate makes Jellyfin transcode it",
        ),
        Err(e) => r.push(
            Level::Info,
            format!("the transcoding settings cannot be read: {e}"),
        ),
    }
    match plan.transcodes {
        Some(t) => r.push(
            if t.beyond { Level::Warn } else { Level::Ok },
            format!(
                "[transcoding] capacity: the server runs {}; these limits leave {} video \
                 transcode(s){}{}",
                t.capacity.describe(),
                t.count.total(),
                if t.kept_direct > 0 {
                    format!(", {} user(s) kept direct play", t.kept_direct)
                } else {
                    String::new()
                },
                if t.beyond {
                    ", beyond the capacity"
                } else {
                    ""
                }
            ),
        ),
        None if auto => r.push(
            Level::Info,
            "[transcoding] capacity = \"auto\": nothing learned yet (no transcode has run \
             slower than its source for 30 s), so limits do not look at transcoding yet",
        ),
        None => r.push(
            Level::Info,
            "no [transcoding] capacity: limits do not look at what the server can transcode",
        ),
    }
    let remote: Vec<&crate::adapters::jellyfin::Session> = sessions
        .iter()
        .filter(|s| {
            s.transcodes_video()
                && plan
                    .sessions
                    .iter()
                    .any(|v| v.session_id == s.id && v.location.is_remote())
        })
        .collect();
    if remote.is_empty() {
        return;
    }
    r.push(
        Level::Info,
        format!("{} remote video transcode(s) now", remote.len()),
    );
    for s in remote {
        if s.transcode_behind() == Some(true) {
            let fps = s
                .transcoding_info
                .as_ref()
                .and_then(|t| t.framerate)
                .unwrap_or(0.0);
            let source = s
                .source_video()
                .and_then(|v| v.real_frame_rate)
                .unwrap_or(0.0);
            r.push(
                Level::Warn,
                format!(
                    "{} on {}: the transcode runs at {fps:.1} fps, its source plays at \
                     {source:.1}: the server cannot keep up and the viewer stalls",
                    s.user_name
                        .as_ref()
                        .map_or_else(|| "(no user)".to_string(), |n| n.to_string()),
                    s.device_label()
                ),
            );
        }
    }
}
