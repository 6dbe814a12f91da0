//! The reasons a plan gives, in words: which term bound an active user's limit, and the
//! idle users' sentence.

use crate::config::Algorithm;
use crate::core::allocate::Bound;
use crate::core::rate::Mbps;

use super::bounds::{Bounds, ceiling_label};
use super::direct::Transcodes;
use super::rule;

/// How an active user's share came about, for its reason.
pub(super) struct Why<'a> {
    pub(super) term: rule::Term,
    pub(super) bound: Bound,
    pub(super) share: u64,
    pub(super) claimants: usize,
    pub(super) available: u64,
    pub(super) overloaded: bool,
    /// With a transcode capacity: the step's result, and this user's index in it.
    pub(super) transcodes: Option<(&'a Transcodes, usize)>,
}

/// "1 idle user held at 8.5 Mbps." / "4 idle users held at 20 Mbps and 2 at 90 Mbps."
pub(super) fn idle_sentence(limits: &mut [u64]) -> String {
    limits.sort_unstable();
    let mut groups: Vec<(usize, u64)> = Vec::new();
    for &l in limits.iter() {
        match groups.last_mut() {
            Some((n, v)) if *v == l => *n += 1,
            _ => groups.push((1, l)),
        }
    }
    // The most common limit first.
    groups.sort_by_key(|&(n, v)| (std::cmp::Reverse(n), v));
    let (n, v) = groups[0];
    let mut s = format!(
        "{n} idle user{} held at {}",
        if n == 1 { "" } else { "s" },
        Mbps(v)
    );
    let rest: Vec<String> = groups[1..]
        .iter()
        .map(|&(n, v)| format!("{n} at {}", Mbps(v)))
        .collect();
    match rest.len() {
        0 => {}
        1 => s.push_str(&format!(" and {}", rest[0])),
        _ => {
            let (last, first) = rest.split_last().expect("two or more");
            s.push_str(&format!(", {} and {last}", first.join(", ")));
        }
    }
    s.push('.');
    s
}

/// Which term bound an active user's limit, in words.
pub(super) fn active_reason(
    algorithm: Algorithm,
    why: &Why,
    b: Bounds,
    held_by_others: u64,
) -> String {
    match why.term {
        rule::Term::Headroom => format!("headroom beside {} held by others", Mbps(held_by_others)),
        rule::Term::Floor if why.overloaded => format!(
            "floor {}: overload, the floors exceed the budget",
            Mbps(b.floor)
        ),
        rule::Term::Floor => format!(
            "floor {}: {} held by others leave less",
            Mbps(b.floor),
            Mbps(held_by_others)
        ),
        rule::Term::Share if why.share >= b.ceiling => format!(
            "capped by {} of {}",
            ceiling_label(b.source),
            Mbps(b.ceiling)
        ),
        rule::Term::Share => match (algorithm, why.bound) {
            (Algorithm::Demand, Bound::Demand) => {
                format!("its demand {}", Mbps(why.share))
            }
            _ => format!(
                "fair share {} of {} among {}",
                Mbps(why.share),
                Mbps(why.available),
                why.claimants
            ),
        },
    }
}
