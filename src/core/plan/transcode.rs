//! Shares that respect what the server can transcode (`[transcoding] capacity`). A limit below
//! an item's source makes Jellyfin transcode it; beyond the server's capacity the transcodes
//! run slower than real time and their viewers stall, whatever the bandwidth. So when the fair
//! shares would leave more video transcodes than the server runs, the claimants with the
//! smallest demand are given their whole demand (their streams play direct), one at a time,
//! while the budget allows it beside what the others keep and the count goes down. What is
//! left transcodes beyond the capacity, and says so. Pure: no I/O.

use std::time::Duration;

use crate::config::{Algorithm, Capacity};
use crate::core::allocate::Claimant;

use super::rule::{self, FairShares};

/// A remote video stream of an active claimant, as the capacity sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Video {
    /// Its source bitrate.
    pub source: u64,
    /// Its source is 4K (counts as a 4K transcode, `capacity_4k`).
    pub uhd: bool,
    /// It transcodes now, and no push will change that before its item ends (its client
    /// cannot be pushed up, or ignores limits).
    pub stuck: bool,
    /// Its client obeys limits: it transcodes when its limit is below its source.
    pub obeys: bool,
}

impl Video {
    /// It transcodes when its user's per-stream limit is `share`.
    fn transcodes(&self, share: u64) -> bool {
        self.stuck || (self.obeys && share < self.source)
    }
}

/// Video transcodes at once, by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Of 1080p (or smaller) sources.
    pub hd: u32,
    /// Of 4K sources.
    pub uhd: u32,
}

impl Count {
    /// Count one transcode of this class.
    pub fn add(&mut self, uhd: bool) {
        if uhd {
            self.uhd += 1;
        } else {
            self.hd += 1;
        }
    }
    /// All of them.
    pub fn total(&self) -> u32 {
        self.hd + self.uhd
    }
}

/// What the step is given, per active claimant in the plan's order.
pub struct Input<'a> {
    /// The algorithm of the shares.
    pub algorithm: Algorithm,
    /// The claimants as the water-filling sees them.
    pub claimants: &'a [Claimant],
    /// Per claimant, what each stream would use (source times the overhead).
    pub demands: &'a [Vec<u64>],
    /// Per claimant and stream, the video it plays (`None`: audio, or unknown).
    pub videos: &'a [Vec<Option<Video>>],
    /// Per claimant, its per-stream floor.
    pub floors: &'a [u64],
    /// Per claimant, what it holds whatever its share (the rates of streams that cannot be
    /// pushed, the floor of those that can).
    pub kept: &'a [u64],
    /// What the claimants share.
    pub available: u64,
    /// Video transcodes that no limit here changes (local sessions, users not managed).
    pub fixed: Count,
    /// What the server transcodes at once.
    pub capacity: Capacity,
}

/// The step's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The shares, with the promoted claimants' floors raised to their demand.
    pub fair: FairShares,
    /// Per claimant, the limit for each of its streams.
    pub share: Vec<u64>,
    /// Per claimant, given its whole demand so that its streams play direct.
    pub promoted: Vec<bool>,
    /// The video transcodes under these shares, the fixed ones included.
    pub count: Count,
    /// They are more than the server runs in real time.
    pub beyond: bool,
}

/// At most this many claimants are tried for a promotion in one plan: a server transcodes a
/// handful of streams, and each try is one water-filling.
const MAX_TRIES: usize = 16;

/// The per-stream limit of every claimant under `fair`.
pub fn per_stream_shares(fair: &FairShares, demands: &[Vec<u64>], floors: &[u64]) -> Vec<u64> {
    fair.next_item
        .iter()
        .zip(demands)
        .zip(floors)
        .map(|((s, d), f)| rule::per_stream(*s, d).max(*f))
        .collect()
}

/// The video transcodes when each claimant's streams have the limit `share`.
pub fn count(videos: &[Vec<Option<Video>>], share: &[u64], fixed: Count) -> Count {
    let mut n = fixed;
    for (vs, &s) in videos.iter().zip(share) {
        for v in vs.iter().flatten() {
            if v.transcodes(s) {
                n.add(v.uhd);
            }
        }
    }
    n
}

