//! The owner's overrides of the running daemon: pause, a per-user pin, exemption or weight,
//! and a temporary reserve of the budget.
//!
//! Pure data and rules: an [`Action`] is checked and applied to [`Overrides`] at a wall-clock
//! time (unix milliseconds, so that an expiry survives a restart), and expired overrides are
//! dropped by [`Overrides::expire`]. The planner (`src/core/plan.rs`) reads them; the daemon's
//! engine owns them, saves them beside the state file (`overrides.json`,
//! `src/adapters/overrides.rs`) and answers the control API (`src/daemon/http.rs`).
//!
//! What each one means:
//! * **pause**: every original limit is put back (Jellyfin's and the torrent clients') and
//!   nothing is written until `resume` (or until the pause's end, when it has one);
//! * **pin**: the user's limit is this value, whatever the budget; its streams count against
//!   the budget like any other traffic;
//! * **exempt**: the user's original is put back and never touched while exempt;
//! * **weight**: the user's weight in `priority` and `demand` (instead of
//!   `[bandwidth.priority]`'s);
//! * **reserve**: this much of the budget is kept free (for the owner's own upload).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest an override may be set for.
pub const MAX_FOR: Duration = Duration::from_secs(366 * 24 * 3600);

/// The highest pin or reserve, Mbps (Jellyfin's limit is an `int32` of bits/s).
pub const MAX_MBPS: f64 = 2_000.0;

/// The highest weight.
pub const MAX_WEIGHT: f64 = 100.0;

/// The overrides in force.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// The daemon holds every original until resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Set<()>>,
    /// Per user (by normalized Jellyfin user id).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, Set<UserRule>>,
    /// Bits/s of the budget kept free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve: Option<Set<u64>>,
}

/// One override as it is shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct View {
    /// "paused", "40 Mbps reserved", "pinned at 10 Mbps", "exempt", "weight 2".
    pub what: String,
    /// The user it is for (per-user overrides).
    pub user: Option<String>,
    /// "page", "api" or "cli".
    pub by: String,
    /// When it was set, unix seconds.
    pub at_unix: u64,
    /// When it ends by itself, unix seconds.
    pub until_unix: Option<u64>,
}

/// One override and who set it when, until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Set<T> {
    /// What is overridden.
    pub value: T,
    /// Who set it: "page", "api" or "cli".
    pub by: String,
    /// When, unix milliseconds.
    pub at_ms: u64,
    /// When it ends by itself, unix milliseconds; `None`: until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// The user's name when it was set (per-user overrides), for people reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What is overridden for one user.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum UserRule {
    /// A fixed limit, bits/s.
    Pin {
        /// The limit.
        bps: u64,
    },
    /// Never touched; the original put back.
    Exempt,
    /// This weight instead of the configured one.
    Weight {
        /// The weight (1 = everyone's default).
        weight: f64,
    },
}

impl UserRule {
    /// "pinned at 10 Mbps", "exempt", "weight 2".
    pub fn describe(&self) -> String {
        match self {
            UserRule::Pin { bps } => format!("pinned at {}", crate::core::rate::fmt_mbps(*bps)),
            UserRule::Exempt => "exempt".into(),
            UserRule::Weight { weight } => format!("weight {weight}"),
        }
    }
}

/// A change the owner asks for. The JSON form is the control API's body, e.g.
/// `{"action": "pin", "user": "alice", "mbps": 10, "for": "2h"}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", tag = "action", deny_unknown_fields)]
pub enum Action {
    /// Put every original back and hold them.
    Pause {
        /// For how long ("2h"); none: until resumed.
        #[serde(default, rename = "for", with = "humantime_serde")]
        for_: Option<Duration>,
    },
    /// End a pause.
    Resume,
    /// A fixed limit for one user.
    Pin {
        /// The user's name (any case) or id.
        user: String,
        /// The limit, Mbps.
        mbps: f64,
        /// For how long; none: until cleared.
        #[serde(default, rename = "for", with = "humantime_serde")]
        for_: Option<Duration>,
    },
    /// Leave one user alone (its original put back).
    Exempt {
        /// The user's name (any case) or id.
        user: String,
        /// For how long; none: until cleared.
        #[serde(default, rename = "for", with = "humantime_serde")]
        for_: Option<Duration>,
    },
    /// A weight for one user.
    Weight {
        /// The user's name (any case) or id.
        user: String,
        /// The weight, above 0, at most [`MAX_WEIGHT`].
        weight: f64,
        /// For how long; none: until cleared.
        #[serde(default, rename = "for", with = "humantime_serde")]
        for_: Option<Duration>,
    },
    /// Remove one user's override.
    Clear {
        /// The user's name (any case) or id.
        user: String,
    },
    /// Keep part of the budget free; 0 removes the reserve.
    Reserve {
        /// Mbps.
        mbps: f64,
        /// For how long; none: until cleared.
        #[serde(default, rename = "for", with = "humantime_serde")]
        for_: Option<Duration>,
    },
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No Jellyfin user has that name or id.
    #[error("no Jellyfin user is named \"{0}\"")]
    UnknownUser(String),
    /// A value out of range.
    #[error("{0}")]
    Invalid(String),
}

