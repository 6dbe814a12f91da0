//! When to tell the admin. Pure: observations from the daemon in (a plan, a read of Jellyfin,
//! a write, the shutdown's restore), notices out.
//!
//! Conditions are edge-triggered: a notice when one starts and one when it clears, never
//! while it lasts. Jellyfin unreachable and writes failing start only after they have lasted
//! a threshold. A condition that starts again within the cooldown of its last notice is not
//! notified (nor is its clearing), so a flapping link does not flood a phone. One-off events
//! (a limit changed by hand, originals not restored, start and stop) are sent as they come.
//! Names in observations are already shown as the daemon shows them (aliases when
//! anonymizing).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::config::EventKind;
use crate::core::rate::fmt_mbps;

/// How a notice reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record.
    Info,
    /// A condition cleared.
    Success,
    /// Something needs attention.
    Warning,
    /// Something failed.
    Failure,
}

impl Severity {
    /// As sent (Apprise's `type`, the webhook's `severity`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Success => "success",
            Severity::Warning => "warning",
            Severity::Failure => "failure",
        }
    }
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    /// What happened.
    pub event: EventKind,
    /// How it reads.
    pub severity: Severity,
    /// A short title.
    pub title: String,
    /// What happened and what to do, in plain words.
    pub message: String,
    /// The condition cleared (the notice that says so).
    pub cleared: bool,
    /// The figures behind it, for webhooks.
    pub data: serde_json::Value,
}

/// What the daemon saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// A plan was made.
    Plan {
        /// The floors exceed the budget: (remote streamers, floor, budget), bits/s.
        overload: Option<(usize, u64, u64)>,
        /// Streams that ignore limits: (user, device, rate bits/s).
        uncontrolled: Vec<(String, String, u64)>,
        /// The limits force more video transcodes than the server runs.
        beyond_capacity: Option<BeyondCapacity>,
        /// Limits changed by hand: (user, old original, new original), bits/s.
        hand_changes: Vec<(String, i64, i64)>,
    },
    /// A limit changed by hand, found by the writer's read just before a write (the plans
    /// between polls do not read the users): (user, old original, new original), bits/s.
    HandChange(String, i64, i64),
    /// A read of Jellyfin: the error, if it failed.
    Poll(Option<String>),
    /// A policy write: the error, if it failed.
    Write(Option<String>),
    /// The shutdown's restore left `users` originals in `state_file`.
    RestoreFailed {
        /// How many.
        users: usize,
        /// Where they are kept.
        state_file: String,
    },
    /// A read or write of a torrent client: the error, if it failed.
    Downloader {
        /// The downloader's name.
        name: String,
        /// What went wrong.
        error: Option<String>,
    },
    /// A batch of history rows (or opening the database): the error, if it failed.
    History(Option<String>),
    /// The daemon started.
    Started,
    /// The daemon is stopping.
    Stopped,
}

/// More video transcodes than `[transcoding] capacity`, as a plan found them.
#[derive(Debug, Clone, PartialEq)]
pub struct BeyondCapacity {
    /// Video transcodes under the plan.
    pub transcodes: u32,
    /// What the server runs, in words ("1 stream at most").
    pub capacity: String,
    /// The users whose limit forces a transcode (names as shown).
    pub users: Vec<String>,
}

/// A condition that starts after lasting `after`.
#[derive(Debug, Default)]
struct Lasting {
    since: Option<Duration>,
    error: Option<String>,
    notified: bool,
}

/// The state between observations.
#[derive(Debug)]
pub struct Conditions {
    cooldown: Duration,
    unreachable_after: Duration,
    writes_after: Duration,
    overload: bool,
    overload_notified: bool,
    /// Transcodes beyond the capacity now, and whether that was notified.
    beyond: Option<bool>,
    unreachable: Lasting,
    writes: Lasting,
    /// The history database (a threshold like the writes').
    history: Lasting,
    /// Each torrent client that fails, by name.
    downloaders: BTreeMap<String, Lasting>,
    /// Users whose client ignores limits now, and whether that was notified.
    uncontrolled: BTreeMap<String, bool>,
    /// When a condition's start was last notified: (event, key).
    last_start: BTreeMap<(EventKind, String), Duration>,
}

