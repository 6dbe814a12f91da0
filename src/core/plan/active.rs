//! Steps 2, 4 and 5 for the users streaming from outside: which streams ignore limits, the
//! rates held, each active user's limit and its streams' pushes; and the pinned users.

use crate::core::media::Account;
use crate::ids::ClientAddr;

use super::direct::forces_transcode;
use super::reasons::{ActiveReason, ActiveTerm, Reason, TranscodeNote, active_term};
use super::{
    Active, Context, Decision, Direction, Held, PUSH_SETTLE, Push, Role, STOP_GRACE, Stream,
    StreamRef, Streams, UNCONTROLLED_MARGIN_PERCENT, Uncontrolled, Watched, Why, effective, kept,
    quantize_keeping, rule,
};

/// What the memory (or, for one-shot commands, `recent`, the highest limit the user can have
/// had lately) says about a stream: does its client ignore limits, is a push on its way, when
/// does its push cooldown end.
pub(super) fn watch(cx: &Context, s: &Stream, recent: Option<i64>, server_limit: i64) -> Watched {
    let now = cx.now;
    let memo = cx.memory.stream(&s.session_id, &s.item_id);
    let start_bound = match memo {
        Some(m) => m.start_bound,
        None => recent.and_then(|r| effective(r, server_limit)),
    };
    let above = |limit: u64| {
        s.rate.is_some_and(|r| {
            r as u128 * 100 > limit as u128 * (100 + UNCONTROLLED_MARGIN_PERCENT) as u128
        })
    };
    let last_push = memo.and_then(|m| m.last_push);
    // Before any push the limit in force at the start bounds the stream; after one, the
    // bitrate pushed (once the client has had time to re-negotiate).
    let uncontrolled = memo
        .and_then(|m| m.uncontrolled)
        .or_else(|| match last_push {
            None => start_bound
                .filter(|limit| above(*limit))
                .map(|limit| Uncontrolled::StartedAbove { limit }),
            Some((at, pushed)) => (now.saturating_sub(at) >= PUSH_SETTLE && above(pushed))
                .then_some(Uncontrolled::IgnoredPush { pushed }),
        });
    let rate = s.rate.unwrap_or(cx.default_rate());
    // A push sent a moment ago may not show yet: count the stream at what it will carry once
    // it lands, and do not push it again.
    let rate = match last_push.filter(|(at, _)| now.saturating_sub(*at) < PUSH_SETTLE) {
        Some((_, bitrate)) if uncontrolled.is_none() => s.source.unwrap_or(rate).min(bitrate),
        _ => rate,
    };
    Watched {
        rate,
        uncontrolled,
        start_bound,
        cooldown_ends: last_push
            .map(|(at, _)| at + cx.settings.daemon.push_cooldown)
            .filter(|end| *end > now),
    }
}

/// Step 4: held rates. Streams that cannot be pushed keep their rate, the others share what
/// is left, each at most its source and its user's `share`; the pushes follow from them.
pub(super) fn held(cx: &Context, active: &[Active], share: &[u64], unmanaged_bps: u64) -> Held {
    let daemon = &cx.settings.daemon;
    let threshold = daemon.push_threshold_percent;
    let grace_ends = cx
        .memory
        .last_stop()
        .map(|t| t + STOP_GRACE)
        .filter(|end| *end > cx.now);
    // Every active user's streams one after the other: user `i`'s are `starts[i]..starts[i + 1]`.
    let mut starts = Vec::with_capacity(active.len() + 1);
    let mut running = Vec::with_capacity(active.iter().map(|a| a.streams.len()).sum());
    for (a, &share) in active.iter().zip(share) {
        starts.push(running.len());
        let k = a.streams.len() as u64;
        running.extend(a.streams.iter().zip(&a.watched).map(|(s, w)| {
            let pushable = daemon.push.down() && s.supports_push && w.uncontrolled.is_none();
            rule::Running {
                rate: w.rate,
                cap: s.source.map_or(share, |src| src.min(share)),
                floor: a.bounds.floor,
                weight_milli: (a.claimant.weight_milli / k).max(1),
                down: pushable,
                up: pushable
                    && daemon.push.up()
                    && w.cooldown_ends.is_none()
                    && grace_ends.is_none()
                    && s.source.is_some(),
            }
        }));
    }
    starts.push(running.len());
    let held = rule::held_rates(&running, cx.budget.budget_bps, unmanaged_bps, threshold);
    let total = unmanaged_bps + held.iter().map(|(h, _)| h).sum::<u64>();
    let counted: Vec<u64> = held
        .iter()
        .zip(&running)
        .map(|((h, _), r)| if r.down { (*h).min(r.cap) } else { *h })
        .collect();
    let counted_total = unmanaged_bps + counted.iter().sum::<u64>();
    // When a stream held low waits only for its cooldown or the grace after a stop, plan again
    // when they end.
    let wake_at = active
        .iter()
        .flat_map(|a| &a.watched)
        .zip(&running)
        .filter(|(_, r)| {
            r.down && daemon.push.up() && rule::worth_raising(r.rate, r.cap, threshold)
        })
        .filter_map(|(w, _)| match (w.cooldown_ends, grace_ends) {
            (None, None) => None,
            (a, b) => a.max(b),
        })
        .min();
    Held {
        starts,
        running,
        held,
        total,
        counted,
        counted_total,
        wake_at,
    }
}

