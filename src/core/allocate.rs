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

use std::cell::RefCell;
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
    with_scratch(|s| {
        fill_effective(&mut s.effective, claimants, weighted, demand_capped);
        let levels = s.levels(false);
        let (shares, overloaded) = water_fill_in(&levels, budget);
        allocation(claimants, levels.cs, shares, overloaded, demand_capped)
    })
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
    with_scratch(|s| {
        fill_effective(&mut s.effective, claimants, weighted, true);
        let levels = s.levels(true);
        let (shares, overloaded) = water_fill_in(&levels, budget);
        let a = allocation(claimants, levels.cs, shares, overloaded, true);
        let lift: Vec<bool> = claimants
            .iter()
            .zip(&a.bounds)
            .enumerate()
            .map(|(i, (c, b))| lift(i, c, *b, a.overloaded))
            .collect();
        let lifted = lifted_in(&levels, claimants, budget, &lift);
        (a, lifted)
    })
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

/// The claimants as the water-filling sees them, into `out`: weight 1 unless `weighted`, each
/// ceiling lowered to the demand (never below the floor) when `demand_capped`, each floor at
/// most the ceiling.
fn fill_effective(
    out: &mut Vec<Claimant>,
    claimants: &[Claimant],
    weighted: bool,
    demand_capped: bool,
) {
    out.clear();
    out.extend(claimants.iter().map(|c| {
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
    }));
}

/// The arrays one water-filling sorts and sums into. Each thread keeps its own between calls
/// ([`with_scratch`]): for 10,000 claimants they take about 1.5 MB, which the system allocator
/// would otherwise hand back to the kernel after each call and fault in again at the next
/// (a fifth of the time in `BENCHMARKS.md`'s profile, and up to 40 % with glibc's thresholds
/// still low). A household's few claimants keep a few kilobytes.
#[derive(Default)]
struct Scratch {
    effective: Vec<Claimant>,
    ceilings: Sorted,
    floors: Sorted,
    packed: Vec<u64>,
    keyed: Vec<(Frac, u32)>,
}

impl Scratch {
    /// The levels of the claimants in `effective`, their breakpoints sorted; `ranked` keeps
    /// where each ceiling's breakpoint went (for [`lifted_in`]).
    fn levels(&mut self, ranked: bool) -> Levels<'_> {
        let cs = &self.effective;
        self.ceilings
            .fill(cs, |c| c.ceiling, ranked, &mut self.packed, &mut self.keyed);
        self.floors
            .fill(cs, |c| c.floor, false, &mut self.packed, &mut self.keyed);
        Levels::new(cs, &self.ceilings, &self.floors)
    }
}

/// `f` with this thread's [`Scratch`] (a fresh one if `f` is already running on this thread,
/// so a caller's closure may allocate too).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    thread_local! {
        static SCRATCH: RefCell<Scratch> = RefCell::default();
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
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
#[derive(Default)]
struct Sorted {
    fracs: Vec<Frac>,
    /// `value[k]`: the sum of the values of the first `k` breakpoints.
    value: Vec<u128>,
    /// `weight[k]`: the sum of their weights.
    weight: Vec<u128>,
    /// Where each claimant's breakpoint is, by claimant index.
    rank: Vec<usize>,
}

/// Where [`Sorted::sort`] left the breakpoints in order.
enum Order {
    /// In `packed`, as `value << INDEX_BITS | index`, all of weight `den`.
    Packed { den: u64 },
    /// In `keyed`.
    Keyed,
}

/// The bits of a claimant's index in a packed breakpoint.
const INDEX_BITS: u32 = 24;