/// A user as the engine knows it, for resolving an action's `user`.
pub struct Known<'a> {
    /// Normalized id.
    pub id: &'a str,
    /// Display name.
    pub name: &'a str,
}

impl Action {
    /// The user the action names, if any.
    pub fn user(&self) -> Option<&str> {
        match self {
            Action::Pin { user, .. }
            | Action::Exempt { user, .. }
            | Action::Weight { user, .. }
            | Action::Clear { user } => Some(user),
            _ => None,
        }
    }

    /// One line for the log and the audit: "pin alice at 10 Mbps for 2h".
    pub fn describe(&self) -> String {
        let for_ = |d: &Option<Duration>| {
            d.map(|d| format!(" for {}", humantime::format_duration(d)))
                .unwrap_or_default()
        };
        match self {
            Action::Pause { for_: d } => format!("pause{}", for_(d)),
            Action::Resume => "resume".into(),
            Action::Pin {
                user,
                mbps,
                for_: d,
            } => format!("pin {user} at {mbps} Mbps{}", for_(d)),
            Action::Exempt { user, for_: d } => format!("exempt {user}{}", for_(d)),
            Action::Weight {
                user,
                weight,
                for_: d,
            } => format!("weight {user} {weight}{}", for_(d)),
            Action::Clear { user } => format!("clear {user}"),
            Action::Reserve { mbps, .. } if *mbps == 0.0 => "reserve cleared".into(),
            Action::Reserve { mbps, for_: d } => format!("reserve {mbps} Mbps{}", for_(d)),
        }
    }
}

/// The id and name of the user `wanted` names: an id in any spelling, else a name in any
/// case.
pub fn resolve<'a>(wanted: &str, users: &[Known<'a>]) -> Result<(&'a str, &'a str), ControlError> {
    let id = crate::ids::UserId::new(wanted);
    users
        .iter()
        .find(|u| u.id == id.as_str())
        .or_else(|| {
            users
                .iter()
                .find(|u| u.name.eq_ignore_ascii_case(wanted.trim()))
        })
        .map(|u| (u.id, u.name))
        .ok_or_else(|| ControlError::UnknownUser(wanted.trim().to_string()))
}

impl Overrides {
    /// No override (the planner's input for commands that run none).
    pub const NONE: Overrides = Overrides {
        pause: None,
        users: BTreeMap::new(),
        reserve: None,
    };

    /// Whether the daemon is paused.
    pub fn paused(&self) -> bool {
        self.pause.is_some()
    }

    /// The rule for one user (by normalized id).
    pub fn user(&self, id: &str) -> Option<UserRule> {
        self.users.get(id).map(|s| s.value)
    }

    /// Bits/s of the budget kept free.
    pub fn reserve_bps(&self) -> u64 {
        self.reserve.as_ref().map_or(0, |r| r.value)
    }

    /// Each override as the page, `/api/state`, `overrides` and `report` show it: the pause,
    /// the reserve, then per user (names as the daemon shows them: aliases when anonymizing).
    pub fn views(&self) -> Vec<View> {
        let view =
            |what: String, user: Option<String>, by: &str, at_ms: u64, until_ms: Option<u64>| {
                View {
                    what,
                    user,
                    by: by.to_string(),
                    at_unix: at_ms / 1000,
                    until_unix: until_ms.map(|u| u.div_ceil(1000)),
                }
            };
        let mut views = Vec::new();
        if let Some(p) = &self.pause {
            views.push(view("paused".into(), None, &p.by, p.at_ms, p.until_ms));
        }
        if let Some(r) = &self.reserve {
            let what = format!("{} reserved", crate::core::rate::fmt_mbps(r.value));
            views.push(view(what, None, &r.by, r.at_ms, r.until_ms));
        }
        for s in self.users.values() {
            let user = s
                .name
                .as_deref()
                .map(|n| crate::ids::UserName::new(n).to_string());
            views.push(view(s.value.describe(), user, &s.by, s.at_ms, s.until_ms));
        }
        views
    }

    /// Nothing overridden.
    pub fn is_empty(&self) -> bool {
        self.pause.is_none() && self.users.is_empty() && self.reserve.is_none()
    }