/// Step 5: an active user's limit, `max(floor, min(share, budget - Σ h of the others))`, its
/// streams' pushes, quantization and hysteresis (never past the headroom).
pub(super) fn active_decision(cx: &Context, a: &Active, i: usize, h: &Held, why: Why) -> Decision {
    let b = cx.budget.budget_bps;
    let hysteresis = cx.settings.bandwidth.hysteresis_percent;
    let least = h.counted(i).iter().copied().min().unwrap_or(0);
    let most = h.held(i).iter().map(|(h, _)| *h).max().unwrap_or(0);
    // The user's next item replaces one of its streams: the one that holds least is the worst
    // case.
    let others = h.counted_total - least;
    let (exact, term) = rule::active_limit(why.share, b, others, a.bounds.floor);
    let pushes = h.held(i).iter().any(|(_, d)| d.is_some());
    let mut limit = quantize_keeping(exact, cx.budget.step_bps, a.bounds, most);
    // With a transcode capacity, neither rounding nor the hysteresis leaves a video below its
    // source when the exact limit lets it play direct.
    let videos = why
        .transcodes
        .map(|(t, i)| t.videos[i].as_slice())
        .unwrap_or_default();
    let direct_at = videos
        .iter()
        .flatten()
        .filter(|v| v.obeys && !v.stuck && v.source <= exact)
        .map(|v| v.source)
        .max();
    if let Some(d) = direct_at
        && limit < d
    {
        limit = exact;
    }
    let k = a.streams.len() as u64;
    let mut target = limit;
    let mut reason = ActiveReason {
        term: active_term(
            cx.settings.bandwidth.algorithm,
            &Why { term, ..why },
            a.bounds,
            others,
        ),
        streams: k,
        transcode: None,
        pushes: Vec::new(),
    };
    if let Some(cur) = kept(a.current, target, a.bounds, hysteresis)
        .filter(|&c| !pushes && (c <= target || c <= b.saturating_sub(others)) && c >= most)
        .filter(|&c| direct_at.is_none_or(|d| c >= d))
    {
        reason.term = ActiveTerm::Kept {
            current: cur,
            hysteresis,
            computed: target,
        };
        target = cur;
    }
    if let Some((t, i)) = why.transcodes {
        let capacity = t.load.capacity;
        if t.promoted[i] && direct_at.is_some() {
            reason.transcode = Some(TranscodeNote::KeptDirect { capacity });
        } else if t.load.beyond && forces_transcode(videos, target) {
            reason.transcode = Some(TranscodeNote::Beyond {
                transcodes: t.load.count.total(),
                capacity,
            });
        }
    }
    let limit = target;
    let streams: Vec<StreamRef> = a
        .streams
        .iter()
        .zip(&a.watched)
        .zip(h.held(i))
        .map(|((s, w), &(held, direction))| {
            // The client re-negotiates at most the bitrate sent (and keeps it as its own
            // maximum) under its user's new limit, so it carries the smaller of the two: a
            // push above the limit would restart the stream at the limit. A push that would
            // not change what it carries is not sent.
            let carried = if direction.is_some() {
                held.min(limit)
            } else {
                held
            };
            let push = direction
                .filter(|d| match d {
                    Direction::Down => carried < w.rate,
                    Direction::Up => carried > w.rate,
                })
                .map(|direction| Push {
                    direction,
                    bitrate: carried,
                });
            StreamRef {
                push,
                uncontrolled: w.uncontrolled,
                start_bound: w.start_bound,
                ..stream_ref(s, if push.is_some() { carried } else { held })
            }
        })
        .collect();
    reason.pushes = streams
        .iter()
        .filter_map(|s| {
            let p = s.push?;
            Some((p.direction, p.bitrate, s.source == Some(p.bitrate)))
        })
        .collect();
    Decision {
        user_id: a.user.id.clone(),
        user_name: a.user.display_name(),
        role: Role::Active { streams: k as u32 },
        endpoints: endpoints(&a.streams),
        stream_rate: a.streams.iter().filter_map(|s| s.rate).sum(),
        streams,
        current: a.current,
        target: target as i64,
        reason: Reason::Active(reason),
    }
}

/// The users the owner pinned: their limit is the pin, active or idle; their streams are not
/// pushed (a pin is the owner's word, not a share to balance).
pub(super) fn pinned_decisions(cx: &Context, pinned: &[(&Account, Streams)]) -> Vec<Decision> {
    pinned
        .iter()
        .filter_map(|(u, streams)| {
            let pin = cx.pin(u)?;
            let set = cx.snapshot.overrides.users.get(u.id.as_str())?;
            Some(Decision {
                user_id: u.id.clone(),
                user_name: u.display_name(),
                role: if streams.is_empty() {
                    Role::Idle
                } else {
                    Role::Active {
                        streams: streams.len() as u32,
                    }
                },
                endpoints: endpoints(streams),
                stream_rate: streams.iter().filter_map(|s| s.rate).sum(),
                streams: streams
                    .iter()
                    .map(|s| stream_ref(s, s.rate.unwrap_or(cx.default_rate()).min(pin)))
                    .collect(),
                current: u.limit,
                target: pin as i64,
                reason: Reason::Pinned {
                    pin,
                    by: set.by.clone(),
                },
            })
        })
        .collect()
}

/// A stream as its decision names it, holding `held`, with no push.
fn stream_ref(s: &Stream, held: u64) -> StreamRef {
    StreamRef {
        session_id: s.session_id.clone(),
        item_id: s.item_id.clone(),
        device: s.device.clone(),
        source: s.source,
        rate: s.rate,
        supports_push: s.supports_push,
        held,
        push: None,
        uncontrolled: None,
        start_bound: None,
    }
}

/// The addresses the streams come from, each once, in order.
fn endpoints(streams: &[Stream]) -> Vec<ClientAddr> {
    let mut out: Vec<ClientAddr> = streams.iter().map(|s| s.ip).collect();
    out.sort_unstable();
    out.dedup();
    out
}
