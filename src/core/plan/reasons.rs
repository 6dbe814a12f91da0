//! The reasons a plan gives: which term bound each user's limit, kept as values ([`Reason`])
//! and put in words only when shown (a plan of 1,000 users would otherwise write 1,000
//! sentences that the status page, the log and the history mostly never read); and the idle
//! users' sentence.

use std::fmt;

use crate::config::{Algorithm, Capacity};
use crate::core::allocate::Bound;
use crate::core::rate::Mbps;
use crate::ids::UserName;

use super::Direction;
use super::bounds::{Bounds, CeilingSource, ceiling_label};
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

/// Why a decision's limit is what it is. `Display` gives the sentence the status page, the
/// log and `report` show ("fair share 24.3 Mbps of 55 Mbps among 3").
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// A user streaming from outside: the term that bound its share, and what followed.
    Active(ActiveReason),
    /// An idle user at its join share.
    Join(JoinReason),
    /// The owner pinned the user's limit.
    Pinned {
        /// The pin, bits/s.
        pin: u64,
        /// Who set it.
        by: String,
    },
    /// jellydemon no longer manages the user: its original is back.
    Released,
    /// A user of another server who is the same person as a `[jellyfin]` user
    /// (`match_users_by_name`) gets that user's limit, for that user's reason.
    SamePerson {
        /// The `[jellyfin]` user's name.
        of: UserName,
        /// That user's reason.
        reason: Box<Reason>,
    },
}

/// An active user's reason: the term, then per-stream, transcode and push notes.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveReason {
    /// Which term bound the limit, or that the current limit was kept.
    pub term: ActiveTerm,
    /// The user's running remote streams (the limit is per stream).
    pub streams: u64,
    /// What the transcode capacity did to this limit.
    pub transcode: Option<TranscodeNote>,
    /// The pushes sent with the limit: which way, to what, and whether that is the source's
    /// own rate.
    pub pushes: Vec<(Direction, u64, bool)>,
}

/// The term that set an active user's limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActiveTerm {
    /// The headroom beside what the others hold.
    Headroom {
        /// What the others hold, bits/s.
        held_by_others: u64,
    },
    /// The floor, because the floors exceed the budget.
    Overload {
        /// The floor, bits/s.
        floor: u64,
    },
    /// The floor, because what the others hold leaves less.
    Floor {
        /// The floor, bits/s.
        floor: u64,
        /// What the others hold, bits/s.
        held_by_others: u64,
    },
    /// The user's ceiling.
    Capped {
        /// Which ceiling.
        source: CeilingSource,
        /// Its value, bits/s.
        ceiling: u64,
    },
    /// Its whole demand (`algorithm = "demand"`).
    Demand {
        /// The demand, bits/s.
        share: u64,
    },
    /// Its fair share.
    FairShare {
        /// The share, bits/s.
        share: u64,
        /// What was shared, bits/s.
        available: u64,
        /// Among how many.
        claimants: usize,
    },
    /// The limit it has is within the hysteresis of the computed one, and kept.
    Kept {
        /// The limit kept, bits/s.
        current: u64,
        /// `hysteresis_percent`.
        hysteresis: f64,
        /// The computed limit, bits/s.
        computed: u64,
    },
}

/// What the transcode capacity did to an active user's limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TranscodeNote {
    /// Given its whole demand so that its streams play direct.
    KeptDirect {
        /// What the server transcodes at once.
        capacity: Capacity,
    },
    /// The limit forces a transcode the server has no room for.
    Beyond {
        /// Video transcodes running.
        transcodes: u32,
        /// What the server transcodes at once.
        capacity: Capacity,
    },
}

/// An idle user's join share, or the limit it keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JoinReason {
    /// Capped by the user's ceiling.
    Capped {
        /// Which ceiling.
        source: CeilingSource,
        /// Its value, bits/s.
        ceiling: u64,
    },
    /// The fair share with one more claimant.
    Share {
        /// That share, bits/s.
        with_one_more: u64,
        /// What was shared, bits/s.
        available: u64,
    },
    /// The headroom beside what remote streams hold.
    Headroom {
        /// What they hold, bits/s.
        beside: u64,
    },
    /// The floor: what remote streams hold leaves less.
    Floor {
        /// What they hold, bits/s.
        beside: u64,
    },
    /// The limit it has is within the hysteresis of the join share, and kept.
    Kept {
        /// The limit kept, bits/s.
        current: u64,
        /// `hysteresis_percent`.
        hysteresis: f64,
        /// The join share, bits/s.
        share: u64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Active(a) => a.fmt(f),
            Reason::Join(j) => j.fmt(f),
            Reason::Pinned { pin, by } => write!(f, "pinned at {} by {by}", Mbps(*pin)),
            Reason::Released => f.write_str("no longer managed: original limit restored"),
            Reason::SamePerson { of, reason } => {
                write!(f, "the same person as {of} (match_users_by_name): {reason}")
            }
        }
    }
}