    /// Apply `action`, set by `by` at `now_ms`, with `users` to resolve names. Returns what
    /// changed, in one line.
    pub fn apply(
        &mut self,
        action: &Action,
        by: &str,
        now_ms: u64,
        users: &[Known],
    ) -> Result<String, ControlError> {
        match action {
            Action::Pause { for_ } => {
                self.pause = Some(stamp((), by, now_ms, for_, None)?);
            }
            Action::Resume => {
                // Idempotent, like a switch turned off twice.
                if self.pause.take().is_none() {
                    return Ok("resume (it was not paused)".into());
                }
            }
            Action::Pin { user, mbps, for_ } => {
                let bps = mbps_in_range(*mbps, "a pin")?;
                if bps == 0 {
                    return Err(ControlError::Invalid(
                        "a pin is above 0 Mbps (0 would be Jellyfin's server default)".into(),
                    ));
                }
                let (id, name) = resolve(user, users)?;
                let s = stamp(UserRule::Pin { bps }, by, now_ms, for_, Some(name))?;
                self.users.insert(id.to_string(), s);
            }
            Action::Exempt { user, for_ } => {
                let (id, name) = resolve(user, users)?;
                let s = stamp(UserRule::Exempt, by, now_ms, for_, Some(name))?;
                self.users.insert(id.to_string(), s);
            }
            Action::Weight { user, weight, for_ } => {
                if !weight.is_finite() || *weight <= 0.0 || *weight > MAX_WEIGHT {
                    return Err(ControlError::Invalid(format!(
                        "a weight is above 0 and at most {MAX_WEIGHT}"
                    )));
                }
                let (id, name) = resolve(user, users)?;
                let s = stamp(
                    UserRule::Weight { weight: *weight },
                    by,
                    now_ms,
                    for_,
                    Some(name),
                )?;
                self.users.insert(id.to_string(), s);
            }
            Action::Clear { user } => {
                // A user no longer in Jellyfin can still be cleared by the name it was set
                // under.
                let id = match resolve(user, users) {
                    Ok((id, _)) => id.to_string(),
                    Err(e) => self
                        .users
                        .iter()
                        .find(|(id, s)| {
                            **id == crate::ids::UserId::new(user).as_str()
                                || s.name
                                    .as_deref()
                                    .is_some_and(|n| n.eq_ignore_ascii_case(user.trim()))
                        })
                        .map(|(id, _)| id.clone())
                        .ok_or(e)?,
                };
                if self.users.remove(&id).is_none() {
                    return Err(ControlError::Invalid(format!(
                        "\"{}\" has no override",
                        user.trim()
                    )));
                }
            }
            Action::Reserve { mbps, for_ } => {
                let bps = mbps_in_range(*mbps, "a reserve")?;
                self.reserve = if bps == 0 {
                    None
                } else {
                    Some(stamp(bps, by, now_ms, for_, None)?)
                };
            }
        }
        Ok(action.describe())
    }

    /// Drop what has ended by `now_ms`; returns what ended, one line each.
    pub fn expire(&mut self, now_ms: u64) -> Vec<String> {
        let ended = |until: Option<u64>| until.is_some_and(|u| u <= now_ms);
        let mut out = Vec::new();
        if self.pause.as_ref().is_some_and(|p| ended(p.until_ms)) {
            self.pause = None;
            out.push("the pause ended".to_string());
        }
        if self.reserve.as_ref().is_some_and(|r| ended(r.until_ms)) {
            self.reserve = None;
            out.push("the reserve ended".to_string());
        }
        self.users.retain(|_, s| {
            let keep = !ended(s.until_ms);
            if !keep {
                out.push(format!(
                    "{} of {} ended",
                    s.value.describe(),
                    s.name.as_deref().unwrap_or("a user")
                ));
            }
            keep
        });
        out
    }

    /// The earliest end of an override, unix milliseconds.
    pub fn next_expiry(&self) -> Option<u64> {
        let pause = self.pause.as_ref().and_then(|p| p.until_ms);
        let reserve = self.reserve.as_ref().and_then(|r| r.until_ms);
        let users = self.users.values().filter_map(|s| s.until_ms);
        pause.into_iter().chain(reserve).chain(users).min()
    }
}

/// `value` set by `by` at `now_ms` for `for_`.
fn stamp<T>(
    value: T,
    by: &str,
    now_ms: u64,
    for_: &Option<Duration>,
    name: Option<&str>,
) -> Result<Set<T>, ControlError> {
    let until_ms = match for_ {
        None => None,
        Some(d) if d.is_zero() => {
            return Err(ControlError::Invalid("a duration must be above 0".into()));
        }
        Some(d) if *d > MAX_FOR => {
            return Err(ControlError::Invalid(format!(
                "a duration is at most {}",
                humantime::format_duration(MAX_FOR)
            )));
        }
        Some(d) => Some(now_ms + d.as_millis() as u64),
    };
    Ok(Set {
        value,
        by: by.to_string(),
        at_ms: now_ms,
        until_ms,
        name: name.map(str::to_string),
    })
}

/// Mbps to bits/s within `0..=MAX_MBPS`.
fn mbps_in_range(mbps: f64, what: &str) -> Result<u64, ControlError> {
    if !mbps.is_finite() || !(0.0..=MAX_MBPS).contains(&mbps) {
        return Err(ControlError::Invalid(format!(
            "{what} is between 0 and {MAX_MBPS} Mbps"
        )));
    }
    Ok(crate::config::mbps_to_bps(mbps))
}

#[cfg(test)]
mod tests;
