//! The allocation algorithms: claimants and a budget in, a share per claimant out.
//!
//! Pure integer arithmetic, no I/O and no floating point, so results are exact and reproducible
//! to the bit. All three algorithms are one mechanism, weighted max-min water-filling with a
//! floor and a ceiling per claimant:
//!
//! * `equal`: every weight is 1;
//! * `priority`: the claimant's weight;
//! * `demand`: every weight is 1 and each ceiling is lowered to the claimant's demand (never
//!   below its floor), so a light stream gets what it uses and the rest is split fairly among the
//!   others.
//!
//! Water-filling finds the level `λ` such that `Σ clamp(wᵢ·λ, floorᵢ, ceilingᵢ) = budget` and
//! gives each claimant `⌊clamp(wᵢ·λ, floorᵢ, ceilingᵢ)⌋`. `λ` is located exactly by a binary
//! search over the sorted breakpoints `floorᵢ/wᵢ` and `ceilingᵢ/wᵢ` (compared as fractions in
//! 128-bit integers), so a pass over 10,000 claimants is `O(n log n)`.

use std::cmp::Ordering;

use crate::config::Algorithm;

/// One user who streams from outside, as the algorithms see them. Amounts are bits/s of the
/// user's whole share (all of their streams together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimant {
    /// Weight in thousandths (1000 = weight 1.0); only `priority` looks at it. At least 1.
    pub weight_milli: u64,
    /// Never allocate less (unless the ceiling is lower: the ceiling wins).
    pub floor: u64,
    /// Never allocate more.
    pub ceiling: u64,
    /// What the user's streams would use without a limit (their source bitrate times the
    /// overhead): [`allocate`] with `demand` and [`fair_by_demand`] cap the share at it.
    pub demand: u64,
}

/// Which bound decided a claimant's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The fair (weighted) level of the water-filling.
    Fair,
    /// Held up at the floor.
    Floor,
    /// Held down by the ceiling (max per user, admin's own limit, server limit).
    Ceiling,
    /// Held down by its demand.
    Demand,
}

/// The result of one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// One share per claimant, in input order, bits/s.
    pub shares: Vec<u64>,
    /// What decided each share.
    pub bounds: Vec<Bound>,
    /// The floors alone exceed the budget: every claimant got its floor and the sum is over.
    pub overloaded: bool,
}

impl Allocation {
    /// The sum of the shares, bits/s.
    pub fn total(&self) -> u64 {
        self.shares.iter().sum()
    }
}

/// Convert a configured weight (e.g. `1.5`) to thousandths, at least 1.
pub fn weight_milli(weight: f64) -> u64 {
    ((weight * 1000.0).round() as u64).max(1)
}

/// Allocate `budget` bits/s among `claimants` with the given algorithm.
///
/// ```
/// use jellydemon::core::allocate::{allocate, Claimant};
/// use jellydemon::config::Algorithm;
/// let admin = Claimant { weight_milli: 1000, floor: 2_000_000, ceiling: 10_000_000, demand: 0 };
/// let user = Claimant { ceiling: u64::MAX, ..admin };
/// // The admin's own 10 Mbps cap leaves the rest of 90 Mbps to the other two.
/// let a = allocate(Algorithm::Equal, &[admin, user, user], 90_000_000);
/// assert_eq!(a.shares, vec![10_000_000, 40_000_000, 40_000_000]);
/// ```
pub fn allocate(algorithm: Algorithm, claimants: &[Claimant], budget: u64) -> Allocation {
    match algorithm {
        Algorithm::Equal => water_fill_by(claimants, budget, false, false),
        Algorithm::Priority => water_fill_by(claimants, budget, true, false),
        Algorithm::Demand => water_fill_by(claimants, budget, false, true),
    }
}

/// The fair shares of the planner: weighted (for `priority`) max-min water-filling in which
/// every claimant is also capped by its demand, for every algorithm, so what one claimant
/// cannot use goes to the others.
pub fn fair_by_demand(algorithm: Algorithm, claimants: &[Claimant], budget: u64) -> Allocation {
    water_fill_by(claimants, budget, algorithm == Algorithm::Priority, true)
}

/// Water-filling with the weights (`weighted`, else all 1) and, with `demand_capped`, each
/// ceiling lowered to the claimant's demand (never below its floor).
fn water_fill_by(
    claimants: &[Claimant],
    budget: u64,
    weighted: bool,
    demand_capped: bool,
) -> Allocation {
    let effective = effective_claimants(claimants, weighted, demand_capped);
    let (shares, overloaded) = water_fill(&effective, budget);
    allocation(claimants, &effective, shares, overloaded, demand_capped)
}

