use super::*;
use proptest::prelude::*;

const M: u64 = 1_000_000;

fn c(floor: u64, ceiling: u64) -> Claimant {
    Claimant {
        weight_milli: 1000,
        floor,
        ceiling,
        demand: 0,
    }
}

#[test]
fn equal_split_to_the_bit() {
    let a = allocate(Algorithm::Equal, &[c(0, u64::MAX); 3], 100);
    assert_eq!(a.shares, vec![33, 33, 33]);
    assert!(!a.overloaded);
    let a = allocate(Algorithm::Equal, &[c(2 * M, 1000 * M); 4], 90 * M);
    assert_eq!(a.shares, vec![22_500_000; 4]);
    assert_eq!(a.bounds, vec![Bound::Fair; 4]);
}

#[test]
fn capped_claimant_leaves_its_unused_share_to_the_others() {
    // An admin capped at 10 Mbps: the other two split the remaining 80.
    let a = allocate(
        Algorithm::Equal,
        &[c(2 * M, 10 * M), c(2 * M, 1000 * M), c(2 * M, 1000 * M)],
        90 * M,
    );
    assert_eq!(a.shares, vec![10 * M, 40 * M, 40 * M]);
    assert_eq!(a.bounds, vec![Bound::Ceiling, Bound::Fair, Bound::Fair]);
}

#[test]
fn floors_win_and_overload_is_reported() {
    let a = allocate(Algorithm::Equal, &[c(4 * M, 100 * M); 3], 10 * M);
    assert_eq!(a.shares, vec![4 * M; 3]);
    assert!(a.overloaded);
    assert_eq!(a.bounds, vec![Bound::Floor; 3]);
    // Exactly at the budget is not an overload.
    let a = allocate(Algorithm::Equal, &[c(5 * M, 100 * M); 2], 10 * M);
    assert!(!a.overloaded);
}

#[test]
fn floor_lifts_a_light_claimant_in_priority() {
    // Weights 1 and 9 over 20 Mbps: the light one would get 2 Mbps but its floor is 3.
    let mut light = c(3 * M, 100 * M);
    light.weight_milli = 1000;
    let mut heavy = c(3 * M, 100 * M);
    heavy.weight_milli = 9000;
    let a = allocate(Algorithm::Priority, &[light, heavy], 20 * M);
    assert_eq!(a.shares, vec![3 * M, 17 * M]);
    assert_eq!(a.bounds, vec![Bound::Floor, Bound::Fair]);
}

#[test]
fn priority_weights_split_proportionally() {
    let mut a1 = c(0, u64::MAX);
    a1.weight_milli = 2000;
    let b1 = c(0, u64::MAX);
    let a = allocate(Algorithm::Priority, &[a1, b1], 90 * M);
    assert_eq!(a.shares, vec![60 * M, 30 * M]);
    // Equal ignores the weights.
    let a = allocate(Algorithm::Equal, &[a1, b1], 90 * M);
    assert_eq!(a.shares, vec![45 * M, 45 * M]);
}

#[test]
fn demand_gives_light_streams_what_they_use_and_splits_the_rest() {
    let audio = Claimant {
        demand: 320_000,
        ..c(M, 100 * M)
    };
    let hd = Claimant {
        demand: 12 * M,
        ..c(M, 100 * M)
    };
    let remux = Claimant {
        demand: 80 * M,
        ..c(M, 100 * M)
    };
    let a = allocate(Algorithm::Demand, &[audio, hd, remux], 60 * M);
    // The audio stream's demand is below the floor: it gets the floor.
    assert_eq!(a.shares, vec![M, 12 * M, 47 * M]);
    assert_eq!(a.bounds, vec![Bound::Floor, Bound::Demand, Bound::Fair]);
    // With room for everyone, nobody holds more than their demand.
    let a = allocate(Algorithm::Demand, &[audio, hd], 60 * M);
    assert_eq!(a.shares, vec![M, 12 * M]);
}

#[test]
fn ceiling_below_floor_wins() {
    // An admin's own 1 Mbps cap is never raised, even with a 2 Mbps floor.
    let a = allocate(Algorithm::Equal, &[c(2 * M, M), c(2 * M, 100 * M)], 50 * M);
    assert_eq!(a.shares, vec![M, 49 * M]);
}

#[test]
fn empty_and_single() {
    assert!(allocate(Algorithm::Equal, &[], 10).shares.is_empty());
    assert_eq!(
        allocate(Algorithm::Equal, &[c(1, 1_000)], 500).shares,
        vec![500]
    );
}

#[test]
fn quantize_rounds_down_within_bounds() {
    assert_eq!(quantize(22_750_000, 500_000, 2 * M, 100 * M), 22_500_000);
    assert_eq!(quantize(2_100_000, 500_000, 2_100_000, 100 * M), 2_100_000);
    assert_eq!(quantize(150 * M, 500_000, 2 * M, 100 * M), 100 * M);
}

#[test]
fn hysteresis_band() {
    assert!(within_hysteresis(20 * M, 20_900_000, 5.0));
    assert!(within_hysteresis(20 * M, 19 * M, 5.0));
    assert!(!within_hysteresis(20 * M, 21_500_000, 5.0));
    assert!(!within_hysteresis(0, 1, 5.0));
}

