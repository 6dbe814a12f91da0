//! What the engine's model learns between reads: a webhook's start or stop (a remote start
//! also makes room at once in the torrent clients' limit), a limit the writer put in place, a
//! push it sent; and what a plan means for notifications.

use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use crate::daemon::seeders::Seeding;
use crate::daemon::writer::Report;
use crate::ids::SessionId;
use crate::media::{Playback, device_label};
use crate::notify::conditions::Observation;
use crate::plan::Memory;
use crate::snapshot::{HandChange, Snapshot};
use crate::webhook::{EventKind, HookEvent};

/// What a plan means for notifications: overload, clients ignoring limits, hand changes;
/// names as the daemon shows them (aliases when anonymizing).
pub(super) fn observation(plan: &crate::plan::Plan, hand: &[HandChange]) -> Observation {
    use crate::plan::Warning;
    let mut overload = None;
    let mut uncontrolled = Vec::new();
    for w in &plan.warnings {
        match w {
            Warning::Overload {
                users,
                floor,
                budget,
            } => overload = Some((*users, *floor, *budget)),
            Warning::Uncontrolled {
                user_name,
                device,
                rate,
                ..
            } => uncontrolled.push((user_name.to_string(), device.to_string(), *rate)),
            _ => {}
        }
    }
    let beyond_capacity =
        plan.transcodes
            .filter(|t| t.beyond)
            .map(|t| crate::notify::conditions::BeyondCapacity {
                transcodes: t.count.total(),
                capacity: t.capacity.describe(),
                users: plan
                    .warnings
                    .iter()
                    .filter_map(|w| match w {
                        Warning::TranscodeBeyondCapacity { user_name, .. } => {
                            Some(user_name.to_string())
                        }
                        _ => None,
                    })
                    .collect(),
            });
    Observation::Plan {
        overload,
        uncontrolled,
        beyond_capacity,
        hand_changes: hand
            .iter()
            .map(|h| (h.user.to_string(), h.old_original, h.new_original))
            .collect(),
    }
}

/// What the writer reported: a push goes to the memory (and the history's play), a limit put
/// in place to the model's user, whose policy the poll reads next.
pub(super) fn on_report(
    report: Report,
    model: &mut Option<Snapshot>,
    memory: &mut Memory,
    recorder: &mut crate::history::Recorder,
    clock: impl Fn(Instant) -> Duration,
) {
    match report {
        Report::Pushed(sent) => {
            memory.record_push(&sent.session_id, clock(sent.at), sent.bitrate);
            recorder.pushed(sent.session_id.as_str());
        }
        Report::Landed { user_id, limit } => {
            if let Some(u) = model
                .as_mut()
                .and_then(|m| m.users.iter_mut().find(|u| u.id == user_id))
            {
                u.limit = limit;
            }
        }
    }
}

/// Apply a webhook to the last snapshot, so that a decision can be made even if `/Sessions`
/// cannot be read. A start marks (or adds) the session as playing what the event names; a stop
/// marks it stopped.
pub(super) fn patch(model: &mut Snapshot, ev: &HookEvent) {
    let matches = |s: &Playback| match (&ev.session_id, &ev.device_id) {
        (Some(id), _) => s.id == *id,
        (None, Some(dev)) => {
            s.device_id.as_ref() == Some(dev) && s.user_id.as_ref() == ev.user_id.as_ref()
        }
        (None, None) => false,
    };
    match ev.kind {
        EventKind::PlaybackStart => {
            let i = match model.sessions.iter().position(matches) {
                Some(i) => {
                    let s = &mut model.sessions[i];
                    if ev.remote_end_point.is_some() {
                        s.endpoint = ev.remote_end_point.clone();
                    }
                    i
                }
                None if ev.user_id.is_some() => {
                    model.sessions.push(Playback {
                        id: ev.session_id.clone().unwrap_or_else(|| {
                            let device = ev.device_id.as_ref().map_or("?", |d| d.as_str());
                            SessionId::new(format!("hook-{device}"))
                        }),
                        user_id: ev.user_id.clone().filter(|id| !id.is_nil()),
                        user_name: ev.user_name.clone(),
                        endpoint: ev.remote_end_point.clone(),
                        device: device_label(ev.client.as_deref(), ev.device_name.as_deref()),
                        device_id: ev.device_id.clone(),
                        supports_push: false,
                        paused: false,
                        playing: None,
                    });
                    model.sessions.len() - 1
                }
                None => return,
            };
            model.sessions[i].start(
                ev.item_id.as_deref(),
                ev.video_bitrate,
                ev.audio_bitrate,
                ev.is_paused.unwrap_or(false),
            );
        }
        EventKind::PlaybackStop => {
            for s in model.sessions.iter_mut().filter(|s| matches(s)) {
                s.stop();
            }
        }
        _ => {}
    }
}

impl super::Engine {
    /// A remote PlaybackStart: the torrent clients make room for the newcomer's stream at
    /// once, before the debounced plan (their limit bites within a second; the stream's own
    /// limit only when it starts). The room is what the item needs (its bitrates from the
    /// event, else `demand.default_mbps`, times the overhead), at most the user's limit; the
    /// clients keep `min_mbps` (with `priority = "share"` the next plan gives them their
    /// share of the new count of claimants).
    pub(super) fn make_room(
        &self,
        model: &Snapshot,
        share: &mut crate::plan::DownloaderShare,
        ev: &HookEvent,
    ) {
        if ev.kind != EventKind::PlaybackStart {
            return;
        }
        let remote = matches!(
            crate::network::classify(ev.remote_end_point.as_deref(), &model.ranges),
            crate::network::Location::Remote(_)
        );
        if !remote {
            return;
        }
        let demand = &self.settings.bandwidth.demand;
        let source = match ev.video_bitrate.unwrap_or(0) + ev.audio_bitrate.unwrap_or(0) {
            0 => crate::config::mbps_to_bps(demand.default_mbps),
            b => b.max(0) as u64,
        };
        let limit = ev
            .user_id
            .as_ref()
            .and_then(|id| model.users.iter().find(|u| &u.id == id))
            .map(|u| u.limit)
            .filter(|l| *l > 0)
            .map_or(u64::MAX, |l| l as u64);
        let room = ((source as f64 * demand.overhead).round() as u64).min(limit);
        let lowered = share.limit.saturating_sub(room).max(share.min);
        if lowered < share.limit {
            debug!(
                from = share.limit,
                to = lowered,
                "a remote stream starts: the torrent clients make room"
            );
            share.limit = lowered;
            self.downloaders.send_replace(Some(Seeding::Limit(lowered)));
        }
    }
}
