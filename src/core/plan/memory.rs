//! What the daemon remembers between plans, so the planner can stay a pure function: when each
//! running stream was last pushed (the push cooldown), the highest limit its user can have had
//! when its item started, and which streams were found ignoring limits.
//!
//! The engine owns one [`Memory`], passes it to every plan, updates it from the plan
//! ([`Memory::observe`]) and from every push the writer reports ([`Memory::record_push`]).
//!
//! The memory outlives the process: the daemon and `reconcile` save it ([`Memory::saved`],
//! `memory.json` beside the state file) after they plan, and every process that plans (the
//! daemon at start, `reconcile`, `check`, `report`) starts from it ([`Memory::restored`]).
//! So a fresh process knows which users' clients take pushes, the recent load, and when each
//! stream was last pushed, and decides as the daemon before it would have, instead of
//! pushing a stream again or giving an idle user another share.
//!
//! Its clock (`now` in the plans) is a [`Duration`] that starts at [`CLOCK_START`] when the
//! process starts, so that times restored from before the start stay on it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Plan, Role, Uncontrolled};
use crate::core::HashMap;
use crate::ids::{SessionId, UserId};

/// Where a process's plan clock starts: far enough from zero that every time a restored
/// memory needs (the load window, push cooldowns, the grace after a stop) fits before it.
pub const CLOCK_START: Duration = Duration::from_secs(6 * 3600);

/// One running remote stream, as remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMemo {
    /// The item playing (normalized id); a new item starts a new memo.
    pub item: Arc<str>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserMemo {
    seen: i64,
    target: i64,
    /// Whether each of the user's last [`CLIENT_ITEMS`] remote items played on a client that
    /// accepted pushes (and obeyed limits), oldest first.
    clients: VecDeque<bool>,
}

/// How many of a user's last remote items say which clients the user watches on: a user who
/// played one of them on a client that cannot be pushed may start the next one there too.
pub const CLIENT_ITEMS: usize = 10;

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
    /// What the server transcodes at once, for `[transcoding] capacity = "auto"`.
    capacity: super::transcode::Learner,
}

/// How far back [`Memory::mean_claimants`] looks.
pub const LOAD_WINDOW: Duration = Duration::from_secs(2 * 3600);

/// A [`Memory`] as saved, its times as Unix milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    /// When it was saved.
    saved_ms: u64,
    #[serde(default)]
    streams: BTreeMap<String, SavedStream>,
    #[serde(default)]
    users: BTreeMap<String, SavedUser>,
    #[serde(default)]
    last_stop_ms: Option<u64>,
    /// (when, remote users streaming from then on).
    #[serde(default)]
    load: Vec<(u64, usize)>,
    /// The video transcodes the server was seen to run at once (`capacity = "auto"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transcode_capacity: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedStream {
    item: String,
    start_bound: Option<u64>,
    /// (when, bitrate).
    last_push: Option<(u64, u64)>,
    pushes: u32,
    uncontrolled: Option<Uncontrolled>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedUser {
    seen: i64,
    target: i64,
    /// Whether the last item's client accepted pushes (what versions before `clients` kept).
    pushable: Option<bool>,
    /// [`UserMemo::clients`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    clients: Vec<bool>,
}

impl Memory {
    /// The memo of `session` if it still plays `item`.
    pub fn stream(&self, session: &SessionId, item: &str) -> Option<&StreamMemo> {
        self.streams.get(session).filter(|m| *m.item == *item)
    }

    /// The largest limit `user` can have had since the last plan (its reading then, what
    /// that plan wrote, and `now`), or `None` when this memory has not seen the user yet.
    pub fn recent_limit(&self, user: &UserId, now: i64) -> Option<i64> {
        self.users.get(user).map(|u| u.seen.max(u.target).max(now))
    }