impl fmt::Display for ActiveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.term {
            ActiveTerm::Headroom { held_by_others } => {
                write!(f, "headroom beside {} held by others", Mbps(held_by_others))
            }
            ActiveTerm::Overload { floor } => write!(
                f,
                "floor {}: overload, the floors exceed the budget",
                Mbps(floor)
            ),
            ActiveTerm::Floor {
                floor,
                held_by_others,
            } => write!(
                f,
                "floor {}: {} held by others leave less",
                Mbps(floor),
                Mbps(held_by_others)
            ),
            ActiveTerm::Capped { source, ceiling } => write!(
                f,
                "capped by {} of {}",
                ceiling_label(source),
                Mbps(ceiling)
            ),
            ActiveTerm::Demand { share } => write!(f, "its demand {}", Mbps(share)),
            ActiveTerm::FairShare {
                share,
                available,
                claimants,
            } => write!(
                f,
                "fair share {} of {} among {claimants}",
                Mbps(share),
                Mbps(available)
            ),
            ActiveTerm::Kept {
                current,
                hysteresis,
                computed,
            } => write!(
                f,
                "kept: {} is within {hysteresis}% of the computed {}",
                Mbps(current),
                Mbps(computed)
            ),
        }?;
        if self.streams > 1 {
            write!(f, ", for each of {} streams", self.streams)?;
        }
        match self.transcode {
            Some(TranscodeNote::KeptDirect { capacity }) => write!(
                f,
                "; kept direct play: the server transcodes {}",
                capacity.describe()
            )?,
            Some(TranscodeNote::Beyond {
                transcodes,
                capacity,
            }) => write!(
                f,
                "; forces a transcode beyond capacity ({transcodes} video transcodes, the server \
                 runs {})",
                capacity.describe()
            )?,
            None => {}
        }
        for &(direction, bitrate, at_source) in &self.pushes {
            write!(
                f,
                "; stream pushed {} to {}{}",
                direction.label(),
                Mbps(bitrate),
                if at_source { ", its source rate" } else { "" }
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for JoinReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            JoinReason::Capped { source, ceiling } => write!(
                f,
                "join share capped by {} of {}",
                ceiling_label(source),
                Mbps(ceiling)
            ),
            JoinReason::Share {
                with_one_more,
                available,
            } => write!(
                f,
                "join share: the fair share with one more, {} of {}",
                Mbps(with_one_more),
                Mbps(available)
            ),
            JoinReason::Headroom { beside } => write!(
                f,
                "join share: the headroom beside {} held by remote streams",
                Mbps(beside)
            ),
            JoinReason::Floor { beside } => write!(
                f,
                "join share: the floor, {} held by remote streams leave less",
                Mbps(beside)
            ),
            JoinReason::Kept {
                current,
                hysteresis,
                share,
            } => write!(
                f,
                "kept: {} is within {hysteresis}% of the join share {}",
                Mbps(current),
                Mbps(share)
            ),
        }
    }
}

/// Which term bound an active user's limit.
pub(super) fn active_term(
    algorithm: Algorithm,
    why: &Why,
    b: Bounds,
    held_by_others: u64,
) -> ActiveTerm {
    match why.term {
        rule::Term::Headroom => ActiveTerm::Headroom { held_by_others },
        rule::Term::Floor if why.overloaded => ActiveTerm::Overload { floor: b.floor },
        rule::Term::Floor => ActiveTerm::Floor {
            floor: b.floor,
            held_by_others,
        },
        rule::Term::Share if why.share >= b.ceiling => ActiveTerm::Capped {
            source: b.source,
            ceiling: b.ceiling,
        },
        rule::Term::Share => match (algorithm, why.bound) {
            (Algorithm::Demand, Bound::Demand) => ActiveTerm::Demand { share: why.share },
            _ => ActiveTerm::FairShare {
                share: why.share,
                available: why.available,
                claimants: why.claimants,
            },
        },
    }
}