/// The fair shares `fair` (for `input.claimants`), or, when their transcodes are more than the
/// server runs, the shares with the fewest claimants promoted to their demand that brings the
/// count within the capacity, or as close to it as the budget allows.
pub fn keep_direct(input: &Input, fair: FairShares) -> Outcome {
    let n = input.claimants.len();
    let share = per_stream_shares(&fair, input.demands, input.floors);
    let mut best = Outcome {
        count: count(input.videos, &share, input.fixed),
        fair,
        share,
        promoted: vec![false; n],
        beyond: false,
    };
    let load = |c: Count| input.capacity.load(c.hd, c.uhd);
    let fits = |c: Count| input.capacity.fits(c.hd, c.uhd);
    // Its demand fits under its own cap, and none of its streams is stuck in a transcode.
    let promotable = |i: usize| {
        let c = &input.claimants[i];
        c.demand <= c.ceiling && input.videos[i].iter().flatten().all(|v| !v.stuck)
    };
    let mut claimants = input.claimants.to_vec();
    let mut tried = vec![false; n];
    for _ in 0..MAX_TRIES {
        if fits(best.count) {
            break;
        }
        // The claimant with the smallest demand whose streams would play direct with it.
        let Some(i) = (0..n)
            .filter(|&i| !tried[i] && !best.promoted[i] && promotable(i))
            .filter(|&i| {
                input.videos[i]
                    .iter()
                    .flatten()
                    .any(|v| v.obeys && best.share[i] < v.source)
            })
            .min_by_key(|&i| (input.claimants[i].demand, i))
        else {
            break;
        };
        tried[i] = true;
        // Promoting one lowers the others' shares, which may make one that played direct
        // transcode: it is promoted with it (its demand fits under the share it had).
        let mut set = best.promoted.clone();
        set[i] = true;
        let trial = loop {
            let with: Vec<Claimant> = claimants
                .iter()
                .zip(&set)
                .map(|(c, &p)| Claimant {
                    floor: if p { c.floor.max(c.demand) } else { c.floor },
                    ..*c
                })
                .collect();
            // Beside the promoted claimants' demands, every other keeps what it holds anyway.
            let needed: u64 = (0..n)
                .map(|j| {
                    if set[j] {
                        with[j].demand.max(input.kept[j])
                    } else {
                        input.kept[j]
                    }
                })
                .sum();
            if needed > input.available {
                break None;
            }
            let fair = rule::fair_shares(input.algorithm, &with, input.available);
            if fair.overloaded {
                break None;
            }
            let share = per_stream_shares(&fair, input.demands, input.floors);
            let newly: Vec<usize> = (0..n)
                .filter(|&j| !set[j] && promotable(j))
                .filter(|&j| {
                    let vs = || input.videos[j].iter().flatten();
                    !vs().any(|v| v.transcodes(best.share[j]))
                        && vs().any(|v| v.transcodes(share[j]))
                })
                .collect();
            if newly.is_empty() {
                break Some((fair, share));
            }
            for j in newly {
                set[j] = true;
            }
        };
        let Some((fair, share)) = trial else {
            continue;
        };
        let c = count(input.videos, &share, input.fixed);
        if load(c) < load(best.count) {
            for (c, &p) in claimants.iter_mut().zip(&set) {
                if p {
                    c.floor = c.floor.max(c.demand);
                }
            }
            best.promoted = set;
            best.fair = fair;
            best.share = share;
            best.count = c;
        }
    }
    best.beyond = !fits(best.count);
    best
}

/// What the server's video transcodes showed in one snapshot: how many ran at once (playing,
/// not paused) and whether one ran slower than its source plays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Video transcodes running.
    pub running: u32,
    /// One of them runs slower than real time (Jellyfin's `Framerate` below the source's).
    pub behind: bool,
    /// Jellyfin reported the frame rates of all of them.
    pub measured: bool,
}

/// How long a transcode must stay behind before it counts: a transcode that starts or seeks
/// dips for a moment.
pub const BEHIND_FOR: Duration = Duration::from_secs(30);

/// `[transcoding] capacity = "auto"`: the capacity learned from what the server did. Unknown
/// until a transcode falls behind for [`BEHIND_FOR`] with `n` running (then `n - 1`), raised
/// when the server keeps up with more than that, all of them measured. Pure: the clock is
/// given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Learner {
    capacity: Option<u32>,
    /// Since when a transcode is behind.
    behind_since: Option<Duration>,
}