impl Conditions {
    /// With the cooldown and the two thresholds.
    pub fn new(cooldown: Duration, unreachable_after: Duration, writes_after: Duration) -> Self {
        Conditions {
            cooldown,
            unreachable_after,
            writes_after,
            overload: false,
            overload_notified: false,
            beyond: None,
            unreachable: Lasting::default(),
            writes: Lasting::default(),
            history: Lasting::default(),
            downloaders: BTreeMap::new(),
            uncontrolled: BTreeMap::new(),
            last_start: BTreeMap::new(),
        }
    }

    /// The conditions in force now, for the status page: (event, key).
    pub fn active(&self) -> Vec<(EventKind, String)> {
        let mut out = Vec::new();
        if self.overload {
            out.push((EventKind::Overload, String::new()));
        }
        if self.beyond.is_some() {
            out.push((EventKind::TranscodesBeyondCapacity, String::new()));
        }
        if self.unreachable.notified {
            out.push((EventKind::JellyfinUnreachable, String::new()));
        }
        if self.writes.notified {
            out.push((EventKind::WritesFailing, String::new()));
        }
        if self.history.notified {
            out.push((EventKind::HistoryFailing, String::new()));
        }
        out.extend(
            self.downloaders
                .iter()
                .filter(|(_, c)| c.notified)
                .map(|(n, _)| (EventKind::DownloaderUnreachable, n.clone())),
        );
        out.extend(
            self.uncontrolled
                .keys()
                .map(|u| (EventKind::IgnoresLimits, u.clone())),
        );
        out
    }

    /// Whether a start of `(event, key)` may be notified at `now`; if so, noted.
    fn may_start(&mut self, event: EventKind, key: &str, now: Duration) -> bool {
        let k = (event, key.to_string());
        match self.last_start.get(&k) {
            Some(&at) if now.saturating_sub(at) < self.cooldown => false,
            _ => {
                self.last_start.insert(k, now);
                true
            }
        }
    }

    /// Take in what the daemon saw at `now` (a monotonic clock); returns the notices.
    pub fn observe(&mut self, obs: Observation, now: Duration) -> Vec<Notice> {
        let mut out = Vec::new();
        match obs {
            Observation::Plan {
                overload,
                uncontrolled,
                beyond_capacity,
                hand_changes,
            } => {
                self.plan_overload(overload, now, &mut out);
                self.plan_beyond(beyond_capacity, now, &mut out);
                self.plan_uncontrolled(uncontrolled, now, &mut out);
                for (user, old, new) in hand_changes {
                    out.push(hand_change(&user, old, new));
                }
            }
            Observation::HandChange(user, old, new) => out.push(hand_change(&user, old, new)),
            Observation::Poll(error) => {
                let after = self.unreachable_after;
                if let Some(n) = lasting(
                    &mut self.unreachable,
                    error,
                    now,
                    after,
                    EventKind::JellyfinUnreachable,
                ) {
                    self.emit(n, now, &mut out);
                }
            }
            Observation::Write(error) => {
                let after = self.writes_after;
                if let Some(n) = lasting(
                    &mut self.writes,
                    error,
                    now,
                    after,
                    EventKind::WritesFailing,
                ) {
                    self.emit(n, now, &mut out);
                }
            }
            Observation::History(error) => {
                let after = self.writes_after;
                if let Some(n) = lasting(
                    &mut self.history,
                    error,
                    now,
                    after,
                    EventKind::HistoryFailing,
                ) {
                    self.emit(n, now, &mut out);
                }
            }
            Observation::Downloader { name, error } => {
                let after = self.unreachable_after;
                let c = self.downloaders.entry(name.clone()).or_default();
                if let Some(mut n) = lasting(c, error, now, after, EventKind::DownloaderUnreachable)
                {
                    n.title = format!("{name}: {}", n.title);
                    n.message = format!("{name}: {}", n.message);
                    n.data["downloader"] = serde_json::json!(name);
                    if n.cleared || self.may_start(n.event, &name, now) {
                        out.push(n);
                    } else if let Some(c) = self.downloaders.get_mut(&name) {
                        c.notified = false;
                    }
                }
                if self
                    .downloaders
                    .get(&name)
                    .is_some_and(|c| c.since.is_none())
                {
                    self.downloaders.remove(&name);
                }
            }
            Observation::RestoreFailed { users, state_file } => out.push(Notice {
                event: EventKind::RestoreFailed,
                severity: Severity::Failure,
                title: "Original limits not restored".into(),
                message: format!(
                    "jellydemon stopped but could not put back the original limit of {users} \
                     user(s). They are kept in {state_file}: run `jellydemon restore` once \
                     Jellyfin is reachable."
                ),
                cleared: false,
                data: serde_json::json!({"users": users, "state_file": state_file}),
            }),
            Observation::Started => out.push(Notice {
                event: EventKind::Started,
                severity: Severity::Info,
                title: "jellydemon started".into(),
                message: "jellydemon is managing the remote users' bitrate limits.".into(),
                cleared: false,
                data: serde_json::json!({}),
            }),
            Observation::Stopped => out.push(Notice {
                event: EventKind::Stopped,
                severity: Severity::Info,
                title: "jellydemon stopped".into(),
                message: "jellydemon stopped and is putting every original limit back.".into(),
                cleared: false,
                data: serde_json::json!({}),
            }),
        }
        out
    }

