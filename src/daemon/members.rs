//! The other Jellyfin and Emby servers' watch (`[[server]]` of kind `jellyfin` or `emby`).
//!
//! Each is read (`/Sessions` only) every `interval`, the shortest of theirs, and at once (at
//! most once a second) when its webhook arrives at `POST /hook/{server}` (`http.rs`). When
//! what plays on one of them changes (an item starts, stops, is paused or resumed), the engine
//! is told and plans again at once, reading every server; between changes the daemon's poll
//! does. A server that cannot be read changes nothing here: the engine's pass reports it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::adapters::jellyfin::Session;
use crate::adapters::jellyfin::fleet::Fleet;
use crate::config::Settings;

/// What plays on one server, as far as a plan cares: each session with an item, the item and
/// whether it is paused.
type Playing = BTreeSet<(String, String, bool)>;

fn playing(sessions: &[Session]) -> Playing {
    sessions
        .iter()
        .filter_map(|s| {
            let item = s.now_playing_item.as_ref()?;
            Some((
                s.id.as_str().to_string(),
                item.id.clone().unwrap_or_default(),
                s.is_paused(),
            ))
        })
        .collect()
}

/// The members' watch: its counter goes up on every change; `read_now` asks for a read ahead
/// of the next tick.
pub struct Watch {
    pub changed: watch::Receiver<u64>,
    pub read_now: Arc<Notify>,
    pub task: tokio::task::JoinHandle<()>,
}

/// The least time between two reads a webhook asks for: a burst of events costs one read.
const HOOK_GAP: Duration = Duration::from_secs(1);

/// Start watching the members; `None` when there is none.
pub fn spawn(fleet: Fleet, settings: &Settings, shutdown: CancellationToken) -> Option<Watch> {
    let every = settings
        .server
        .iter()
        .filter(|s| s.manages_users())
        .map(|s| s.interval)
        .min()?;
    let (tx, rx) = watch::channel(0u64);
    let read_now = Arc::new(Notify::new());
    let hook = read_now.clone();
    let task = tokio::spawn(async move {
        let mut last: Vec<Option<Playing>> = Vec::new();
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_read: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
                _ = hook.notified() => {
                    // Events that arrive meanwhile leave one permit: one more read at most.
                    if let Some(at) = last_read {
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep_until(at + HOOK_GAP) => {}
                        }
                    }
                }
            }
            last_read = Some(tokio::time::Instant::now());
            let read = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = fleet.member_sessions() => r,
            };
            let now: Vec<Option<Playing>> =
                read.iter().map(|r| r.as_deref().map(playing)).collect();
            let changed = last.len() == now.len()
                && last
                    .iter()
                    .zip(&now)
                    .any(|(before, after)| match (before, after) {
                        (Some(b), Some(a)) => a != b,
                        _ => false,
                    });
            // A server that failed this time keeps what it played before.
            last = if last.len() == now.len() {
                last.into_iter()
                    .zip(now)
                    .map(|(before, after)| after.or(before))
                    .collect()
            } else {
                now
            };
            if changed {
                tx.send_modify(|n| *n += 1);
            }
        }
    });
    Some(Watch {
        changed: rx,
        read_now,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, item: Option<&str>, paused: bool) -> Session {
        let mut v = serde_json::json!({ "Id": id, "PlayState": { "IsPaused": paused } });
        if let Some(item) = item {
            v["NowPlayingItem"] = serde_json::json!({ "Id": item });
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn what_plays_changes_with_a_start_a_stop_and_a_pause_only() {
        let idle = playing(&[session("a", None, false)]);
        let one = playing(&[session("a", Some("x"), false)]);
        let paused = playing(&[session("a", Some("x"), true)]);
        let other = playing(&[session("a", Some("y"), false)]);
        assert!(idle.is_empty());
        assert_ne!(idle, one);
        assert_ne!(one, paused);
        assert_ne!(one, other);
        assert_eq!(
            one,
            playing(&[session("a", Some("x"), false), session("b", None, false)])
        );
    }
}