/// [`fair_by_demand`], and for each claimant `lift` picks (from its index, itself, its bound
/// and whether the floors overload the budget) the share [`fair_by_demand_lifted`] gives it,
/// `None` for the others: both from one sort of the breakpoints.
pub fn fair_by_demand_and_lifted(
    algorithm: Algorithm,
    claimants: &[Claimant],
    budget: u64,
    lift: impl Fn(usize, &Claimant, Bound, bool) -> bool,
) -> (Allocation, Vec<Option<u64>>) {
    let weighted = algorithm == Algorithm::Priority;
    let effective = effective_claimants(claimants, weighted, true);
    let levels = Levels::new(&effective, true);
    let (shares, overloaded) = water_fill_in(&levels, budget);
    let a = allocation(claimants, &effective, shares, overloaded, true);
    let lift: Vec<bool> = claimants
        .iter()
        .zip(&a.bounds)
        .enumerate()
        .map(|(i, (c, b))| lift(i, c, *b, a.overloaded))
        .collect();
    let lifted = lifted_in(&levels, claimants, budget, &lift);
    (a, lifted)
}

/// The allocation of `shares`, each with the bound that decided it.
fn allocation(
    claimants: &[Claimant],
    effective: &[Claimant],
    shares: Vec<u64>,
    overloaded: bool,
    demand_capped: bool,
) -> Allocation {
    let bounds = shares
        .iter()
        .zip(claimants.iter().zip(effective))
        .map(|(&s, (orig, eff))| {
            let demand_below_floor = demand_capped && orig.demand <= eff.floor;
            if s == eff.floor && (s < eff.ceiling || demand_below_floor) {
                Bound::Floor
            } else if s == eff.ceiling && demand_capped && eff.ceiling < orig.ceiling {
                Bound::Demand
            } else if s == eff.ceiling {
                Bound::Ceiling
            } else {
                Bound::Fair
            }
        })
        .collect();
    Allocation {
        shares,
        bounds,
        overloaded,
    }
}

/// The claimants as the water-filling sees them: weight 1 unless `weighted`, each ceiling
/// lowered to the demand (never below the floor) when `demand_capped`, each floor at most
/// the ceiling.
fn effective_claimants(
    claimants: &[Claimant],
    weighted: bool,
    demand_capped: bool,
) -> Vec<Claimant> {
    claimants
        .iter()
        .map(|c| {
            let ceiling = if demand_capped {
                c.ceiling.min(c.demand.max(c.floor))
            } else {
                c.ceiling
            };
            Claimant {
                weight_milli: if weighted { c.weight_milli.max(1) } else { 1 },
                floor: c.floor.min(ceiling),
                ceiling,
                demand: c.demand,
            }
        })
        .collect()
}

/// A breakpoint `value / weight` of the level function. Both halves are `u64`, so a
/// comparison is two 64-by-64-bit products.
#[derive(Clone, Copy, Debug)]
struct Frac {
    num: u64,
    den: u64,
}

impl Frac {
    fn cmp(&self, other: &Frac) -> Ordering {
        (self.num as u128 * other.den as u128).cmp(&(other.num as u128 * self.den as u128))
    }
}

/// Breakpoints of one kind (every claimant's `ceiling/w`, or every claimant's `floor/w`),
/// sorted, with running sums of the values and weights behind them, so that the sums over
/// all breakpoints at or below a level take one binary search.
struct Sorted {
    fracs: Vec<Frac>,
    /// `value[k]`: the sum of the values of the first `k` breakpoints.
    value: Vec<u128>,
    /// `weight[k]`: the sum of their weights.
    weight: Vec<u128>,
    /// Where each claimant's breakpoint is, by claimant index.
    rank: Vec<usize>,
}

impl Sorted {
    /// The breakpoints `value_of(c) / c.weight_milli` sorted, with each claimant's place when
    /// `ranked` (else `rank` is empty).
    fn new(cs: &[Claimant], value_of: impl Fn(&Claimant) -> u64, ranked: bool) -> Sorted {
        let keyed = Sorted::keyed(cs, value_of);
        let mut rank = if ranked {
            vec![0; cs.len()]
        } else {
            Vec::new()
        };
        let mut value = Vec::with_capacity(cs.len() + 1);
        let mut weight = Vec::with_capacity(cs.len() + 1);
        let (mut v, mut w) = (0u128, 0u128);
        value.push(0);
        weight.push(0);
        for (k, &(f, i)) in keyed.iter().enumerate() {
            if ranked {
                rank[i as usize] = k;
            }
            v += f.num as u128;
            w += f.den as u128;
            value.push(v);
            weight.push(w);
        }
        Sorted {
            fracs: keyed.into_iter().map(|(f, _)| f).collect(),
            value,
            weight,
            rank,
        }
    }

