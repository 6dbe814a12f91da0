//! Plays: one row per item a session plays, from the plans the engine makes. Pure: the engine
//! hands [`Tracker::observe`] what each plan saw (its [`Seen`] sessions) and writes the rows
//! it returns.

use std::collections::HashMap;

/// Longer gaps between two plans (the daemon was stopped, Jellyfin was down) do not count
/// as play time.
const MAX_GAP_MS: u64 = 5 * 60 * 1000;

/// An open play's row is written again at most this often (and always when it ends).
const REWRITE_EVERY_MS: u64 = 60 * 1000;

/// A stream counts as at its source rate from this share of it (a direct stream's rate is
/// its source; a transcode's is below).
const AT_SOURCE_PERCENT: u64 = 95;

/// A session playing an item, as one plan saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// The session's id.
    pub session_id: String,
    /// The item's id ("" when unknown).
    pub item_id: String,
    /// The user's id.
    pub user_id: String,
    /// The user's name.
    pub user: String,
    /// Client and device ("Jellyfin Web on Firefox").
    pub client: String,
    /// From outside the house.
    pub remote: bool,
    /// "Movie", "Episode", "Audio", ... when Jellyfin says.
    pub kind: Option<String>,
    /// Its source bitrate.
    pub source_bps: Option<u64>,
    /// Its rate now.
    pub rate_bps: Option<u64>,
    /// Jellyfin transcodes it.
    pub transcoded: bool,
    /// The user's limit in force (0 = none).
    pub limit_bps: i64,
}

/// One played item.
#[derive(Debug, Clone, PartialEq)]
pub struct Play {
    /// Session, item and start: unique.
    pub key: String,
    /// The user's id.
    pub user_id: String,
    /// The user's name.
    pub user: String,
    /// Client and device.
    pub client: String,
    /// From outside the house.
    pub remote: bool,
    /// "Movie", "Episode", ...
    pub kind: Option<String>,
    /// Its source bitrate.
    pub source_bps: Option<u64>,
    /// Unix milliseconds.
    pub start_ms: u64,
    /// Unix milliseconds: when last seen playing.
    pub end_ms: u64,
    /// The user's limit when it started.
    pub start_limit_bps: Option<i64>,
    /// Σ rate × ms over the time its rate was known.
    pub rate_integral: f64,
    /// Milliseconds its rate was known.
    pub rated_ms: u64,
    /// Milliseconds it played at its source rate.
    pub at_source_ms: u64,
    /// Transcoded at some point.
    pub transcoded: bool,
    /// Pushes (`SetMaxStreamingBitrate`) it received.
    pub pushes: u32,
    written_ms: u64,
}

impl Play {
    /// Its mean rate over the time it was known.
    pub fn mean_rate_bps(&self) -> Option<u64> {
        (self.rated_ms > 0).then(|| (self.rate_integral / self.rated_ms as f64).round() as u64)
    }
}

/// The plays open now.
#[derive(Debug, Default)]
pub struct Tracker {
    open: HashMap<(String, String), Play>,
    last_ms: Option<u64>,
}

impl Tracker {
    /// What a plan at `now_ms` saw: the rows to write (plays that started, ended, or have
    /// not been written for a minute).
    pub fn observe(&mut self, now_ms: u64, seen: &[Seen]) -> Vec<Play> {
        let dt = self
            .last_ms
            .map_or(0, |l| now_ms.saturating_sub(l))
            .min(MAX_GAP_MS);
        self.last_ms = Some(now_ms);
        let mut out = Vec::new();
        let mut still = std::collections::HashSet::new();
        for s in seen {
            let k = (s.session_id.clone(), s.item_id.clone());
            still.insert(k.clone());
            let new = !self.open.contains_key(&k);
            let play = self.open.entry(k).or_insert_with(|| Play {
                key: format!("{}/{}/{now_ms}", s.session_id, s.item_id),
                user_id: s.user_id.clone(),
                user: s.user.clone(),
                client: s.client.clone(),
                remote: s.remote,
                kind: s.kind.clone(),
                source_bps: s.source_bps,
                start_ms: now_ms,
                end_ms: now_ms,
                start_limit_bps: Some(s.limit_bps),
                rate_integral: 0.0,
                rated_ms: 0,
                at_source_ms: 0,
                transcoded: false,
                pushes: 0,
                written_ms: 0,
            });
            if !new {
                play.end_ms = now_ms;
                if let Some(r) = s.rate_bps {
                    play.rate_integral += r as f64 * dt as f64;
                    play.rated_ms += dt;
                }
                let at_source = !s.transcoded
                    || matches!((s.rate_bps, s.source_bps), (Some(r), Some(src)) if r * 100 >= src * AT_SOURCE_PERCENT);
                if at_source {
                    play.at_source_ms += dt;
                }
            }
            play.transcoded |= s.transcoded;
            play.source_bps = play.source_bps.or(s.source_bps);
            if new || now_ms.saturating_sub(play.written_ms) >= REWRITE_EVERY_MS {
                play.written_ms = now_ms;
                out.push(play.clone());
            }
        }
        let ended: Vec<_> = self
            .open
            .keys()
            .filter(|k| !still.contains(*k))
            .cloned()
            .collect();
        for k in ended {
            if let Some(p) = self.open.remove(&k) {
                out.push(p);
            }
        }
        out
    }