fn claimants() -> impl Strategy<Value = Vec<Claimant>> {
    prop::collection::vec(
        (1u64..5_000, 0u64..20 * M, 0u64..200 * M, 0u64..100 * M).prop_map(
            |(w, f, extra, demand)| Claimant {
                weight_milli: w,
                floor: f,
                ceiling: f + extra,
                demand,
            },
        ),
        0..40,
    )
}

fn algorithms() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::Equal),
        Just(Algorithm::Priority),
        Just(Algorithm::Demand)
    ]
}

/// The water-filling as it was before the breakpoints were sorted with running sums:
/// the binary search evaluates the level sum over every claimant at each step. The oracle
/// the faster one must match to the bit.
fn water_fill_oracle(cs: &[Claimant], budget: u64) -> (Vec<u64>, bool) {
    let budget = budget as u128;
    let sum_floor: u128 = cs.iter().map(|c| c.floor as u128).sum();
    if sum_floor >= budget {
        return (cs.iter().map(|c| c.floor).collect(), sum_floor > budget);
    }
    let sum_ceiling: u128 = cs.iter().map(|c| c.ceiling as u128).sum();
    if sum_ceiling <= budget {
        return (cs.iter().map(|c| c.ceiling).collect(), false);
    }
    let level_sum = |l: Frac| -> u128 {
        cs.iter()
            .map(|c| {
                let w = c.weight_milli as u128;
                let (num, den) = (l.num as u128, l.den as u128);
                (w * num).clamp(c.floor as u128 * den, c.ceiling as u128 * den)
            })
            .sum()
    };
    let mut points: Vec<Frac> = cs
        .iter()
        .flat_map(|c| {
            let den = c.weight_milli;
            [
                Frac { num: c.floor, den },
                Frac {
                    num: c.ceiling,
                    den,
                },
            ]
        })
        .collect();
    points.sort_unstable_by(Frac::cmp);
    let (mut lo, mut hi) = (0usize, points.len() - 1);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if level_sum(points[mid]) <= budget * points[mid].den as u128 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (below, above) = (points[lo], points[hi]);
    let mut rest = budget;
    let mut free_weight: u128 = 0;
    let mut state = Vec::with_capacity(cs.len());
    for c in cs {
        let w = c.weight_milli as u128;
        let ceiling_pt = Frac {
            num: c.ceiling,
            den: c.weight_milli,
        };
        let floor_pt = Frac {
            num: c.floor,
            den: c.weight_milli,
        };
        if ceiling_pt.cmp(&below) != Ordering::Greater {
            rest -= c.ceiling as u128;
            state.push(Some(c.ceiling));
        } else if floor_pt.cmp(&above) != Ordering::Less {
            rest -= c.floor as u128;
            state.push(Some(c.floor));
        } else {
            free_weight += w;
            state.push(None);
        }
    }
    let shares = cs
        .iter()
        .zip(state)
        .map(|(c, pinned)| {
            pinned.unwrap_or_else(|| {
                let s = (c.weight_milli as u128 * rest / free_weight) as u64;
                s.clamp(c.floor, c.ceiling)
            })
        })
        .collect();
    (shares, false)
}

/// Claimants drawn so that ties, equal floors and ceilings, zero floors and weights of
/// every size all come up: the corners of the breakpoint search.
fn tied_claimants() -> impl Strategy<Value = Vec<Claimant>> {
    prop::collection::vec(
        (
            prop_oneof![Just(1u64), Just(1000), Just(2000), 1u64..5_000],
            prop_oneof![Just(0u64), Just(2 * M), 0u64..20 * M],
            prop_oneof![Just(0u64), Just(10 * M), 0u64..200 * M],
            prop_oneof![Just(0u64), Just(5 * M), 0u64..100 * M],
        )
            .prop_map(|(w, f, extra, demand)| Claimant {
                weight_milli: w,
                floor: f,
                ceiling: f + extra,
                demand,
            }),
        0..40,
    )
}

