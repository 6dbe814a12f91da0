//! A user's floor and ceiling, the rounding to a step within them, and the hysteresis that
//! keeps a current value close enough to the target.

use crate::config::{MAX_JELLYFIN_LIMIT_BPS, Settings};
use crate::core::allocate;

/// Which cap bounds a user's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeilingSource {
    MaxPerUser,
    OwnLimit,
    ServerLimit,
    Jellyfin,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    pub(super) floor: u64,
    pub(super) ceiling: u64,
    pub(super) source: CeilingSource,
}

/// A user's per-stream floor and ceiling. The ceiling is the smallest of `max_per_user`, the
/// user's original limit when it was > 0 (an admin's own cap is never raised), and the
/// server-wide limit when the original was 0.
pub(super) fn bounds(settings: &Settings, original: i64, server_limit: i64) -> Bounds {
    let b = settings.budget();
    let mut ceiling = MAX_JELLYFIN_LIMIT_BPS;
    let mut source = CeilingSource::Jellyfin;
    let mut cap = |value: u64, src: CeilingSource| {
        if value < ceiling {
            ceiling = value;
            source = src;
        }
    };
    if let Some(max) = b.max_per_user_bps {
        cap(max, CeilingSource::MaxPerUser);
    }
    if original > 0 {
        cap(original as u64, CeilingSource::OwnLimit);
    } else if server_limit > 0 {
        cap(server_limit as u64, CeilingSource::ServerLimit);
    }
    // Never 0: 0 means "server default" to Jellyfin.
    let ceiling = ceiling.max(1);
    Bounds {
        floor: b.min_per_user_bps.min(ceiling).max(1),
        ceiling,
        source,
    }
}

/// Round `exact` down to the step within the bounds, but never below `keep` when `keep` fits
/// under `exact`: a stream running at `keep` is then not pushed for a rounding difference.
pub(super) fn quantize_keeping(exact: u64, step: u64, b: Bounds, keep: u64) -> u64 {
    let q = allocate::quantize(exact, step, b.floor, b.ceiling);
    if keep > q && keep <= exact {
        keep.min(b.ceiling)
    } else {
        q
    }
}

/// The limit Jellyfin applies for a user's value: its own when > 0, else the server's;
/// `None` when neither limits.
pub(super) fn effective(limit: i64, server_limit: i64) -> Option<u64> {
    match (limit > 0, server_limit > 0) {
        (true, _) => Some(limit as u64),
        (false, true) => Some(server_limit as u64),
        _ => None,
    }
}

/// The current value, when the hysteresis keeps it instead of `target`: close enough, within
/// the bounds, and not 0 ("server default" is never close to anything). The caller adds the
/// rule's own condition (never past the headroom).
pub(super) fn kept(current: i64, target: u64, b: Bounds, percent: f64) -> Option<u64> {
    let cur = u64::try_from(current).ok()?;
    (cur != target
        && cur >= b.floor
        && cur <= b.ceiling
        && allocate::within_hysteresis(cur, target, percent))
    .then_some(cur)
}

pub(super) fn ceiling_label(source: CeilingSource) -> &'static str {
    match source {
        CeilingSource::MaxPerUser => "max_per_user",
        CeilingSource::OwnLimit => "the user's own limit",
        CeilingSource::ServerLimit => "the server-wide limit",
        CeilingSource::Jellyfin => "Jellyfin's maximum",
    }
}