    /// A lasting condition's notice: a start passes the cooldown; a clear is sent only when
    /// its start was (`lasting` returns it only then).
    fn emit(&mut self, n: Notice, now: Duration, out: &mut Vec<Notice>) {
        if n.cleared || self.may_start(n.event, "", now) {
            out.push(n);
        } else {
            // Not notified: its clearing is not either.
            match n.event {
                EventKind::JellyfinUnreachable => self.unreachable.notified = false,
                EventKind::WritesFailing => self.writes.notified = false,
                EventKind::HistoryFailing => self.history.notified = false,
                _ => {}
            }
        }
    }

    fn plan_overload(
        &mut self,
        overload: Option<(usize, u64, u64)>,
        now: Duration,
        out: &mut Vec<Notice>,
    ) {
        match (overload, self.overload) {
            (Some((users, floor, budget)), false) => {
                self.overload = true;
                self.overload_notified = self.may_start(EventKind::Overload, "", now);
                if self.overload_notified {
                    out.push(Notice {
                        event: EventKind::Overload,
                        severity: Severity::Warning,
                        title: "Upload overloaded".into(),
                        message: format!(
                            "{users} remote streamers need at least {} each, more than the {} \
                             budget: every stream is held at that floor and may buffer. Raise \
                             total_upload_mbps if the link allows it, or lower \
                             min_per_user_mbps.",
                            fmt_mbps(floor),
                            fmt_mbps(budget)
                        ),
                        cleared: false,
                        data: serde_json::json!({"users": users, "floor_bps": floor, "budget_bps": budget}),
                    });
                }
            }
            (None, true) => {
                self.overload = false;
                if std::mem::take(&mut self.overload_notified) {
                    out.push(Notice {
                        event: EventKind::Overload,
                        severity: Severity::Success,
                        title: "Upload no longer overloaded".into(),
                        message: "The remote streams fit the budget again.".into(),
                        cleared: true,
                        data: serde_json::json!({}),
                    });
                }
            }
            _ => {}
        }
    }

    fn plan_beyond(
        &mut self,
        beyond: Option<BeyondCapacity>,
        now: Duration,
        out: &mut Vec<Notice>,
    ) {
        let event = EventKind::TranscodesBeyondCapacity;
        match (beyond, self.beyond) {
            (Some(b), None) => {
                let notified = self.may_start(event, "", now);
                self.beyond = Some(notified);
                if notified {
                    let users = b.users.join(", ");
                    out.push(Notice {
                        event,
                        severity: Severity::Warning,
                        title: "More transcodes than the server runs".into(),
                        message: format!(
                            "The budget cannot keep enough streams direct: {} video transcodes \
                             while the server runs {}, so the viewers of the transcoded \
                             streams stall (limits below the source of {users}). Raise \
                             total_upload_mbps if the link allows it, or [transcoding] \
                             capacity if the server keeps up with more.",
                            b.transcodes, b.capacity
                        ),
                        cleared: false,
                        data: serde_json::json!({
                            "transcodes": b.transcodes,
                            "capacity": b.capacity,
                            "users": b.users,
                        }),
                    });
                }
            }
            (None, Some(notified)) => {
                self.beyond = None;
                if notified {
                    out.push(Notice {
                        event,
                        severity: Severity::Success,
                        title: "Transcodes within the server's capacity again".into(),
                        message: "The server transcodes no more streams than it runs in real \
                                  time."
                            .into(),
                        cleared: true,
                        data: serde_json::json!({}),
                    });
                }
            }
            _ => {}
        }
    }

