//! Prometheus metrics (`prometheus-client`, the official Rust client), served at `/metrics` in
//! the OpenMetrics text format. The counters here are the single source of truth: `/api/state`
//! reads them too.
//!
//! Per-user series carry the user's name as label, as [`crate::ids::UserName`] shows it (an
//! alias when anonymizing).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::core::plan::{Direction, Plan, Role};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UserLabels {
    pub user: String,
    /// "active" or "idle".
    pub role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// PlaybackStart, PlaybackStop, PlaybackProgress, other, or "invalid".
    pub r#type: String,
    /// accepted, ignored, rejected, unauthorized, dropped.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// down or up.
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyLabels {
    /// The target's name (never its URL).
    pub target: String,
    /// delivered, failed or dropped.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DownloaderLabels {
    /// The downloader's name.
    pub downloader: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// The server's name (`[[server]] name`).
    pub server: String,
    /// jellyfin or emby.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// ok or error.
    pub result: String,
}

/// Every metric the daemon exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub budget_bps: Gauge,
    pub held_bps: Gauge,
    pub streaming_bps: Gauge,
    pub unmanaged_bps: Gauge,
    pub claimants: Gauge,
    pub overloaded: Gauge,
    pub user_limit_bps: Family<UserLabels, Gauge>,
    pub user_stream_rate_bps: Family<UserLabels, Gauge>,
    pub policy_writes: Counter,
    pub policy_write_failures: Counter,
    pub pushes: Family<DirectionLabels, Counter>,
    pub item_starts: Counter,
    pub uncontrolled_streams: Gauge,
    pub video_transcodes: Gauge,
    pub transcode_capacity: Gauge,
    pub transcodes_beyond_capacity: Gauge,
    pub kept_direct_users: Gauge,
    pub pending_writes: Gauge,
    pub webhook_events: Family<EventLabels, Counter>,
    pub polls: Family<ResultLabels, Counter>,
    pub poll_duration_seconds: Histogram,
    pub last_successful_poll_timestamp: Gauge<f64, AtomicU64>,
    pub recomputes: Counter,
    pub measured_upload_bps: Gauge,
    pub other_servers_upload_bps: Gauge,
    pub jellyfin_upload_estimate_bps: Gauge,
    pub other_upload_bps: Gauge,
    pub meter_up: Gauge,
    pub meter_reads: Family<ResultLabels, Counter>,
    pub budget_changes: Counter,
    pub notifications: Family<NotifyLabels, Counter>,
    pub downloader_limit_bps: Family<DownloaderLabels, Gauge>,
    pub downloader_upload_bps: Family<DownloaderLabels, Gauge>,
    pub downloader_target_bps: Family<DownloaderLabels, Gauge>,
    pub downloader_up: Family<DownloaderLabels, Gauge>,
    pub media_server_up: Family<ServerLabels, Gauge>,
    pub media_server_users: Family<ServerLabels, Gauge>,
    pub media_server_playing: Family<ServerLabels, Gauge>,
    pub downloaders_limit_bps: Gauge,
    pub downloader_writes: Counter,
    pub downloader_write_failures: Counter,
    /// History rows by result: written, failed (the database refused the batch), dropped
    /// (the queue was full).
    pub history_rows: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("jellydemon"),
            budget_bps: Gauge::default(),
            held_bps: Gauge::default(),
            streaming_bps: Gauge::default(),
            unmanaged_bps: Gauge::default(),
            claimants: Gauge::default(),
            overloaded: Gauge::default(),
            user_limit_bps: Family::default(),
            user_stream_rate_bps: Family::default(),
            policy_writes: Counter::default(),
            policy_write_failures: Counter::default(),
            pushes: Family::default(),
            item_starts: Counter::default(),
            uncontrolled_streams: Gauge::default(),
            video_transcodes: Gauge::default(),
            transcode_capacity: Gauge::default(),
            transcodes_beyond_capacity: Gauge::default(),
            kept_direct_users: Gauge::default(),
            pending_writes: Gauge::default(),
            webhook_events: Family::default(),
            polls: Family::default(),
            poll_duration_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            last_successful_poll_timestamp: Gauge::default(),
            recomputes: Counter::default(),
            measured_upload_bps: Gauge::default(),
            other_servers_upload_bps: Gauge::default(),
            jellyfin_upload_estimate_bps: Gauge::default(),
            other_upload_bps: Gauge::default(),
            meter_up: Gauge::default(),
            meter_reads: Family::default(),
            budget_changes: Counter::default(),
            notifications: Family::default(),
            downloader_limit_bps: Family::default(),
            downloader_upload_bps: Family::default(),
            downloader_target_bps: Family::default(),
            downloader_up: Family::default(),
            media_server_up: Family::default(),
            media_server_users: Family::default(),
            media_server_playing: Family::default(),
            downloaders_limit_bps: Gauge::default(),
            downloader_writes: Counter::default(),
            downloader_write_failures: Counter::default(),
            history_rows: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "budget_bps",
            "Upload budget shared among remote streamers (total - reserved, less the rest of the house's upload with a meter), bits/s",
            m.budget_bps.clone(),
        );
        r.register(
            "held_bps",
            "What the remote streams carry after the last plan's pushes, bits/s",
            m.held_bps.clone(),
        );
        r.register(
            "streaming_bps",
            "What the remote streams carried when the last plan was made, bits/s",
            m.streaming_bps.clone(),
        );
        r.register(
            "unmanaged_bps",
            "Rate of remote streams of users jellydemon does not manage, bits/s",
            m.unmanaged_bps.clone(),
        );
        r.register(
            "claimants",
            "Remote users streaming now",
            m.claimants.clone(),
        );
        r.register(
            "overloaded",
            "1 when the floors alone exceed the budget",
            m.overloaded.clone(),
        );
        r.register(
            "video_transcodes",
            "Video transcodes on the server under the last plan's limits, with [transcoding] capacity",
            m.video_transcodes.clone(),
        );
        r.register(
            "transcode_capacity",
            "Video transcodes the server runs at once ([transcoding] capacity; 0 when unset)",
            m.transcode_capacity.clone(),
        );
        r.register(
            "transcodes_beyond_capacity",
            "1 when the last plan's limits force more video transcodes than the capacity",
            m.transcodes_beyond_capacity.clone(),
        );
        r.register(
            "kept_direct_users",
            "Users given their whole demand so their streams play direct within the capacity",
            m.kept_direct_users.clone(),
        );
        r.register(
            "user_limit_bps",
            "Each managed user's limit, bits/s",
            m.user_limit_bps.clone(),
        );
        r.register(
            "user_stream_rate_bps",
            "Each active user's current remote stream rate, bits/s",
            m.user_stream_rate_bps.clone(),
        );
        r.register(
            "policy_writes",
            "Policy writes sent to Jellyfin",
            m.policy_writes.clone(),
        );
        r.register(
            "policy_write_failures",
            "Policy writes that failed (retried)",
            m.policy_write_failures.clone(),
        );
        r.register(
            "pushes",
            "SetMaxStreamingBitrate commands sent, by direction",
            m.pushes.clone(),
        );
        r.register(
            "item_starts",
            "Remote items seen starting (pushes per item start = pushes / item starts)",
            m.item_starts.clone(),
        );
        r.register(
            "uncontrolled_streams",
            "Remote streams whose client ignores limits, counted at their real rate",
            m.uncontrolled_streams.clone(),
        );
        r.register(
            "pending_writes",
            "Writes waiting, including ones backing off",
            m.pending_writes.clone(),
        );
        r.register(
            "webhook_events",
            "Requests to /hook by notification type and result",
            m.webhook_events.clone(),
        );
        r.register(
            "polls",
            "Reads of /Sessions (and users, configuration) by result",
            m.polls.clone(),
        );
        r.register(
            "poll_duration_seconds",
            "How long a read of Jellyfin took",
            m.poll_duration_seconds.clone(),
        );
        r.register(
            "last_successful_poll_timestamp_seconds",
            "Unix time of the last successful read of Jellyfin",
            m.last_successful_poll_timestamp.clone(),
        );
        r.register("recomputes", "Plans computed", m.recomputes.clone());
        r.register(
            "measured_upload_bps",
            "The WAN's upload as the meter last measured it ([bandwidth.meter]), bits/s",
            m.measured_upload_bps.clone(),
        );
        r.register(
            "other_servers_upload_bps",
            "What the other media servers ([[server]]) stream outside the house, bits/s",
            m.other_servers_upload_bps.clone(),
        );
        r.register(
            "jellyfin_upload_estimate_bps",
            "Jellyfin's remote streams as estimated when measured (rates x overhead), bits/s",
            m.jellyfin_upload_estimate_bps.clone(),
        );
        r.register(
            "other_upload_bps",
            "The rest of the house's upload (measured - Jellyfin, smoothed), bits/s",
            m.other_upload_bps.clone(),
        );
        r.register(
            "meter_up",
            "1 while the meter answers; 0 when it failed and the static budget applies",
            m.meter_up.clone(),
        );
        r.register(
            "meter_reads",
            "Reads of the meter by result",
            m.meter_reads.clone(),
        );
        r.register(
            "notifications",
            "Notifications per target by result (delivered, failed after 3 tries, dropped)",
            m.notifications.clone(),
        );
        r.register(
            "budget_changes",
            "Changes of the budget (the meter, a schedule)",
            m.budget_changes.clone(),
        );
        r.register(
            "downloaders_limit_bps",
            "The torrent clients' combined upload limit of the last plan (what the remote streams leave), bits/s",
            m.downloaders_limit_bps.clone(),
        );
        r.register(
            "downloader_limit_bps",
            "A torrent client's upload limit in force (0: unlimited), bits/s",
            m.downloader_limit_bps.clone(),
        );
        r.register(
            "downloader_target_bps",
            "A torrent client's part of the combined limit, bits/s",
            m.downloader_target_bps.clone(),
        );
        r.register(
            "downloader_upload_bps",
            "What a torrent client uploads, bits/s",
            m.downloader_upload_bps.clone(),
        );
        r.register(
            "history_rows",
            "Rows for the history database by result (written, failed, dropped)",
            m.history_rows.clone(),
        );
        r.register(
            "downloader_up",
            "1 while a torrent client answers",
            m.downloader_up.clone(),
        );
        r.register(
            "media_server_up",
            "Whether another Jellyfin or Emby server ([[server]]) answered its last read (1) or not (0)",
            m.media_server_up.clone(),
        );
        r.register(
            "media_server_users",
            "The users of another Jellyfin or Emby server, as its last good read found them",
            m.media_server_users.clone(),
        );
        r.register(
            "media_server_playing",
            "The sessions that play something on another Jellyfin or Emby server, as its last good read found them",
            m.media_server_playing.clone(),
        );
        r.register(
            "downloader_writes",
            "Upload limit writes to the torrent clients",
            m.downloader_writes.clone(),
        );
        r.register(
            "downloader_write_failures",
            "Failed upload limit writes to the torrent clients",
            m.downloader_write_failures.clone(),
        );
        m
    }

    /// A torrent client's last read: whether it answers, its limit in force (`None`:
    /// unlimited), what it uploads and its part of the combined limit, bits/s.
    pub fn record_downloader(
        &self,
        name: &str,
        up: bool,
        limit: Option<u64>,
        upload: Option<u64>,
        target: Option<u64>,
    ) {
        let l = DownloaderLabels {
            downloader: name.to_string(),
        };
        self.downloader_up.get_or_create(&l).set(i64::from(up));
        self.downloader_limit_bps
            .get_or_create(&l)
            .set(limit.unwrap_or(0) as i64);
        self.downloader_upload_bps
            .get_or_create(&l)
            .set(upload.unwrap_or(0) as i64);
        self.downloader_target_bps
            .get_or_create(&l)
            .set(target.unwrap_or(0) as i64);
    }

    /// Another Jellyfin or Emby server (`server`, of `kind`) as a pass just read it: whether
    /// it answered, its users and what they play.
    pub fn record_media_server(
        &self,
        server: &str,
        kind: &str,
        up: bool,
        users: usize,
        playing: usize,
    ) {
        let l = ServerLabels {
            server: server.to_string(),
            kind: kind.to_string(),
        };
        self.media_server_up.get_or_create(&l).set(i64::from(up));
        self.media_server_users.get_or_create(&l).set(users as i64);
        self.media_server_playing
            .get_or_create(&l)
            .set(playing as i64);
    }

    /// Count one notification at `target` with `result`.
    pub fn notification(&self, target: &str, result: &str) {
        self.notifications
            .get_or_create(&NotifyLabels {
                target: target.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Count one `/hook` request.
    pub fn event(&self, kind: &str, result: &str) {
        self.webhook_events
            .get_or_create(&EventLabels {
                r#type: kind.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// The count of `/hook` requests of `kind` with `result`.
    pub fn events(&self, kind: &str, result: &str) -> u64 {
        self.webhook_events
            .get_or_create(&EventLabels {
                r#type: kind.to_string(),
                result: result.to_string(),
            })
            .get()
    }

    /// Count one push sent.
    pub fn push(&self, direction: Direction) {
        self.pushes
            .get_or_create(&DirectionLabels {
                direction: direction.label().to_string(),
            })
            .inc();
    }

    /// Pushes sent in `direction` so far.
    pub fn pushes_sent(&self, direction: Direction) -> u64 {
        self.pushes
            .get_or_create(&DirectionLabels {
                direction: direction.label().to_string(),
            })
            .get()
    }

    /// Reads of Jellyfin so far, successful or not. (Each `get_or_create` guard is dropped
    /// before the next: holding one while creating another label set would deadlock.)
    pub fn poll_count(&self) -> u64 {
        let ok = self
            .polls
            .get_or_create(&ResultLabels {
                result: "ok".into(),
            })
            .get();
        let err = self
            .polls
            .get_or_create(&ResultLabels {
                result: "error".into(),
            })
            .get();
        ok + err
    }

    /// Record a plan's figures. Per-user series are replaced as a whole, so users who left
    /// disappear.
    pub fn record_plan(&self, plan: &Plan) {
        self.budget_bps.set(plan.budget as i64);
        self.held_bps.set(plan.held as i64);
        self.streaming_bps.set(plan.streaming as i64);
        self.unmanaged_bps.set(plan.unmanaged_bps as i64);
        self.overloaded.set(plan.overloaded as i64);
        self.claimants.set(plan.claimants() as i64);
        self.uncontrolled_streams.set(
            plan.streams()
                .filter(|(_, s)| s.uncontrolled.is_some())
                .count() as i64,
        );
        let t = plan.transcodes;
        self.video_transcodes
            .set(t.map_or(0, |t| i64::from(t.count.total())));
        self.transcode_capacity
            .set(t.map_or(0, |t| i64::from(t.capacity.hd)));
        self.transcodes_beyond_capacity
            .set(t.is_some_and(|t| t.beyond) as i64);
        self.kept_direct_users
            .set(t.map_or(0, |t| t.kept_direct as i64));
        self.user_limit_bps.clear();
        self.user_stream_rate_bps.clear();
        for d in plan.decisions.iter().filter(|d| d.role != Role::Release) {
            let labels = UserLabels {
                user: d.user_name.to_string(),
                role: d.role.label().to_string(),
            };
            self.user_limit_bps.get_or_create(&labels).set(d.target);
            if d.role.is_active() {
                self.user_stream_rate_bps
                    .get_or_create(&labels)
                    .set(d.stream_rate as i64);
            }
        }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grafana_dashboard_uses_only_metrics_that_exist() {
        let dash: serde_json::Value =
            serde_json::from_str(include_str!("../docs/grafana-dashboard.json")).unwrap();
        let m = Metrics::new();
        // Label families are only exported once they have a series.
        let u = UserLabels {
            user: "u".into(),
            role: "active".into(),
        };
        m.user_limit_bps.get_or_create(&u).set(1);
        m.user_stream_rate_bps.get_or_create(&u).set(1);
        m.event("PlaybackStart", "accepted");
        m.push(Direction::Down);
        m.polls
            .get_or_create(&ResultLabels {
                result: "ok".into(),
            })
            .inc();
        m.notification("phone", "delivered");
        let exported = m.encode();
        let mut used = 0;
        for panel in dash["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                    if let Some(name) = word.strip_prefix("jellydemon_") {
                        // Counters are exported with _total, histograms with _bucket and friends.
                        let base = name.trim_end_matches("_total").trim_end_matches("_bucket");
                        assert!(
                            exported.contains(&format!("# HELP jellydemon_{base} ")),
                            "dashboard uses {word}, which is not exported"
                        );
                        used += 1;
                    }
                }
            }
        }
        assert!(used >= 15, "{used}");
    }
}
