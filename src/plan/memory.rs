//! What the daemon remembers between plans, so the planner can stay a pure function: when each
//! running stream was last pushed (the push cooldown), the highest limit its user can have had
//! when its item started, and which streams were found ignoring limits.
//!
//! The engine owns one [`Memory`], passes it to every plan, updates it from the plan
//! ([`Memory::observe`]) and from every push the writer reports ([`Memory::record_push`]).
//! One-shot commands (`reconcile --once`, `check`) plan with an empty memory.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::{Plan, Role, Uncontrolled};
use crate::ids::{SessionId, UserId};

/// One running remote stream, as remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMemo {
    /// The item playing (normalized id); a new item starts a new memo.
    pub item: String,
    /// The highest limit the stream's user can have had when the item started (bits/s);
    /// `None`: no limit was in force.
    pub start_bound: Option<u64>,
    /// The last `SetMaxStreamingBitrate` sent during this item: when, and the bitrate.
    pub last_push: Option<(Duration, u64)>,
    /// Pushes sent during this item.
    pub pushes: u32,
    /// Found running above its user's limit (a client that ignores limits).
    pub uncontrolled: Option<Uncontrolled>,
}

/// A managed user's limit in Jellyfin at the last plan and the limit that plan set out to
/// write: the limit in force between two plans is one of these or the next plan's reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UserMemo {
    seen: i64,
    target: i64,
    /// Whether the user's last remote stream accepted pushes.
    pushable: Option<bool>,
}

/// See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    streams: HashMap<SessionId, StreamMemo>,
    users: HashMap<UserId, UserMemo>,
    item_starts: u64,
    /// When a remote session last stopped playing (not counting an item followed at once by
    /// the next).
    last_stop: Option<Duration>,
    /// How many remote users streamed from each plan on, over the last [`LOAD_WINDOW`].
    load: VecDeque<(Duration, usize)>,
}

/// How far back [`Memory::mean_claimants`] looks.
pub const LOAD_WINDOW: Duration = Duration::from_secs(2 * 3600);

impl Memory {
    /// The memo of `session` if it still plays `item`.
    pub fn stream(&self, session: &SessionId, item: &str) -> Option<&StreamMemo> {
        self.streams.get(session).filter(|m| m.item == item)
    }

    /// The largest limit `user` can have had since the last plan (its reading then, what
    /// that plan wrote, and `now`), or `None` when this memory has not seen the user yet.
    pub fn recent_limit(&self, user: &UserId, now: i64) -> Option<i64> {
        self.users.get(user).map(|u| u.seen.max(u.target).max(now))
    }

    /// Whether `user`'s last remote stream accepted pushes (`None`: not seen streaming).
    pub fn user_pushable(&self, user: &UserId) -> Option<bool> {
        self.users.get(user).and_then(|u| u.pushable)
    }

    /// How many remote users streamed at once on average over the last [`LOAD_WINDOW`]
    /// (weighted by time, up to `now`), rounded to the nearest whole user.
    pub fn mean_claimants(&self, now: Duration) -> usize {
        let mut weighted = 0.0;
        let mut span = 0.0;
        for (i, (t, n)) in self.load.iter().enumerate() {
            let until = self.load.get(i + 1).map_or(now, |(next, _)| *next);
            let dt = until.saturating_sub(*t).as_secs_f64();
            weighted += dt * *n as f64;
            span += dt;
        }
        if span > 0.0 {
            (weighted / span).round() as usize
        } else {
            0
        }
    }

    /// When a remote item last stopped, as seen by the plans.
    pub fn last_stop(&self) -> Option<Duration> {
        self.last_stop
    }

    /// Remember the streams and limits of a plan made at `now`. Streams that stopped are
    /// forgotten; a stream that plays a new item starts a new memo.
    pub fn observe(&mut self, plan: &Plan, now: Duration) {
        let mut streams = HashMap::with_capacity(self.streams.len());
        for d in &plan.decisions {
            if d.role != Role::Release {
                let pushable = match d.streams.first() {
                    Some(s) => Some(s.supports_push && s.uncontrolled.is_none()),
                    None => self.users.get(&d.user_id).and_then(|u| u.pushable),
                };
                self.users.insert(
                    d.user_id.clone(),
                    UserMemo {
                        seen: d.current,
                        target: d.target,
                        pushable,
                    },
                );
            }
            for s in &d.streams {
                let memo = match self.streams.remove(&s.session_id) {
                    Some(m) if m.item == s.item_id => m,
                    _ => {
                        self.item_starts += 1;
                        StreamMemo {
                            item: s.item_id.clone(),
                            start_bound: s.start_bound,
                            last_push: None,
                            pushes: 0,
                            uncontrolled: None,
                        }
                    }
                };
                streams.insert(
                    s.session_id.clone(),
                    StreamMemo {
                        uncontrolled: s.uncontrolled,
                        ..memo
                    },
                );
            }
        }
        if !self.streams.is_empty() {
            // Sessions that no longer play remotely.
            self.last_stop = Some(now);
        }
        self.streams = streams;
        while self
            .load
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > LOAD_WINDOW)
        {
            self.load.pop_front();
        }
        self.load.push_back((now, plan.claimants()));
    }

    /// A push was sent to `session` at `at`.
    pub fn record_push(&mut self, session: &SessionId, at: Duration, bitrate: u64) {
        if let Some(m) = self.streams.get_mut(session) {
            m.last_push = Some((at, bitrate));
            m.pushes += 1;
        }
    }

    /// Remote items seen starting since this memory was created.
    pub fn item_starts(&self) -> u64 {
        self.item_starts
    }
}