proptest! {
    #[test]
    fn sum_within_budget_unless_floors_force_it(cs in claimants(), budget in 0u64..2_000 * M, alg in algorithms()) {
        let a = allocate(alg, &cs, budget);
        let floors: u64 = cs.iter().map(|c| c.floor.min(c.ceiling)).sum();
        if a.overloaded {
            prop_assert!(floors > budget);
            prop_assert_eq!(a.total(), floors);
        } else {
            prop_assert!(a.total() <= budget);
        }
    }

    #[test]
    fn each_share_between_floor_and_ceiling(cs in claimants(), budget in 0u64..2_000 * M, alg in algorithms()) {
        let a = allocate(alg, &cs, budget);
        for (s, c) in a.shares.iter().zip(&cs) {
            prop_assert!(*s <= c.ceiling);
            prop_assert!(*s >= c.floor.min(c.ceiling));
            if alg == Algorithm::Demand {
                prop_assert!(*s <= c.demand.max(c.floor).min(c.ceiling));
            }
        }
    }

    /// Max-min fairness: a claimant held below its ceiling never has a smaller weighted share
    /// than one above its floor (within one bit of rounding).
    #[test]
    fn max_min_fair(cs in claimants(), budget in 0u64..2_000 * M) {
        let a = allocate(Algorithm::Priority, &cs, budget);
        for (i, ci) in cs.iter().enumerate() {
            if a.shares[i] >= ci.ceiling { continue; }
            for (j, cj) in cs.iter().enumerate() {
                if a.shares[j] <= cj.floor.min(cj.ceiling) { continue; }
                // shares[i]/wi >= shares[j]/wj, allowing the floor() of each share.
                let lhs = (a.shares[i] as u128 + 1) * cj.weight_milli as u128;
                let rhs = a.shares[j] as u128 * ci.weight_milli as u128;
                prop_assert!(lhs >= rhs, "i={i} j={j} {:?}", a.shares);
            }
        }
    }

    /// Unused budget only remains when every claimant is at its ceiling (no waste).
    #[test]
    fn work_conserving(cs in claimants(), budget in 0u64..2_000 * M, alg in algorithms()) {
        let a = allocate(alg, &cs, budget);
        let slack = budget.saturating_sub(a.total());
        let capped = a.shares.iter().zip(&cs).all(|(s, c)| {
            let ceiling = match alg {
                Algorithm::Demand => c.ceiling.min(c.demand.max(c.floor)),
                _ => c.ceiling,
            };
            *s == ceiling
        });
        prop_assert!(capped || slack <= cs.len() as u64, "slack {slack}");
    }

    #[test]
    fn monotone_in_budget(cs in claimants(), budget in 0u64..1_000 * M, more in 0u64..1_000 * M, alg in algorithms()) {
        let a = allocate(alg, &cs, budget);
        let b = allocate(alg, &cs, budget + more);
        for (x, y) in a.shares.iter().zip(&b.shares) {
            prop_assert!(y >= x);
        }
    }

    /// The sorted breakpoints with running sums give exactly what evaluating every
    /// claimant at each step of the search gave.
    #[test]
    fn water_fill_matches_the_oracle(cs in tied_claimants(), budget in 0u64..2_000 * M, weighted in any::<bool>(), capped in any::<bool>()) {
        let mut effective = Vec::new();
        fill_effective(&mut effective, &cs, weighted, capped);
        prop_assert_eq!(water_fill(&effective, budget), water_fill_oracle(&effective, budget));
    }

    /// Values past what an index packs beside them (2^40 bits/s and more: the open ceilings
    /// of the other servers' claims) sort the same, with one weight or many.
    #[test]
    fn water_fill_of_huge_values_matches_the_oracle(
        cs in prop::collection::vec((0u64..3, 0u64..(1 << 42), 0u64..(1 << 50)), 0..30),
        budget in 0u64..(1 << 52),
        weighted in any::<bool>(),
    ) {
        let cs: Vec<Claimant> = cs
            .into_iter()
            .map(|(w, floor, extra)| Claimant { weight_milli: 1000 + w, floor, ceiling: floor + extra, demand: 0 })
            .collect();
        let mut effective = Vec::new();
        fill_effective(&mut effective, &cs, weighted, false);
        prop_assert_eq!(water_fill(&effective, budget), water_fill_oracle(&effective, budget));
    }

    /// Each lifted share is what a whole water-filling with that one demand lifted gives.
    #[test]
    fn lifted_shares_match_a_water_filling_each(cs in tied_claimants(), budget in 0u64..2_000 * M, alg in algorithms()) {
        let lift = vec![true; cs.len()];
        let fast = fair_by_demand_lifted(alg, &cs, budget, &lift);
        for (i, got) in fast.iter().enumerate() {
            let mut lifted = cs.clone();
            lifted[i].demand = lifted[i].ceiling;
            let whole = fair_by_demand(alg, &lifted, budget).shares[i];
            prop_assert_eq!(*got, Some(whole), "claimant {}", i);
        }
        let none = fair_by_demand_lifted(alg, &cs, budget, &vec![false; cs.len()]);
        prop_assert!(none.iter().all(Option::is_none));
    }

    /// One sort for both gives what the two passes give apart.
    #[test]
    fn fair_and_lifted_together_match_them_apart(cs in tied_claimants(), budget in 0u64..2_000 * M, alg in algorithms(), every in 1usize..4) {
        let (a, lifted) = fair_by_demand_and_lifted(alg, &cs, budget, |i, c, b, overloaded| {
            i % every == 0 && (b != Bound::Fair || c.demand < c.ceiling || overloaded)
        });
        let alone = fair_by_demand(alg, &cs, budget);
        let lift: Vec<bool> = cs
            .iter()
            .zip(&alone.bounds)
            .enumerate()
            .map(|(i, (c, b))| i % every == 0 && (*b != Bound::Fair || c.demand < c.ceiling || alone.overloaded))
            .collect();
        prop_assert_eq!(lifted, fair_by_demand_lifted(alg, &cs, budget, &lift));
        prop_assert_eq!(a, alone);
    }
}