    /// The breakpoints in order, each with its claimant's index beside it (no lookup into
    /// `cs` per comparison; ties in any order).
    fn keyed(cs: &[Claimant], value_of: impl Fn(&Claimant) -> u64) -> Vec<(Frac, u32)> {
        const INDEX_BITS: u32 = 24;
        let frac = |c: &Claimant| Frac {
            num: value_of(c),
            den: c.weight_milli,
        };
        let one_weight = cs
            .windows(2)
            .all(|w| w[0].weight_milli == w[1].weight_milli);
        if one_weight
            && cs.len() < 1 << INDEX_BITS
            && cs.iter().all(|c| value_of(c) < 1 << (64 - INDEX_BITS))
        {
            // One weight for all (every algorithm but `priority`): the breakpoints sort as
            // their values do; while values and indices fit, as one integer each (the value
            // above, the index below).
            let den = cs.first().map_or(1, |c| c.weight_milli);
            let mut packed: Vec<u64> = cs
                .iter()
                .enumerate()
                .map(|(i, c)| (value_of(c) << INDEX_BITS) | i as u64)
                .collect();
            packed.sort_unstable();
            let mask = (1u64 << INDEX_BITS) - 1;
            return packed
                .into_iter()
                .map(|p| {
                    let f = Frac {
                        num: p >> INDEX_BITS,
                        den,
                    };
                    (f, (p & mask) as u32)
                })
                .collect();
        }
        let mut keyed: Vec<(Frac, u32)> = cs
            .iter()
            .enumerate()
            .map(|(i, c)| (frac(c), i as u32))
            .collect();
        if one_weight {
            keyed.sort_unstable_by_key(|(f, _)| f.num);
        } else {
            keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        keyed
    }

    /// How many breakpoints are at or below `level`.
    fn at_or_below(&self, level: &Frac) -> usize {
        self.fracs
            .partition_point(|f| f.cmp(level) != Ordering::Greater)
    }

    /// How many breakpoints are below `level`.
    fn below(&self, level: &Frac) -> usize {
        self.fracs
            .partition_point(|f| f.cmp(level) == Ordering::Less)
    }
}

/// One claimant's term of the level function, `clamp(w·λ, floor, ceiling)`, scaled by the
/// denominator of `λ`.
fn term(weight: u64, floor: u64, ceiling: u64, level: &Frac) -> u128 {
    let (num, den) = (level.num as u128, level.den as u128);
    (weight as u128 * num).clamp(floor as u128 * den, ceiling as u128 * den)
}

/// The level function `G(λ) = Σ clamp(wᵢ·λ, floorᵢ, ceilingᵢ)` of a set of claimants
/// (`floor <= ceiling` each), evaluated in `O(log n)` from their breakpoints sorted with
/// running sums: claimants whose `ceiling/w <= λ` give their ceiling, those whose
/// `floor/w > λ` their floor, the rest `w·λ`.
struct Levels<'a> {
    cs: &'a [Claimant],
    ceilings: Sorted,
    floors: Sorted,
    total_weight: u128,
    sum_floor: u128,
    sum_ceiling: u128,
}

/// Between two neighbouring breakpoints, which claimants are pinned and what is left to the
/// free ones.
struct Segment {
    below: Frac,
    above: Frac,
    /// The budget less what the pinned claimants take.
    rest: u128,
    /// The weight of the claimants that are free.
    free_weight: u128,
}

