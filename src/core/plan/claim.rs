//! Steps 1 and 2: every session classified (remote / local / unknown endpoint), the remote
//! ones that play grouped by the user they claim for, and each managed user with remote
//! streams made one claimant (the streams of users jellydemon does not manage count at their
//! rate).

use smallvec::SmallVec;

use crate::core::HashMap;
use crate::core::allocate::Claimant;
use crate::core::media::RateSource;
use crate::ids::UserId;
use crate::network::{self, Location};

use super::active::watch;
use super::{Active, Claimants, Context, Inputs, SessionView, Stream, Streams, Warning, Watched};

/// Step 1: classify every session (remote / local / unknown endpoint) and keep, per user, the
/// remote ones that play (paused ones only with `count_paused`).
pub(super) fn classify(
    snapshot: &Inputs,
    count_paused: bool,
    same: &HashMap<UserId, UserId>,
    warnings: &mut Vec<Warning>,
) -> (Vec<SessionView>, Vec<(UserId, Streams)>) {
    let mut views = Vec::with_capacity(snapshot.sessions.len());
    // Each remote stream with the user it claims for, in the order of the sessions.
    let mut remote: Vec<(UserId, Option<Stream>)> = Vec::new();
    for s in snapshot.sessions {
        let location = network::classify(s.endpoint.as_deref(), snapshot.ranges);
        let user_id = s.user_id.clone();
        let playing = s.is_playing();
        let paused = s.paused;
        let rate = s.rate();
        let device = s.device.clone();
        let counts_as_playing = playing && (!paused || count_paused);
        let mut counted = false;
        if let (Some(uid), Some(now), true) = (&user_id, &s.playing, counts_as_playing) {
            match &location {
                Location::Remote(ip) => {
                    counted = true;
                    let claimant = same.get(uid).unwrap_or(uid);
                    remote.push((
                        claimant.clone(),
                        Some(Stream {
                            session_id: s.id.clone(),
                            item_id: now.item.clone(),
                            device: device.clone(),
                            supports_push: s.supports_push,
                            ip: *ip,
                            source: now.source,
                            rate: rate.map(RateSource::bps),
                            video: now.video,
                            uhd: now.uhd,
                            transcoding: s.transcodes_video(),
                            for_bitrate: now.transcode.is_none_or(|t| t.for_bitrate),
                        }),
                    ));
                }
                Location::Unknown(e) => warnings.push(Warning::UnknownEndpoint {
                    session_id: s.id.clone(),
                    user_name: s.user_name.clone(),
                    device: device.clone(),
                    error: e.clone(),
                }),
                Location::Local(_) => {}
            }
        }
        views.push(SessionView {
            session_id: s.id.clone(),
            user_id,
            user_name: s.user_name.clone(),
            device,
            location,
            playing,
            paused,
            rate,
            counted,
        });
    }
    if let Some(ip) = network::proxy_suspect(
        views
            .iter()
            .filter_map(|v| v.location.ip().map(|ip| (ip, &v.device))),
    ) {
        warnings.push(Warning::ProxySuspect(ip));
    }
    // Grouped by user, in the order of the users' ids whatever the order of the sessions (a
    // user's streams in the sessions' order): the positions are sorted, stably, then each
    // stream is moved once into its group.
    let mut order: Vec<usize> = (0..remote.len()).collect();
    order.sort_by(|&a, &b| remote[a].0.cmp(&remote[b].0));
    let mut remote_by_user: Vec<(UserId, Streams)> = Vec::new();
    for i in order {
        let (uid, stream) = &mut remote[i];
        let stream = stream.take().expect("each stream once");
        match remote_by_user.last_mut() {
            Some((last, streams)) if last == uid => streams.push(stream),
            _ => remote_by_user.push((uid.clone(), smallvec::smallvec![stream])),
        }
    }
    (views, remote_by_user)
}

/// Step 2: a managed user with k remote streams is one claimant; streams of other users count
/// at their rate. Each stream is checked against the memory for a client ignoring limits.
pub(super) fn claimants<'a>(
    cx: &Context<'a>,
    remote_by_user: Vec<(UserId, Streams)>,
    warnings: &mut Vec<Warning>,
) -> Claimants<'a> {
    let mut out = Claimants {
        active: Vec::new(),
        pinned: Vec::new(),
        unmanaged_bps: 0,
        streaming: 0,
    };
    for (uid, streams) in remote_by_user {
        out.streaming += streams.iter().filter_map(|s| s.rate).sum::<u64>();
        let Some((index, u)) = cx
            .users
            .get(&uid)
            .map(|&i| (i, &cx.snapshot.users[i]))
            .filter(|(_, u)| cx.managed(u))
        else {
            out.unmanaged_bps += streams
                .iter()
                .map(|s| s.rate.unwrap_or(cx.default_rate()))
                .sum::<u64>();
            continue;
        };
        if let Some(pin) = cx.pin(u) {
            // Outside the water-filling: the pin is what they may take.
            out.unmanaged_bps += streams
                .iter()
                .map(|s| s.rate.unwrap_or(cx.default_rate()).min(pin))
                .sum::<u64>();
            out.pinned.push((u, streams));
            continue;
        }
        let current = u.limit;
        let bounds = cx.bounds_of(u);
        // The highest limit the user can have had when a new item started: from the memory
        // of the last plan when there is one; else, when jellydemon has written the user
        // since its original was set, the largest of those values (a change by hand clears
        // them: then nobody knows).
        let recent = cx.memory.recent_limit(&uid, current).or_else(|| {
            let original = cx.originals.original(&uid)?;
            let written = cx.originals.written(&uid);
            (!written.is_empty()).then(|| {
                written
                    .iter()
                    .copied()
                    .fold(current.max(original), i64::max)
            })
        });
        let server_limit = cx.server_limit_of(u);
        let watched: SmallVec<[Watched; 1]> = streams
            .iter()
            .map(|s| watch(cx, s, recent, server_limit))
            .collect();
        for (s, w) in streams.iter().zip(&watched) {
            if let Some(why) = w.uncontrolled {
                warnings.push(Warning::Uncontrolled {
                    user_name: u.display_name(),
                    device: s.device.clone(),
                    rate: s.rate.unwrap_or(0),
                    why,
                });
            }
        }
        let demands: SmallVec<[u64; 1]> = streams.iter().map(|s| cx.demand(s.source)).collect();
        let k = streams.len() as u64;
        let claimant = Claimant {
            weight_milli: cx.weight(u),
            floor: bounds.floor.saturating_mul(k),
            ceiling: bounds.ceiling.saturating_mul(k),
            demand: demands.iter().sum(),
        };
        out.active.push(Active {
            user: u,
            index,
            streams,
            watched,
            bounds,
            current,
            claimant,
            demands,
        });
    }
    out
}