    /// A push was sent to `session_id`'s stream.
    pub fn pushed(&mut self, session_id: &str) {
        for ((s, _), p) in self.open.iter_mut() {
            if s == session_id {
                p.pushes += 1;
            }
        }
    }

    /// Every open play, to write at the stop.
    pub fn open(&self) -> impl Iterator<Item = &Play> {
        self.open.values()
    }
}

/// What a plan saw of the sessions that play, for [`Tracker::observe`]: each session of
/// `sessions` with a user and an item, remote when the plan counted it from outside, at the
/// limit the plan gives its user (else the one Jellyfin holds).
pub fn seen(
    sessions: &[crate::core::media::Playback],
    users: &[crate::core::media::Account],
    plan: &crate::core::plan::Plan,
) -> Vec<Seen> {
    use crate::network::Location;
    sessions
        .iter()
        .filter(|s| !s.paused)
        .filter_map(|s| {
            let now = s.playing.as_ref()?;
            let user_id = s.user_id.as_ref()?;
            let view = plan.sessions.iter().find(|v| v.session_id == s.id)?;
            let limit = plan
                .decisions
                .iter()
                .find(|d| &d.user_id == user_id)
                .map(|d| d.target)
                .or_else(|| users.iter().find(|u| &u.id == user_id).map(|u| u.limit))
                .unwrap_or(0);
            Some(Seen {
                session_id: s.id.as_str().to_string(),
                item_id: now.item.to_string(),
                user_id: user_id.as_str().to_string(),
                user: s
                    .user_name
                    .as_ref()
                    .map_or_else(String::new, |n| n.as_str().to_string()),
                client: s.device.as_str().to_string(),
                remote: matches!(view.location, Location::Remote(_)),
                kind: now.kind.clone(),
                source_bps: now.source,
                rate_bps: now.rate.map(|r| r.bps()),
                transcoded: now.transcode.is_some(),
                limit_bps: limit,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(rate: u64, transcoded: bool) -> Seen {
        Seen {
            session_id: "s1".into(),
            item_id: "i1".into(),
            user_id: "u1".into(),
            user: "alice".into(),
            client: "Jellyfin Web".into(),
            remote: true,
            kind: Some("Movie".into()),
            source_bps: Some(20_000_000),
            rate_bps: Some(rate),
            transcoded,
            limit_bps: 8_000_000,
        }
    }

    #[test]
    fn a_play_runs_from_its_first_to_its_last_sight() {
        let mut t = Tracker::default();
        let first = t.observe(1_000, &[seen(20_000_000, false)]);
        assert_eq!(first.len(), 1, "written when it starts");
        assert_eq!(first[0].start_limit_bps, Some(8_000_000));
        assert!(t.observe(31_000, &[seen(20_000_000, false)]).is_empty());
        t.pushed("s1");
        // Transcoded at half its source for 30 s.
        assert!(t.observe(61_000, &[seen(10_000_000, true)]).len() == 1);
        let ended = t.observe(70_000, &[]);
        assert_eq!(ended.len(), 1);
        let p = &ended[0];
        assert_eq!((p.start_ms, p.end_ms), (1_000, 61_000));
        assert_eq!(p.at_source_ms, 30_000);
        assert_eq!(p.mean_rate_bps(), Some(15_000_000));
        assert!(p.transcoded);
        assert_eq!(p.pushes, 1);
        assert_eq!(t.open().count(), 0);
    }

    #[test]
    fn a_gap_does_not_count_as_play_time() {
        let mut t = Tracker::default();
        t.observe(0, &[seen(1, false)]);
        t.observe(3_600_000, &[seen(1, false)]);
        let p = t.observe(3_600_001, &[]).remove(0);
        assert_eq!(p.at_source_ms, MAX_GAP_MS);
    }
}