impl Sorted {
    /// The breakpoints `value_of(c) / c.weight_milli` sorted, with each claimant's place when
    /// `ranked` (else `rank` is empty); `packed` and `keyed` are room to sort in.
    fn fill(
        &mut self,
        cs: &[Claimant],
        value_of: impl Fn(&Claimant) -> u64,
        ranked: bool,
        packed: &mut Vec<u64>,
        keyed: &mut Vec<(Frac, u32)>,
    ) {
        self.rank.clear();
        if ranked {
            self.rank.resize(cs.len(), 0);
        }
        self.fracs.clear();
        self.value.clear();
        self.weight.clear();
        self.value.push(0);
        self.weight.push(0);
        // Each array in a pass of its own: simple loops the compiler unrolls.
        match Sorted::sort(cs, value_of, packed, keyed) {
            Order::Packed { den } => {
                let mask = (1u64 << INDEX_BITS) - 1;
                if ranked {
                    for (k, &p) in packed.iter().enumerate() {
                        self.rank[(p & mask) as usize] = k;
                    }
                }
                self.fracs.extend(packed.iter().map(|&p| Frac {
                    num: p >> INDEX_BITS,
                    den,
                }));
                self.value.extend(packed.iter().scan(0u128, |sum, &p| {
                    *sum += (p >> INDEX_BITS) as u128;
                    Some(*sum)
                }));
                self.weight
                    .extend((1..=packed.len() as u128).map(|k| k * den as u128));
            }
            Order::Keyed => {
                if ranked {
                    for (k, &(_, i)) in keyed.iter().enumerate() {
                        self.rank[i as usize] = k;
                    }
                }
                self.fracs.extend(keyed.iter().map(|&(f, _)| f));
                let running = |out: &mut Vec<u128>, part: fn(&Frac) -> u64| {
                    out.extend(keyed.iter().scan(0u128, |sum, (f, _)| {
                        *sum += part(f) as u128;
                        Some(*sum)
                    }));
                };
                running(&mut self.value, |f| f.num);
                running(&mut self.weight, |f| f.den);
            }
        }
    }

    /// The breakpoints in order, each with its claimant's index beside it (no lookup into
    /// `cs` per comparison; ties in any order).
    fn sort(
        cs: &[Claimant],
        value_of: impl Fn(&Claimant) -> u64,
        packed: &mut Vec<u64>,
        keyed: &mut Vec<(Frac, u32)>,
    ) -> Order {
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
            packed.clear();
            packed.extend(
                cs.iter()
                    .enumerate()
                    .map(|(i, c)| (value_of(c) << INDEX_BITS) | i as u64),
            );
            packed.sort_unstable();
            return Order::Packed {
                den: cs.first().map_or(1, |c| c.weight_milli),
            };
        }
        keyed.clear();
        keyed.extend(cs.iter().enumerate().map(|(i, c)| {
            let f = Frac {
                num: value_of(c),
                den: c.weight_milli,
            };
            (f, i as u32)
        }));
        if one_weight {
            keyed.sort_unstable_by_key(|(f, _)| f.num);
        } else {
            keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        Order::Keyed
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
    ceilings: &'a Sorted,
    floors: &'a Sorted,
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
    /// The claimants' levels, from their ceilings' and floors' breakpoints sorted.
    fn new(cs: &'a [Claimant], ceilings: &'a Sorted, floors: &'a Sorted) -> Levels<'a> {
        Levels {
            cs,
            ceilings,
            floors,
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
    share_of_weight(c.weight_milli, seg).clamp(c.floor, c.ceiling)
}

/// What is left, in proportion to `weight` (before the claimant's bounds).
fn share_of_weight(weight: u64, seg: &Segment) -> u64 {
    // In 64 bits while they fit (a 128-bit division is a call into the runtime).
    match (u64::try_from(seg.rest), u64::try_from(seg.free_weight)) {
        (Ok(rest), Ok(free)) if let Some(p) = weight.checked_mul(rest) => p / free,
        _ => (weight as u128 * seg.rest / seg.free_weight) as u64,
    }
}

/// [`water_fill_in`] of claimants taken as they are (what the tests compare with the oracle).
#[cfg(test)]
fn water_fill(cs: &[Claimant], budget: u64) -> (Vec<u64>, bool) {
    with_scratch(|s| {
        s.effective.clear();
        s.effective.extend_from_slice(cs);
        water_fill_in(&s.levels(false), budget)
    })
}

/// Weighted max-min water-filling with floors and ceilings (`floor <= ceiling` per claimant),
/// over their breakpoints already sorted. Returns the shares and whether the floors alone
/// exceed the budget.
///
/// `λ` lies between two neighbouring breakpoints, found by a binary search over each sorted
/// kind of breakpoint with `G` evaluated in `O(log n)`, so the whole is one sort and a pass:
/// `O(n log n)`.
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
    // The share of a weight is the same for every free claimant of that weight: with one
    // weight for all (every algorithm but `priority`) one division serves them all.
    let mut last: Option<(u64, u64)> = None;
    let shares = cs
        .iter()
        .map(|c| {
            pinned_in(c, &seg).unwrap_or_else(|| {
                let share = match last {
                    Some((w, share)) if w == c.weight_milli => share,
                    _ => {
                        let share = share_of_weight(c.weight_milli, &seg);
                        last = Some((c.weight_milli, share));
                        share
                    }
                };
                share.clamp(c.floor, c.ceiling)
            })
        })
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
    with_scratch(|s| {
        fill_effective(&mut s.effective, claimants, weighted, true);
        lifted_in(&s.levels(true), claimants, budget, lift)
    })
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
