//! The most any manager can serve when every stream keeps its first rate for the whole item,
//! as a client that cannot be pushed does: the yardstick of the no-push case in
//! `BENCHMARKS.md`.
//!
//! Knowing every item of a trace in advance, choose one rate per item, between the floor (or
//! its source, when smaller) and its source, so that the streams together never exceed the
//! budget and `∫ Σ min(rate, ideal) dt` is the largest it can be; the ideal is the one of
//! [`super::effectiveness::Figures::served_percent`] (max-min water-filling of the running
//! items' sources, every user weighing the same). That is a linear program: one variable per
//! item (its rate), one per item and stretch of time where its ideal is below its source (what
//! it serves then, at most its rate and its ideal), one budget constraint per stretch. No
//! manager that decides without the future, nor one whose streams keep their rate, serves
//! more. The fairness of that choice is measured as the simulation measures it (Jain's index
//! of rate over ideal, averaged over the time with two streams or more); it is what the
//! solution that serves the most gets, not the fairest possible.

use microlp::{ComparisonOp, OptimizationDirection, Problem};

use super::effectiveness::UserTrace;
use crate::config::Algorithm;
use crate::core::allocate::{self, Claimant};

/// Rates in the program are in Mbit/s and times in minutes, so that its numbers stay near 1.
const MBPS: f64 = 1e6;
const MINUTE: f64 = 60.0;

/// The bound of one trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// The most any manager whose streams keep their first rate could serve of the ideal, in
    /// percent.
    pub served_percent: f64,
    /// Jain's index of the rates that serve it, averaged over the time with two streams or
    /// more (1 without such time).
    pub jain: f64,
}

/// [`Bound`] over the first `hours` of `traces`; `None` when the floors alone exceed the
/// budget at some moment, or the solver fails.
pub fn locked_bound(traces: &[UserTrace], hours: u64, budget: u64, floor: u64) -> Option<Bound> {
    let horizon = hours * 3600;
    let items: Vec<(u64, u64, u64)> = traces
        .iter()
        .flat_map(|t| &t.items)
        .filter(|i| i.start < horizon && i.end > i.start)
        .map(|i| (i.start, i.end.min(horizon), i.source))
        .collect();
    let mut times: Vec<u64> = items.iter().flat_map(|&(s, e, _)| [s, e]).collect();
    times.sort_unstable();
    times.dedup();
    // Per stretch of time: how long, the items running, and each one's ideal.
    let mut stretches: Vec<(f64, Vec<usize>, Vec<u64>)> = Vec::new();
    let mut ideal_total = 0.0;
    for w in times.windows(2) {
        let (from, to) = (w[0], w[1]);
        let running: Vec<usize> = (0..items.len())
            .filter(|&i| items[i].0 <= from && from < items[i].1)
            .collect();
        if running.is_empty() {
            continue;
        }
        let claimants: Vec<Claimant> = running
            .iter()
            .map(|&i| Claimant {
                weight_milli: 1000,
                floor: 0,
                ceiling: items[i].2,
                demand: items[i].2,
            })
            .collect();
        let ideal = allocate::allocate(Algorithm::Equal, &claimants, budget).shares;
        let dt = (to - from) as f64 / MINUTE;
        ideal_total += dt * ideal.iter().map(|&x| x as f64 / MBPS).sum::<f64>();
        stretches.push((dt, running, ideal));
    }
    if ideal_total == 0.0 {
        return Some(Bound {
            served_percent: 100.0,
            jain: 1.0,
        });
    }
    // What an item serves while its ideal is its source is its rate: that goes straight into
    // the rate's own coefficient.
    let mut direct = vec![0.0; items.len()];
    for (dt, running, ideal) in &stretches {
        for (&i, &x) in running.iter().zip(ideal) {
            if x >= items[i].2 {
                direct[i] += dt;
            }
        }
    }
    let mut lp = Problem::new(OptimizationDirection::Maximize);
    let rates: Vec<_> = items
        .iter()
        .zip(&direct)
        .map(|(&(_, _, source), &c)| {
            let source = source as f64 / MBPS;
            lp.add_var(c, ((floor as f64 / MBPS).min(source), source))
        })
        .collect();
    let budget_mbps = budget as f64 / MBPS;
    for (dt, running, ideal) in &stretches {
        lp.add_constraint(
            running.iter().map(|&i| (rates[i], 1.0)).collect::<Vec<_>>(),
            ComparisonOp::Le,
            budget_mbps,
        );
        for (&i, &x) in running.iter().zip(ideal) {
            if x < items[i].2 {
                let served = lp.add_var(*dt, (0.0, x as f64 / MBPS));
                lp.add_constraint([(served, 1.0), (rates[i], -1.0)], ComparisonOp::Le, 0.0);
            }
        }
    }
    let solution = lp.solve().ok()?;
    let rate: Vec<f64> = rates.iter().map(|&v| solution[v]).collect();
    let (mut jain, mut jain_time) = (0.0, 0.0);
    for (dt, running, ideal) in stretches.iter().filter(|(_, r, _)| r.len() >= 2) {
        let ratios: Vec<f64> = running
            .iter()
            .zip(ideal)
            .map(|(&i, &x)| rate[i] / (x.max(1) as f64 / MBPS))
            .collect();
        let sum: f64 = ratios.iter().sum();
        let squares: f64 = ratios.iter().map(|q| q * q).sum();
        jain += dt * sum * sum / (ratios.len() as f64 * squares);
        jain_time += dt;
    }
    Some(Bound {
        served_percent: 100.0 * solution.objective() / ideal_total,
        jain: if jain_time > 0.0 {
            jain / jain_time
        } else {
            1.0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::effectiveness::{ClientKind, Item};

    const M: u64 = 1_000_000;

    fn user(name: &str, items: &[(u64, u64, u64)]) -> UserTrace {
        UserTrace {
            name: name.into(),
            client: ClientKind::Fixed,
            items: items
                .iter()
                .map(|&(start, end, source)| Item { start, end, source })
                .collect(),
        }
    }

    #[test]
    fn two_streams_at_once_are_served_whole() {
        let t = [
            user("a", &[(0, 3600, 70 * M)]),
            user("b", &[(0, 3600, 70 * M)]),
        ];
        let b = locked_bound(&t, 1, 90 * M, 2 * M).unwrap();
        assert!((b.served_percent - 100.0).abs() < 1e-6, "{b:?}");
        assert!((b.jain - 1.0).abs() < 1e-6, "{b:?}");
    }

    #[test]
    fn a_stream_that_keeps_its_rate_cannot_follow_a_newcomer() {
        // A plays 80 Mbps for two hours, B joins for the second. The ideal: 80, then 45 and 45
        // (170 Mbps-hours). A kept rate serves at most 135 of it, whatever it is: at 80, B
        // gets 10; at 45, A loses 35 in the first hour.
        let t = [
            user("a", &[(0, 7200, 80 * M)]),
            user("b", &[(3600, 7200, 80 * M)]),
        ];
        let b = locked_bound(&t, 2, 90 * M, 2 * M).unwrap();
        assert!(
            (b.served_percent - 100.0 * 135.0 / 170.0).abs() < 1e-6,
            "{b:?}"
        );
    }

    #[test]
    fn floors_that_exceed_the_budget_have_no_bound() {
        let t = [user("a", &[(0, 60, 10 * M)]), user("b", &[(0, 60, 10 * M)])];
        assert_eq!(locked_bound(&t, 1, 3 * M, 2 * M), None);
    }
}