impl Learner {
    /// A learner that already knows `capacity` (restored after a restart).
    pub fn knowing(capacity: Option<u32>) -> Learner {
        Learner {
            capacity,
            behind_since: None,
        }
    }

    /// What it learned so far.
    pub fn capacity(&self) -> Option<u32> {
        self.capacity
    }

    /// Take in a snapshot's transcodes at `now`.
    pub fn observe(&mut self, sample: Sample, now: Duration) {
        if sample.behind && sample.running > 0 {
            let since = *self.behind_since.get_or_insert(now);
            if now.saturating_sub(since) >= BEHIND_FOR {
                let most = sample.running - 1;
                self.capacity = Some(self.capacity.map_or(most, |c| c.min(most)));
            }
            return;
        }
        self.behind_since = None;
        if sample.measured
            && let Some(c) = self.capacity
            && sample.running > c
        {
            self.capacity = Some(sample.running);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1_000_000;

    fn claimant(demand: u64) -> Claimant {
        Claimant {
            weight_milli: 1000,
            floor: 2 * M,
            ceiling: i32::MAX as u64,
            demand,
        }
    }

    fn video(source: u64) -> Option<Video> {
        Some(Video {
            source,
            uhd: source >= 30 * M,
            stuck: false,
            obeys: true,
        })
    }

    struct Case {
        claimants: Vec<Claimant>,
        demands: Vec<Vec<u64>>,
        videos: Vec<Vec<Option<Video>>>,
        floors: Vec<u64>,
        kept: Vec<u64>,
    }

    /// One stream each, of these sources (demand 1.1 times), each holding only its floor.
    fn case(sources: &[u64]) -> Case {
        let demands: Vec<Vec<u64>> = sources.iter().map(|s| vec![s * 11 / 10]).collect();
        Case {
            claimants: demands.iter().map(|d| claimant(d[0])).collect(),
            videos: sources.iter().map(|s| vec![video(*s)]).collect(),
            floors: vec![2 * M; sources.len()],
            kept: vec![2 * M; sources.len()],
            demands,
        }
    }

    fn run(c: &Case, available: u64, capacity: Capacity) -> Outcome {
        let input = Input {
            algorithm: Algorithm::Equal,
            claimants: &c.claimants,
            demands: &c.demands,
            videos: &c.videos,
            floors: &c.floors,
            kept: &c.kept,
            available,
            fixed: Count::default(),
            capacity,
        };
        keep_direct(
            &input,
            rule::fair_shares(Algorithm::Equal, &c.claimants, available),
        )
    }

    const ONE: Capacity = Capacity { hd: 1, uhd: 1 };

    #[test]
    fn within_the_capacity_the_fair_shares_stand() {
        // The 1080p streams take 11 each, the remux transcodes to 48: one transcode.
        let c = case(&[10 * M, 60 * M, 10 * M]);
        let out = run(&c, 70 * M, ONE);
        assert_eq!(out.promoted, vec![false; 3]);
        assert_eq!(out.count.total(), 1);
        assert!(!out.beyond);
    }

    #[test]
    fn the_smallest_demand_is_kept_direct_first() {
        // Fair on 80 Mbps: 11, then 34.5 each, so the 35 and the 40 transcode: two, the
        // server runs one. The 35 Mbps one gets its 38.5; the 40 Mbps one transcodes alone.
        let c = case(&[10 * M, 35 * M, 40 * M]);
        let out = run(&c, 80 * M, ONE);
        assert_eq!(out.promoted, vec![false, true, false]);
        assert!(out.share[1] >= 35 * M, "{:?}", out.share);
        assert!(out.share[2] < 40 * M);
        assert_eq!(out.count.total(), 1);
        assert!(!out.beyond);
    }

    #[test]
    fn what_the_budget_cannot_hold_transcodes_beyond_the_capacity() {
        // Three remuxes on 90 Mbps: none fits beside the other two's floors and a second
        // remux, so one promotion at most; two transcodes remain.
        let c = case(&[70 * M, 75 * M, 80 * M]);
        let out = run(&c, 90 * M, ONE);
        assert_eq!(out.promoted, vec![true, false, false]);
        assert_eq!(out.count.total(), 2);
        assert!(out.beyond);
        // With nothing to gain from promoting, nobody is.
        let none = run(&c, 20 * M, ONE);
        assert_eq!(none.promoted, vec![false; 3]);
        assert_eq!(none.count.total(), 3);
        assert!(none.beyond);
    }

    #[test]
    fn a_4k_transcode_takes_more_of_the_server() {
        // On 70 Mbps a 1080p source of 38 Mbps and a 4K one of 39 both transcode at 29.5: half
        // the server and all of it (two 1080p or one 4K at once). Keeping the 1080p one direct
        // leaves the 4K transcode alone, which the server runs.
        let mut c = case(&[10 * M, 38 * M, 39 * M]);
        c.videos[1] = vec![Some(Video {
            uhd: false,
            ..video(38 * M).unwrap()
        })];
        let out = run(&c, 70 * M, Capacity { hd: 2, uhd: 1 });
        assert_eq!(out.promoted, vec![false, true, false]);
        assert_eq!(out.count, Count { hd: 0, uhd: 1 });
        assert!(!out.beyond);
    }

    #[test]
    fn a_stream_that_cannot_leave_its_transcode_is_not_promoted() {
        // The 35 Mbps stream transcodes now and cannot be pushed: raising its limit changes
        // nothing until its item ends, so the 40 Mbps one is tried, and fits.
        let mut c = case(&[10 * M, 35 * M, 40 * M]);
        c.videos[1] = vec![Some(Video {
            stuck: true,
            ..video(35 * M).unwrap()
        })];
        c.kept[1] = 20 * M;
        let out = run(&c, 80 * M, ONE);
        assert_eq!(out.promoted, vec![false, false, true]);
        assert_eq!(out.count.total(), 1);
        assert!(!out.beyond);
    }

    #[test]
    fn a_claimant_whose_own_cap_is_below_its_source_is_not_promoted() {
        let mut c = case(&[10 * M, 35 * M, 40 * M]);
        c.claimants[1].ceiling = 20 * M;
        let out = run(&c, 80 * M, ONE);
        // Its own cap transcodes it, and leaves the 40 Mbps one room to play direct.
        assert_eq!(out.promoted, vec![false; 3]);
        assert_eq!(out.count.total(), 1);
        // On less, the cap still keeps it from promotion: the 40 Mbps one is kept direct, and
        // with it the 10 Mbps one, which its share would otherwise push below its source.
        let out = run(&c, 60 * M, ONE);
        assert_eq!(out.promoted, vec![true, false, true]);
        assert_eq!(out.count.total(), 1);
    }

    #[test]
    fn auto_learns_the_capacity_from_transcodes_that_fall_behind_and_raises_it_when_they_keep_up() {
        let sec = Duration::from_secs;
        let sample = |running, behind| Sample {
            running,
            behind,
            measured: true,
        };
        let mut l = Learner::default();
        // Keeping up says nothing while no limit is known.
        l.observe(sample(3, false), sec(0));
        assert_eq!(l.capacity(), None);
        // A dip shorter than BEHIND_FOR is not counted.
        l.observe(sample(3, true), sec(10));
        l.observe(sample(3, true), sec(30));
        l.observe(sample(3, false), sec(35));
        assert_eq!(l.capacity(), None);
        // Behind for 30 s with 3 running: it runs 2.
        l.observe(sample(3, true), sec(40));
        l.observe(sample(3, true), sec(70));
        assert_eq!(l.capacity(), Some(2));
        // Later behind with 2: it runs 1.
        l.observe(sample(2, true), sec(100));
        l.observe(sample(2, true), sec(130));
        assert_eq!(l.capacity(), Some(1));
        // Keeping up with 2, measured: 2 again; unmeasured says nothing.
        l.observe(
            Sample {
                running: 3,
                behind: false,
                measured: false,
            },
            sec(140),
        );
        assert_eq!(l.capacity(), Some(1));
        l.observe(sample(2, false), sec(150));
        assert_eq!(l.capacity(), Some(2));
        // One transcode behind: the server runs none in real time.
        let mut l = Learner::knowing(Some(2));
        l.observe(sample(1, true), sec(0));
        l.observe(sample(1, true), sec(30));
        assert_eq!(l.capacity(), Some(0));
    }
}
