//! The rule that sets limits, one named step per term (pure, integer bits/s). A limit only bites
//! when a stream starts (a running stream keeps its rate until its next item or a push), so
//! limits are computed from the rates that run now:
//!
//! * [`fair_shares`]: `f(u)`, weighted max-min water-filling over the active claimants, each
//!   capped by its demand (the source bitrate of what it plays), so what one cannot use goes to
//!   the others; and the share for each claimant's *next* item;
//! * [`held_rates`]: `h(s)`, what each running stream will carry after this plan's pushes
//!   (streams that cannot be pushed keep their rate; the others share what is left), and so
//!   which streams are pushed down or up;
//! * [`active_limit`]: `max(floor, min(share, budget - Σ h of the others))`, so a user's next
//!   item fits beside what the others hold now;
//! * [`join_share`]: the same for an idle user, with the fair share of one more claimant,
//!   beside what the running streams will hold once the newcomer is there.

use crate::config::Algorithm;
use crate::core::allocate::{self, Allocation, Bound, Claimant};

/// The fair shares of the active claimants, in their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FairShares {
    /// `f(u)`: each claimant's share when every claimant is capped by its demand.
    pub fair: Vec<u64>,
    /// The share for each claimant's next item, whose demand nobody knows yet: for `demand`
    /// the same as `fair`; for `equal` and `priority` what the claimant would get with its own
    /// demand cap lifted (the others keep theirs), so a user who moves from music to a film is
    /// not held at the music's rate.
    pub next_item: Vec<u64>,
    /// What decided each `fair` share.
    pub bounds: Vec<Bound>,
    /// The floors alone exceed what is available.
    pub overloaded: bool,
}

/// Step 1: `f(u)` and the next-item share of every active claimant.
pub fn fair_shares(algorithm: Algorithm, claimants: &[Claimant], available: u64) -> FairShares {
    let (
        Allocation {
            shares,
            bounds,
            overloaded,
        },
        lifted,
    ) = allocate::fair_by_demand_and_lifted(
        algorithm,
        claimants,
        available,
        |_, c, b, overloaded| algorithm != Algorithm::Demand && capped_by_demand(c, b, overloaded),
    );
    // With `demand` nothing is lifted: the next item's share is the fair one.
    let next_item = lifted
        .into_iter()
        .zip(&shares)
        .map(|(lifted, share)| lifted.unwrap_or(*share))
        .collect();
    FairShares {
        fair: shares,
        next_item,
        bounds,
        overloaded,
    }
}

/// The share for claimant `i`'s next item alone: `fair_shares(..).next_item[i]`, with only
/// its own demand cap lifted.
pub fn next_item_share(
    algorithm: Algorithm,
    claimants: &[Claimant],
    available: u64,
    i: usize,
) -> u64 {
    let (a, lifted) = allocate::fair_by_demand_and_lifted(
        algorithm,
        claimants,
        available,
        |j, c, b, overloaded| {
            algorithm != Algorithm::Demand && j == i && capped_by_demand(c, b, overloaded)
        },
    );
    lifted[i].unwrap_or(a.shares[i])
}

/// Whether the claimant's demand, not the level, holds its share (so its next item, whose
/// demand nobody knows, may get more).
fn capped_by_demand(c: &Claimant, b: Bound, overloaded: bool) -> bool {
    b == Bound::Demand || (b == Bound::Floor && c.demand <= c.floor && !overloaded)
}

/// The fair shares with one more claimant whose demand is unknown (an idle user who would
/// start now), appended last: its share is the last one, and the others' are what they would
/// keep beside it.
pub fn with_newcomer(
    algorithm: Algorithm,
    claimants: &[Claimant],
    newcomer: Claimant,
    available: u64,
) -> FairShares {
    let mut with = claimants.to_vec();
    with.push(Claimant {
        demand: newcomer.ceiling,
        ..newcomer
    });
    fair_shares(algorithm, &with, available)
}