impl<'a> Levels<'a> {
    /// The claimants' levels; `ranked` keeps where each ceiling's breakpoint went (for
    /// [`lifted_in`]).
    fn new(cs: &'a [Claimant], ranked: bool) -> Levels<'a> {
        Levels {
            cs,
            ceilings: Sorted::new(cs, |c| c.ceiling, ranked),
            floors: Sorted::new(cs, |c| c.floor, false),
            total_weight: cs.iter().map(|c| c.weight_milli as u128).sum(),
            sum_floor: cs.iter().map(|c| c.floor as u128).sum(),
            sum_ceiling: cs.iter().map(|c| c.ceiling as u128).sum(),
        }
    }

    /// `G(level)`, scaled by the level's denominator.
    fn scaled_sum(&self, level: &Frac) -> u128 {
        let k = self.ceilings.at_or_below(level);
        let j = self.floors.at_or_below(level);
        let n = self.cs.len();
        let pinned_weight =
            self.ceilings.weight[k] + (self.floors.weight[n] - self.floors.weight[j]);
        (self.ceilings.value[k] + (self.floors.value[n] - self.floors.value[j])) * level.den as u128
            + (self.total_weight - pinned_weight) * level.num as u128
    }

    /// The neighbouring breakpoints around `budget`, given `g` (the level function, scaled)
    /// and, for a claimant whose ceiling is replaced, the index of its old ceiling breakpoint
    /// (not a breakpoint any more) and its new one: the largest breakpoint `below` with
    /// `G <= budget` and the smallest `above` with `G > budget`. Requires
    /// `Σ floor < budget < Σ ceiling`.
    fn bracket(
        &self,
        budget: u128,
        g: impl Fn(&Frac) -> u128,
        replaced: Option<(usize, Frac)>,
    ) -> (Frac, Frac) {
        let fits = |f: &Frac| g(f) <= budget * f.den as u128;
        let mut below: Option<Frac> = None;
        let mut above: Option<Frac> = None;
        let mut offer = |f: Frac| {
            if fits(&f) {
                if below.is_none_or(|b| f.cmp(&b) == Ordering::Greater) {
                    below = Some(f);
                }
            } else if above.is_none_or(|a| f.cmp(&a) == Ordering::Less) {
                above = Some(f);
            }
        };
        let skip = replaced.map(|(i, _)| i);
        for sorted in [&self.floors, &self.ceilings] {
            let skip = if std::ptr::eq(sorted, &self.ceilings) {
                skip
            } else {
                None
            };
            let k = sorted.fracs.partition_point(fits);
            // The last that fits and the first that does not, passing over the replaced one.
            let last = (0..k).rev().find(|&x| Some(x) != skip);
            let first = (k..sorted.fracs.len()).find(|&x| Some(x) != skip);
            for x in [last, first].into_iter().flatten() {
                offer(sorted.fracs[x]);
            }
        }
        if let Some((_, f)) = replaced {
            offer(f);
        }
        (
            below.expect("the lowest floor breakpoint fits below the budget"),
            above.expect("the highest ceiling breakpoint is above the budget"),
        )
    }

    /// The pinned sums between `below` and `above`: claimants whose `ceiling/w <= below` are
    /// held at their ceiling, those whose `floor/w >= above` at their floor (disjoint, as
    /// `below < above` and `floor <= ceiling`).
    fn segment(&self, budget: u128, below: Frac, above: Frac) -> Segment {
        let n = self.cs.len();
        let k = self.ceilings.at_or_below(&below);
        let j = self.floors.below(&above);
        let pinned = self.ceilings.value[k] + (self.floors.value[n] - self.floors.value[j]);
        let pinned_weight =
            self.ceilings.weight[k] + (self.floors.weight[n] - self.floors.weight[j]);
        Segment {
            below,
            above,
            rest: budget - pinned,
            free_weight: self.total_weight - pinned_weight,
        }
    }
}

/// Where a claimant stands in a segment.
fn pinned_in(c: &Claimant, seg: &Segment) -> Option<u64> {
    let w = c.weight_milli;
    let ceiling_pt = Frac {
        num: c.ceiling,
        den: w,
    };
    let floor_pt = Frac {
        num: c.floor,
        den: w,
    };
    if ceiling_pt.cmp(&seg.below) != Ordering::Greater {
        Some(c.ceiling)
    } else if floor_pt.cmp(&seg.above) != Ordering::Less {
        Some(c.floor)
    } else {
        None
    }
}

/// A free claimant's share of what is left, in proportion to its weight.
fn free_share(c: &Claimant, seg: &Segment) -> u64 {
    // In 64 bits while they fit (a 128-bit division is a call into the runtime).
    let s = match (u64::try_from(seg.rest), u64::try_from(seg.free_weight)) {
        (Ok(rest), Ok(free)) if let Some(p) = c.weight_milli.checked_mul(rest) => p / free,
        _ => (c.weight_milli as u128 * seg.rest / seg.free_weight) as u64,
    };
    s.clamp(c.floor, c.ceiling)
}

/// Weighted max-min water-filling with floors and ceilings (`floor <= ceiling` per claimant).
/// Returns the shares and whether the floors alone exceed the budget.
///
/// `λ` lies between two neighbouring breakpoints, found by a binary search over each sorted
/// kind of breakpoint with `G` evaluated in `O(log n)`, so the whole is one sort and a pass:
/// `O(n log n)`.
fn water_fill(cs: &[Claimant], budget: u64) -> (Vec<u64>, bool) {
    water_fill_in(&Levels::new(cs, false), budget)
}

/// [`water_fill`] over breakpoints already sorted.
fn water_fill_in(levels: &Levels, budget: u64) -> (Vec<u64>, bool) {
    let cs = levels.cs;
    if cs.is_empty() {
        return (Vec::new(), false);
    }
    let budget = budget as u128;
    if levels.sum_floor >= budget {
        return (
            cs.iter().map(|c| c.floor).collect(),
            levels.sum_floor > budget,
        );
    }
    if levels.sum_ceiling <= budget {
        return (cs.iter().map(|c| c.ceiling).collect(), false);
    }
    let (below, above) = levels.bracket(budget, |l| levels.scaled_sum(l), None);
    let seg = levels.segment(budget, below, above);
    debug_assert!(
        seg.free_weight > 0,
        "a segment with no free claimant cannot cross the budget"
    );
    let shares = cs
        .iter()
        .map(|c| pinned_in(c, &seg).unwrap_or_else(|| free_share(c, &seg)))
        .collect();
    (shares, false)
}

/// For each claimant `i` with `lift[i]`, the share [`fair_by_demand`] would give it if its
/// demand were its ceiling (the others' unchanged); `None` for the others. The planner asks
/// this, with the fair shares ([`fair_by_demand_and_lifted`]), for every user whose share its
/// demand caps (what their next item could get, which may be a film after music). Each answer is the water-filling of the claimants with one
/// ceiling raised: `G` changes by that claimant's term alone, so it takes a binary search
/// over the breakpoints already sorted, `O(log² n)`, not a water-filling of its own.
pub fn fair_by_demand_lifted(
    algorithm: Algorithm,
    claimants: &[Claimant],
    budget: u64,
    lift: &[bool],
) -> Vec<Option<u64>> {
    let weighted = algorithm == Algorithm::Priority;
    let effective = effective_claimants(claimants, weighted, true);
    lifted_in(&Levels::new(&effective, true), claimants, budget, lift)
}

/// [`fair_by_demand_lifted`] over the breakpoints of the claimants as [`fair_by_demand`]
/// sees them, already sorted.
fn lifted_in(
    levels: &Levels,
    claimants: &[Claimant],
    budget: u64,
    lift: &[bool],
) -> Vec<Option<u64>> {
    let effective = levels.cs;
    let budget = budget as u128;
    (0..claimants.len())
        .map(|i| {
            if !lift.get(i).copied().unwrap_or(false) {
                return None;
            }
            let old = effective[i];
            let new = Claimant {
                ceiling: claimants[i].ceiling,
                ..old
            };
            if levels.sum_floor >= budget {
                return Some(new.floor);
            }
            if levels.sum_ceiling - old.ceiling as u128 + new.ceiling as u128 <= budget {
                return Some(new.ceiling);
            }
            let w = old.weight_milli;
            let g = |l: &Frac| {
                levels.scaled_sum(l) - term(w, old.floor, old.ceiling, l)
                    + term(w, new.floor, new.ceiling, l)
            };
            let raised = Frac {
                num: new.ceiling,
                den: w,
            };
            let (below, above) = levels.bracket(budget, g, Some((levels.ceilings.rank[i], raised)));
            // The pinned sums of the others, then this claimant as raised.
            let mut seg = levels.segment(budget, below, above);
            match pinned_in(&old, &seg) {
                Some(v) => seg.rest += v as u128,
                None => seg.free_weight -= w as u128,
            }
            Some(match pinned_in(&new, &seg) {
                Some(v) => v,
                None => {
                    seg.free_weight += w as u128;
                    free_share(&new, &seg)
                }
            })
        })
        .collect()
}

/// Round `value` down to a multiple of `step`, then keep it within `[floor, ceiling]`. Rounding
/// down never takes a share above what the allocation gave, so the budget still holds.
pub fn quantize(value: u64, step: u64, floor: u64, ceiling: u64) -> u64 {
    let q = if step > 1 { value / step * step } else { value };
    q.max(floor).min(ceiling)
}

/// True when `new` is within `percent` of `current`, so writing it is not worth a policy write.
/// A current value of 0 ("server default") is never close to anything.
pub fn within_hysteresis(current: u64, new: u64, percent: f64) -> bool {
    current > 0 && (current.abs_diff(new) as f64) * 100.0 <= percent * current as f64
}

#[cfg(test)]
mod tests;