    fn plan_uncontrolled(
        &mut self,
        now_list: Vec<(String, String, u64)>,
        now: Duration,
        out: &mut Vec<Notice>,
    ) {
        let present: BTreeSet<String> = now_list.iter().map(|(u, _, _)| u.clone()).collect();
        for (user, device, rate) in now_list {
            if self.uncontrolled.contains_key(&user) {
                continue;
            }
            let notified = self.may_start(EventKind::IgnoresLimits, &user, now);
            if notified {
                out.push(Notice {
                    event: EventKind::IgnoresLimits,
                    severity: Severity::Warning,
                    title: format!("{user}'s client ignores limits"),
                    message: format!(
                        "{user} plays on {device} at {}, above the limit jellydemon set: the \
                         client ignores limits, so the stream is counted at its real rate and \
                         the others get less. Ask {user} to lower the quality in the client, \
                         or to use the Jellyfin app.",
                        fmt_mbps(rate)
                    ),
                    cleared: false,
                    data: serde_json::json!({"user": user, "device": device, "rate_bps": rate}),
                });
            }
            self.uncontrolled.insert(user, notified);
        }
        let gone: Vec<String> = self
            .uncontrolled
            .keys()
            .filter(|u| !present.contains(*u))
            .cloned()
            .collect();
        for user in gone {
            if self.uncontrolled.remove(&user) == Some(true) {
                out.push(Notice {
                    event: EventKind::IgnoresLimits,
                    severity: Severity::Success,
                    title: format!("{user}'s stream is under control again"),
                    message: format!(
                        "No stream of {user} plays above its limit any more (it ended, or the \
                         client now follows the limit)."
                    ),
                    cleared: true,
                    data: serde_json::json!({"user": user}),
                });
            }
        }
    }
}

/// A lasting condition after one observation: a start once it has lasted `after`, a clear
/// when it ends after a start.
fn lasting(
    c: &mut Lasting,
    error: Option<String>,
    now: Duration,
    after: Duration,
    event: EventKind,
) -> Option<Notice> {
    let (what, fix, back) = match event {
        EventKind::JellyfinUnreachable => (
            "Jellyfin cannot be read",
            "Limits are not being updated. Check that Jellyfin runs and that the API key is \
             still valid: `jellydemon check` says what is wrong.",
            "Jellyfin can be read again",
        ),
        EventKind::DownloaderUnreachable => (
            "the torrent client cannot be managed",
            "Its upload limit is not being updated; Jellyfin's limits still are. Check that it \
             runs and that its login is right: `jellydemon check` says what is wrong.",
            "the torrent client is managed again",
        ),
        EventKind::HistoryFailing => (
            "The history cannot be written",
            "Limits are managed as ever; what happens now is missing from `jellydemon stats` \
             and the page's history. Check the disk and the file's permissions (the log says \
             which file).",
            "The history is written again",
        ),
        _ => (
            "Policy writes are failing",
            "New limits are not being applied. `jellydemon check` and the log say why.",
            "Policy writes succeed again",
        ),
    };
    match error {
        Some(e) => {
            let since = *c.since.get_or_insert(now);
            c.error = Some(e.clone());
            let lasted = now.saturating_sub(since);
            if !c.notified && lasted >= after {
                c.notified = true;
                return Some(Notice {
                    event,
                    severity: Severity::Warning,
                    title: what.into(),
                    message: format!(
                        "{what} for {} min: {e}. {fix}",
                        lasted.as_secs().div_ceil(60)
                    ),
                    cleared: false,
                    data: serde_json::json!({"error": e, "for_seconds": lasted.as_secs()}),
                });
            }
            None
        }
        None => {
            let was = std::mem::take(c);
            was.notified.then(|| Notice {
                event,
                severity: Severity::Success,
                title: back.into(),
                message: format!("{back}."),
                cleared: true,
                data: serde_json::json!({}),
            })
        }
    }
}

fn limit(bps: i64) -> String {
    if bps <= 0 {
        "0 (the server's default)".into()
    } else {
        fmt_mbps(bps as u64)
    }
}

/// The notice of a limit an admin changed by hand, which becomes the user's original.
fn hand_change(user: &str, old: i64, new: i64) -> Notice {
    Notice {
        event: EventKind::LimitChangedByHand,
        severity: Severity::Info,
        title: format!("{user}'s limit was changed by hand"),
        message: format!(
            "An admin set {user}'s internet streaming limit to {} (it was {}). jellydemon \
             takes it as {user}'s own limit from now on and puts it back on stop.",
            limit(new),
            limit(old)
        ),
        cleared: false,
        data: serde_json::json!({"user": user, "old_bps": old, "new_bps": new}),
    }
}

#[cfg(test)]
mod tests;