/// Within a user's share, the limit for each of its `k` streams (a limit is per user and
/// applies to every stream): the level at which the streams' demands fill the share, so a
/// light stream beside a heavy one does not halve the heavy one's limit. With one stream, the
/// share itself.
pub fn per_stream(share: u64, demands: &[u64]) -> u64 {
    match demands {
        [] | [_] => share,
        _ => {
            let total: u64 = demands.iter().sum();
            if total <= share {
                // Everything fits: the slack goes to whichever stream starts something bigger.
                let largest = demands.iter().copied().max().unwrap_or(0);
                return share - total + largest;
            }
            let mut sorted = demands.to_vec();
            sorted.sort_unstable();
            let mut rest = share;
            let n = sorted.len() as u64;
            for (i, d) in sorted.iter().enumerate() {
                let left = n - i as u64;
                if d.saturating_mul(left) >= rest {
                    return rest / left;
                }
                rest -= d;
            }
            rest
        }
    }
}

/// Which term of a limit decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    /// The share (fair share, or fair share with one more for a join share).
    Share,
    /// The headroom beside what the others hold.
    Headroom,
    /// The floor (the headroom was smaller).
    Floor,
}

/// `max(floor, min(share, budget - held))`, and which term decided it.
fn beside(share: u64, budget: u64, held: u64, floor: u64) -> (u64, Term) {
    let headroom = budget.saturating_sub(held);
    let (value, term) = if share <= headroom {
        (share, Term::Share)
    } else {
        (headroom, Term::Headroom)
    };
    if value < floor {
        (floor, Term::Floor)
    } else {
        (value, term)
    }
}

/// Step 3: an active user's limit, `max(floor, min(share, budget - Σ h of the others))`: the
/// user's next item fits beside what the others hold now.
pub fn active_limit(share: u64, budget: u64, held_by_others: u64, floor: u64) -> (u64, Term) {
    beside(share, budget, held_by_others, floor)
}

/// Step 4: an idle user's limit (the join share), `max(floor, min(fair share with one more
/// claimant, budget - Σ h))`: a newcomer's first item fits beside everything that runs.
pub fn join_share(share_with_one_more: u64, budget: u64, held: u64, floor: u64) -> (u64, Term) {
    beside(share_with_one_more, budget, held, floor)
}

/// A running stream as [`held_rates`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    /// Its current rate.
    pub rate: u64,
    /// The most it may carry after a push: its source, and its user's per-stream share.
    pub cap: u64,
    /// The least a push takes it to (the floor).
    pub floor: u64,
    /// Its user's weight in thousandths, divided among the user's streams.
    pub weight_milli: u64,
    /// May be pushed down (its session accepts the command, pushes are on, it obeys limits).
    pub down: bool,
    /// May be pushed up (as `down`, pushes up are on, its cooldown has passed).
    pub up: bool,
}

/// Which way a push goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Lower than it runs now, to free room for others.
    Down,
    /// Higher, into room that is free.
    Up,
}

impl Direction {
    /// "down" or "up".
    pub fn label(self) -> &'static str {
        match self {
            Direction::Down => "down",
            Direction::Up => "up",
        }
    }
}

/// Worth a push: `to` is at least `threshold_percent` above `from` (a push interrupts the
/// stream for a moment).
pub fn worth_raising(from: u64, to: u64, threshold_percent: f64) -> bool {
    to > from && to as f64 >= from as f64 * (1.0 + threshold_percent / 100.0)
}