    /// Whether `user`'s next stream can be expected to accept pushes: every one of its last
    /// [`CLIENT_ITEMS`] remote items played on a client that did (`None`: not seen streaming).
    /// A user who watches on a TV that cannot be pushed now and then is treated as one whose
    /// next stream keeps its first rate: starting low costs a pushable client one push up,
    /// starting high on the TV holds the rate for the whole item.
    pub fn user_pushable(&self, user: &UserId) -> Option<bool> {
        let u = self.users.get(user)?;
        (!u.clients.is_empty()).then(|| u.clients.iter().all(|&p| p))
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

    /// The video transcodes the server runs at once, as learned (`capacity = "auto"`).
    pub fn learned_capacity(&self) -> Option<u32> {
        self.capacity.capacity()
    }

    /// When a remote item last stopped, as seen by the plans.
    pub fn last_stop(&self) -> Option<Duration> {
        self.last_stop
    }

    /// Remember the streams and limits of a plan made at `now`. Streams that stopped are
    /// forgotten; a stream that plays a new item starts a new memo.
    pub fn observe(&mut self, plan: &Plan, now: Duration) {
        let mut streams = HashMap::with_capacity_and_hasher(self.streams.len(), Default::default());
        for d in &plan.decisions {
            let mut clients = self
                .users
                .get(&d.user_id)
                .map(|u| u.clients.clone())
                .unwrap_or_default();
            for s in &d.streams {
                let pushable = s.supports_push && s.uncontrolled.is_none();
                let memo = match self.streams.remove(&s.session_id) {
                    Some(m) if m.item == s.item_id => {
                        // A client found ignoring limits mid-item takes no pushes either.
                        if let Some(last) = clients.back_mut() {
                            *last &= pushable;
                        }
                        m
                    }
                    _ => {
                        self.item_starts += 1;
                        clients.push_back(pushable);
                        if clients.len() > CLIENT_ITEMS {
                            clients.pop_front();
                        }
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
            if d.role != Role::Release {
                self.users.insert(
                    d.user_id.clone(),
                    UserMemo {
                        seen: d.current,
                        target: d.target,
                        clients,
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
        self.capacity.observe(plan.server_transcodes, now);
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

    /// This memory to save, at `now` on its clock, which is `now_ms` in Unix milliseconds.
    pub fn saved(&self, now: Duration, now_ms: u64) -> Saved {
        let wall = |t: Duration| now_ms.saturating_sub(now.saturating_sub(t).as_millis() as u64);
        Saved {
            saved_ms: now_ms,
            streams: self
                .streams
                .iter()
                .map(|(id, m)| {
                    let s = SavedStream {
                        item: m.item.to_string(),
                        start_bound: m.start_bound,
                        last_push: m.last_push.map(|(at, b)| (wall(at), b)),
                        pushes: m.pushes,
                        uncontrolled: m.uncontrolled,
                    };
                    (id.as_str().to_string(), s)
                })
                .collect(),
            users: self
                .users
                .iter()
                .map(|(id, u)| {
                    let s = SavedUser {
                        seen: u.seen,
                        target: u.target,
                        pushable: u.clients.back().copied(),
                        clients: u.clients.iter().copied().collect(),
                    };
                    (id.as_str().to_string(), s)
                })
                .collect(),
            last_stop_ms: self.last_stop.map(wall),
            load: self.load.iter().map(|&(t, n)| (wall(t), n)).collect(),
            transcode_capacity: self.capacity.capacity(),
        }
    }

    /// A memory from `saved`, on a clock at `now` (at least [`CLOCK_START`]) which is
    /// `now_ms` in Unix milliseconds. What is older than the clock can hold is left out; a
    /// stream memo is only a hint (the plan checks the session still plays its item).
    pub fn restored(saved: Saved, now: Duration, now_ms: u64) -> Memory {
        let clock = |t_ms: u64| {
            let age = Duration::from_millis(now_ms.saturating_sub(t_ms));
            now.checked_sub(age)
        };
        Memory {
            streams: saved
                .streams
                .into_iter()
                .map(|(id, s)| {
                    let m = StreamMemo {
                        item: s.item.into(),
                        start_bound: s.start_bound,
                        last_push: s.last_push.and_then(|(t, b)| clock(t).map(|at| (at, b))),
                        pushes: s.pushes,
                        uncontrolled: s.uncontrolled,
                    };
                    (SessionId::new(id), m)
                })
                .collect(),
            users: saved
                .users
                .into_iter()
                .map(|(id, u)| {
                    // A file from before `clients` knows the last item's client only.
                    let clients = if u.clients.is_empty() {
                        u.pushable.into_iter().collect()
                    } else {
                        u.clients.into_iter().collect()
                    };
                    let m = UserMemo {
                        seen: u.seen,
                        target: u.target,
                        clients,
                    };
                    (UserId::new(id), m)
                })
                .collect(),
            item_starts: 0,
            last_stop: saved.last_stop_ms.and_then(clock),
            load: saved
                .load
                .into_iter()
                .filter_map(|(t, n)| clock(t).map(|at| (at, n)))
                .collect(),
            capacity: super::transcode::Learner::knowing(saved.transcode_capacity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_memory_comes_back_on_another_clock() {
        let mut m = Memory::default();
        let t0 = CLOCK_START + Duration::from_secs(100);
        m.load.push_back((t0, 3));
        m.load.push_back((t0 + Duration::from_secs(600), 1));
        m.last_stop = Some(t0 + Duration::from_secs(500));
        m.users.insert(
            UserId::new("u"),
            UserMemo {
                seen: 1,
                target: 2,
                clients: VecDeque::from([false, true]),
            },
        );
        m.streams.insert(
            SessionId::new("s"),
            StreamMemo {
                item: "i".into(),
                start_bound: Some(5),
                last_push: Some((t0 + Duration::from_secs(550), 7)),
                pushes: 1,
                uncontrolled: None,
            },
        );
        m.capacity = crate::core::plan::transcode::Learner::knowing(Some(2));
        let now = t0 + Duration::from_secs(900);
        let saved = m.saved(now, 10_000_000);
        let text = serde_json::to_string(&saved).unwrap();
        let back: Saved = serde_json::from_str(&text).unwrap();
        // A process started 60 s after the save.
        let r = Memory::restored(back, CLOCK_START, 10_060_000);
        let shift = |t: Duration| t - (now + Duration::from_secs(60) - CLOCK_START);
        assert_eq!(r.last_stop, Some(shift(t0 + Duration::from_secs(500))));
        // One of its last items played on a client that takes no pushes.
        assert_eq!(r.user_pushable(&UserId::new("u")), Some(false));
        assert_eq!(r.users[&UserId::new("u")].clients, [false, true]);
        assert_eq!(r.learned_capacity(), Some(2));
        assert_eq!(r.recent_limit(&UserId::new("u"), 0), Some(2));
        let s = r.stream(&SessionId::new("s"), "i").unwrap();
        assert_eq!(s.last_push, Some((shift(t0 + Duration::from_secs(550)), 7)));
        assert_eq!(
            r.mean_claimants(CLOCK_START),
            m.mean_claimants(now + Duration::from_secs(60))
        );
        // A file written before `clients` keeps what it knew: the last item's client.
        let old: Saved = serde_json::from_str(
            r#"{"saved_ms": 10000000, "users": {"u": {"seen": 1, "target": 2, "pushable": false}}}"#,
        )
        .unwrap();
        let r = Memory::restored(old, CLOCK_START, 10_000_000);
        assert_eq!(r.user_pushable(&UserId::new("u")), Some(false));
        // Older than the clock holds: left out.
        let r = Memory::restored(saved, CLOCK_START, 10_000_000 + 7 * 3600 * 1000);
        assert!(r.load.is_empty() && r.last_stop.is_none());
    }
}