/// Step 2: `h(s)`, what each running stream will carry after this plan's pushes, and the push
/// that gets it there. Streams that cannot be pushed keep their rate; the others share what
/// is left of the budget (after `held_elsewhere` and the fixed streams) by weighted max-min
/// water-filling, each at most its cap, or at most its rate when that is higher (a push
/// interrupts a stream, so one above its share is pushed down only when the budget needs it).
/// A stream whose share is below its rate is pushed down, and then to at most its cap: the
/// client re-negotiates under its user's new limit, which is at most the user's share, so a
/// push above the cap would carry the cap anyway (and look like room the stream could be
/// pushed up into); one whose share is `threshold_percent` above its rate is pushed up; any
/// other keeps its rate, which leaves the difference to the rest (repeated until nothing
/// changes: each round only pins streams, so it ends within one round per stream).
pub fn held_rates(
    streams: &[Running],
    budget: u64,
    held_elsewhere: u64,
    threshold_percent: f64,
) -> Vec<(u64, Option<Direction>)> {
    // What each pinned stream carries, and whether a push gets it there.
    let mut pinned: Vec<Option<(u64, Option<Direction>)>> = streams
        .iter()
        .map(|s| (!s.down).then_some((s.rate, None)))
        .collect();
    loop {
        let fixed: u64 = pinned.iter().flatten().map(|(h, _)| h).sum();
        let left = budget.saturating_sub(held_elsewhere + fixed);
        let free: Vec<usize> = (0..streams.len())
            .filter(|i| pinned[*i].is_none())
            .collect();
        let claimants: Vec<Claimant> = free
            .iter()
            .map(|&i| {
                let s = &streams[i];
                // A stream above its share keeps its rate unless the budget needs it back.
                let ceiling = s.cap.max(s.rate);
                Claimant {
                    weight_milli: s.weight_milli,
                    floor: s.floor.min(ceiling),
                    ceiling,
                    demand: ceiling,
                }
            })
            .collect();
        let shares = allocate::allocate(Algorithm::Priority, &claimants, left).shares;
        let mut changed = false;
        for (&i, &t) in free.iter().zip(&shares) {
            let s = &streams[i];
            if t >= s.rate && !(s.up && worth_raising(s.rate, t, threshold_percent)) {
                pinned[i] = Some((s.rate, None));
                changed = true;
            }
        }
        if !changed {
            // A cut too small to be worth interrupting a stream for: keep the smallest one
            // while the other free streams can still absorb it above their floors.
            let small = free
                .iter()
                .zip(&shares)
                .filter(|&(&i, &t)| {
                    t < streams[i].rate && !worth_raising(t, streams[i].rate, threshold_percent)
                })
                .min_by(|a, b| {
                    let (ra, rb) = (streams[*a.0].rate as u128, streams[*b.0].rate as u128);
                    (*b.1 as u128 * ra).cmp(&(*a.1 as u128 * rb))
                });
            if let Some((&i, _)) = small {
                let rest_floors: u64 = free
                    .iter()
                    .filter(|&&j| j != i)
                    .map(|&j| streams[j].floor.min(streams[j].cap.max(streams[j].rate)))
                    .sum();
                if streams[i].rate + rest_floors <= left {
                    pinned[i] = Some((streams[i].rate, None));
                    changed = true;
                }
            }
        }
        if !changed {
            // Pushed down, a stream carries at most its cap: what it would have had above
            // goes back to the others.
            for (&i, &t) in free.iter().zip(&shares) {
                let s = &streams[i];
                let cap = s.cap.max(s.floor.min(s.rate));
                if t < s.rate && t > cap {
                    pinned[i] = Some((cap, Some(Direction::Down)));
                    changed = true;
                }
            }
        }
        if !changed {
            let mut out: Vec<(u64, Option<Direction>)> =
                pinned.iter().map(|p| p.unwrap_or((0, None))).collect();
            for (&i, &t) in free.iter().zip(&shares) {
                let direction = if t < streams[i].rate {
                    Direction::Down
                } else {
                    Direction::Up
                };
                out[i] = (t, Some(direction));
            }
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1_000_000;

    proptest::proptest! {
        /// One claimant's next-item share alone is the one all of them get at once.
        #[test]
        fn one_next_item_share_is_the_one_of_all(
            cs in proptest::collection::vec(
                (1u64..3000, 0u64..5 * M, 0u64..60 * M, 0u64..80 * M),
                1..20,
            ),
            available in 0u64..400 * M,
            alg in proptest::sample::select(vec![Algorithm::Equal, Algorithm::Priority, Algorithm::Demand]),
        ) {
            let cs: Vec<Claimant> = cs
                .into_iter()
                .map(|(w, floor, extra, demand)| Claimant { weight_milli: w, floor, ceiling: floor + extra, demand })
                .collect();
            let all = fair_shares(alg, &cs, available).next_item;
            for (i, share) in all.iter().enumerate() {
                proptest::prop_assert_eq!(next_item_share(alg, &cs, available, i), *share, "claimant {}", i);
            }
        }
    }

    fn c(demand: u64) -> Claimant {
        Claimant {
            weight_milli: 1000,
            floor: 2 * M,
            ceiling: u64::MAX / 4,
            demand,
        }
    }

    #[test]
    fn fair_shares_give_what_a_light_claimant_cannot_use_to_the_others() {
        // A remux (77 with overhead) beside a 44 Mbps newcomer on 90: 46 and 44.
        let s = fair_shares(Algorithm::Equal, &[c(77 * M), c(44 * M)], 90 * M);
        assert_eq!(s.fair, vec![46 * M, 44 * M]);
        assert_eq!(s.bounds, vec![Bound::Fair, Bound::Demand]);
        // The newcomer's next item could get 45 (its demand unknown); for `demand`, 44.
        assert_eq!(s.next_item, vec![46 * M, 45 * M]);
        let d = fair_shares(Algorithm::Demand, &[c(77 * M), c(44 * M)], 90 * M);
        assert_eq!(d.next_item, vec![46 * M, 44 * M]);
    }

    #[test]
    fn an_audio_listener_reserves_nothing_beyond_its_floor() {
        let s = fair_shares(Algorithm::Equal, &[c(352_000), c(55 * M)], 90 * M);
        assert_eq!(s.fair, vec![2 * M, 55 * M]);
        // Its next item could be a film: the equal split it would get then; and the 4K
        // user's next item could take all the audio listener leaves.
        assert_eq!(s.next_item, vec![45 * M, 88 * M]);
    }

    #[test]
    fn priority_weights_split_the_fair_shares() {
        let mut heavy = c(u64::MAX / 4);
        heavy.weight_milli = 2000;
        let s = fair_shares(Algorithm::Priority, &[heavy, c(u64::MAX / 4)], 90 * M);
        assert_eq!(s.fair, vec![60 * M, 30 * M]);
    }

    #[test]
    fn newcomer_gets_the_share_with_one_more() {
        let s = with_newcomer(Algorithm::Equal, &[c(77 * M)], c(0), 90 * M);
        assert_eq!(s.next_item, vec![45 * M, 45 * M]);
        let s = with_newcomer(Algorithm::Equal, &[c(11 * M)], c(0), 90 * M);
        assert_eq!(s.fair, vec![11 * M, 79 * M]);
    }

    #[test]
    fn per_stream_limit_fills_the_share_with_the_streams_demands() {
        assert_eq!(per_stream(90 * M, &[77 * M]), 90 * M);
        // 40 and 4 within 30: the level where min(40, L) + min(4, L) = 30 is 26.
        assert_eq!(per_stream(30 * M, &[40 * M, 4 * M]), 26 * M);
        // Both heavy: an even split.
        assert_eq!(per_stream(30 * M, &[40 * M, 40 * M]), 15 * M);
        // Everything fits: the slack goes to the larger next item.
        assert_eq!(per_stream(90 * M, &[44 * M, 4 * M]), 86 * M);
    }

    #[test]
    fn active_limit_fits_beside_what_the_others_hold() {
        assert_eq!(
            active_limit(46 * M, 90 * M, 20 * M, 2 * M),
            (46 * M, Term::Share)
        );
        assert_eq!(
            active_limit(45 * M, 90 * M, 70 * M, 2 * M),
            (20 * M, Term::Headroom)
        );
        assert_eq!(
            active_limit(45 * M, 90 * M, 89 * M, 2 * M),
            (2 * M, Term::Floor)
        );
        assert_eq!(
            active_limit(45 * M, 90 * M, 120 * M, 2 * M),
            (2 * M, Term::Floor)
        );
    }

    #[test]
    fn join_share_is_the_headroom_when_it_is_smaller() {
        // One remux at 70 on 90: a newcomer could have 45, but 20 is what is free.
        assert_eq!(
            join_share(45 * M, 90 * M, 70 * M, 2 * M),
            (20 * M, Term::Headroom)
        );
        assert_eq!(
            join_share(45 * M, 90 * M, 10 * M, 2 * M),
            (45 * M, Term::Share)
        );
    }

    fn r(rate: u64, cap: u64, pushable: bool) -> Running {
        Running {
            rate,
            cap,
            floor: 2 * M,
            weight_milli: 1000,
            down: pushable,
            up: pushable,
        }
    }

    #[test]
    fn streams_that_can_be_pushed_share_what_the_others_leave() {
        let out = held_rates(
            &[
                r(70 * M, 70 * M, true),  // a remux that took an idle link: down
                r(20 * M, 40 * M, true),  // a newcomer that started at the headroom: up
                r(30 * M, 30 * M, false), // cannot be pushed: keeps 30
            ],
            90 * M,
            0,
            25.0,
        );
        assert_eq!(
            out,
            vec![
                (30 * M, Some(Direction::Down)),
                (30 * M, Some(Direction::Up)),
                (30 * M, None)
            ]
        );
    }

    #[test]
    fn a_stream_not_worth_raising_leaves_its_share_to_the_others() {
        // 20 -> 24 is not 25 % more: it keeps 20, and the other gets what it leaves.
        let out = held_rates(
            &[r(20 * M, 24 * M, true), r(10 * M, 60 * M, true)],
            90 * M,
            10 * M,
            25.0,
        );
        assert_eq!(out, vec![(20 * M, None), (60 * M, Some(Direction::Up))]);
        // In its cooldown it is not raised either.
        let mut cooling = r(5 * M, 60 * M, true);
        cooling.up = false;
        let out = held_rates(&[cooling, r(20 * M, 24 * M, true)], 90 * M, 0, 25.0);
        assert_eq!(out, vec![(5 * M, None), (20 * M, None)]);
    }

    #[test]
    fn a_stream_pushed_down_carries_at_most_its_cap() {
        // 60 on a 55 link beside a fixed 4: the budget would let it keep 51, but its user's
        // share is 25.5, and a pushed client re-negotiates under its user's limit. Pushed to
        // 51 it would carry 25.5 anyway, and look like room to push it up into.
        let out = held_rates(
            &[r(60 * M, 25_500_000, true), r(4 * M, 4 * M, false)],
            55 * M,
            0,
            25.0,
        );
        assert_eq!(
            out,
            vec![(25_500_000, Some(Direction::Down)), (4 * M, None)]
        );
        // What it leaves goes to a stream that can take it.
        let out = held_rates(
            &[r(60 * M, 20 * M, true), r(10 * M, 40 * M, true)],
            55 * M,
            0,
            25.0,
        );
        assert_eq!(
            out,
            vec![
                (20 * M, Some(Direction::Down)),
                (35 * M, Some(Direction::Up))
            ]
        );
    }

    #[test]
    fn held_rates_never_exceed_the_budget_unless_fixed_streams_do() {
        let out = held_rates(
            &[r(50 * M, 80 * M, true), r(50 * M, 80 * M, true)],
            90 * M,
            30 * M,
            25.0,
        );
        assert_eq!(
            out,
            vec![
                (30 * M, Some(Direction::Down)),
                (30 * M, Some(Direction::Down))
            ]
        );
        // Fixed streams over the budget: the pushable one goes to its floor.
        let out = held_rates(
            &[r(60 * M, 60 * M, false), r(40 * M, 40 * M, true)],
            90 * M,
            0,
            25.0,
        );
        assert_eq!(out, vec![(60 * M, None), (30 * M, Some(Direction::Down))]);
        let out = held_rates(
            &[r(95 * M, 95 * M, false), r(40 * M, 40 * M, true)],
            90 * M,
            0,
            25.0,
        );
        assert_eq!(out[1], (2 * M, Some(Direction::Down)));
    }
}
