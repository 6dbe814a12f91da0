//! What the daemon has done, as the engine records it and `/healthz`, `/api/state`,
//! `/api/history` and the status page show it. [`Status`] is a handle with methods; nobody
//! outside locks its insides. [`Status::view`] is the typed, serializable state behind
//! `/api/state`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

use crate::adapters::budget::feed::BudgetState;
use crate::clock::unix_seconds;
use crate::config::Settings;
use crate::core::plan::{Direction, Plan};
use crate::core::rate::fmt_mbps;
use crate::metrics::{Metrics, ResultLabels};
use crate::network::Location;
use crate::sync::lock;

/// Samples kept: at one per recompute and a poll every 5 minutes at least, several hours.
const HISTORY: usize = 2000;
/// Recent decisions kept.
const RECENT: usize = 20;

/// One point of the in-memory history behind the status page's chart.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Unix seconds.
    pub t: u64,
    pub budget: u64,
    /// What remote streams carry after the plan's pushes, bits/s.
    pub held: u64,
    /// What remote streams carried when the plan was made (managed and unmanaged), bits/s.
    pub remote_rate: u64,
    pub claimants: usize,
    /// The WAN's upload as the meter last measured it, bits/s (with a meter).
    pub measured: Option<u64>,
    /// The rest of the house's upload, bits/s (with a meter).
    pub other: Option<u64>,
    /// The torrent clients' combined limit in this plan, bits/s (with `[[downloader]]`).
    pub downloaders_limit: Option<u64>,
    /// What they uploaded when last read, bits/s (with `[[downloader]]`).
    pub downloaders_rate: Option<u64>,
}

/// A recent decision, for the status page.
#[derive(Debug, Clone, Serialize)]
pub struct Recent {
    pub t: u64,
    pub trigger: &'static str,
    pub changes: usize,
    /// Who got what and why (names as aliases when anonymizing).
    pub summary: String,
}

/// The last plan and when and why it was made.
struct LastPlan {
    at: SystemTime,
    /// "webhook", "poll", "startup" or "wake-up" (a push cooldown or the grace after a stop
    /// ended).
    trigger: &'static str,
    /// The plan was made from a model patched by webhooks because `/Sessions` failed.
    from_stale_model: bool,
    plan: Plan,
}

#[derive(Default)]
struct Poll {
    last_ok: Option<Instant>,
    last_ok_at: Option<SystemTime>,
    last_error: Option<String>,
    consecutive_failures: u32,
}

#[derive(Default)]
struct Inner {
    poll: Poll,
    last_plan: Option<LastPlan>,
    history: VecDeque<Sample>,
    recent: VecDeque<Recent>,
}

/// See the module documentation. Cheap to share (`Arc`).
pub struct Status {
    started: Instant,
    engine_alive: AtomicBool,
    metrics: Arc<Metrics>,
    /// The budget in force and what it is made of (`src/adapters/budget/feed.rs`).
    budget: tokio::sync::watch::Receiver<BudgetState>,
    /// Notification targets, conditions in force, last notifications.
    notifier: crate::adapters::notify::Notifier,
    inner: Mutex<Inner>,
    /// The torrent clients as their task last saw them (`src/daemon/seeders.rs`).
    downloaders: Arc<Mutex<Vec<super::seeders::DownloaderView>>>,
    /// The managed media servers' total limits as their task last saw them
    /// (`src/daemon/servers.rs`).
    server_limits: Arc<Mutex<Vec<super::servers::ServerLimitView>>>,
    /// The owner's overrides, as the engine last set them.
    overrides: Mutex<Vec<crate::core::control::View>>,
    /// The other Jellyfin and Emby servers as the last pass read them.
    media_servers: Mutex<Vec<crate::adapters::jellyfin::fleet::MemberView>>,
}

/// How healthy the daemon is, for `/healthz`.
pub struct Health {
    pub healthy: bool,
    pub engine_alive: bool,
    /// Since the last successful read of Jellyfin.
    pub age: Option<Duration>,
    pub last_error: Option<String>,
}

impl Status {
    pub fn new(
        metrics: Arc<Metrics>,
        budget: tokio::sync::watch::Receiver<BudgetState>,
        notifier: crate::adapters::notify::Notifier,
    ) -> Status {
        Status {
            started: Instant::now(),
            engine_alive: AtomicBool::new(false),
            metrics,
            budget,
            notifier,
            inner: Mutex::new(Inner::default()),
            downloaders: Arc::default(),
            server_limits: Arc::default(),
            overrides: Mutex::default(),
            media_servers: Mutex::default(),
        }
    }

    /// The overrides in force now (the engine calls this after every change).
    pub fn set_overrides(&self, o: &crate::core::control::Overrides) {
        *lock(&self.overrides) = o.views();
    }

    /// The other Jellyfin and Emby servers as a pass just read them (the engine calls this
    /// after every read).
    pub fn set_media_servers(&self, members: &[crate::adapters::jellyfin::fleet::MemberView]) {
        for m in members {
            self.metrics
                .record_media_server(&m.name, m.kind, m.up, m.users, m.playing);
        }
        *lock(&self.media_servers) = members.to_vec();
    }

    /// Where the torrent clients' task puts what it sees.
    pub fn downloaders(&self) -> Arc<Mutex<Vec<super::seeders::DownloaderView>>> {
        self.downloaders.clone()
    }

    /// Where the media servers' task puts what it sees.
    pub fn server_limits(&self) -> Arc<Mutex<Vec<super::servers::ServerLimitView>>> {
        self.server_limits.clone()
    }

    /// The engine task started or stopped.
    pub fn engine_running(&self, running: bool) {
        self.engine_alive.store(running, Ordering::SeqCst);
    }

    /// A read of Jellyfin finished after `took`: its outcome (an error as text).
    pub fn record_poll(&self, took: Duration, outcome: Result<(), String>) {
        let m = &self.metrics;
        m.poll_duration_seconds.observe(took.as_secs_f64());
        let result = if outcome.is_ok() { "ok" } else { "error" };
        m.polls
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
        let mut inner = lock(&self.inner);
        let p = &mut inner.poll;
        match outcome {
            Ok(()) => {
                m.last_successful_poll_timestamp.set(
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0),
                );
                p.last_ok = Some(Instant::now());
                p.last_ok_at = Some(SystemTime::now());
                p.last_error = None;
                p.consecutive_failures = 0;
            }
            Err(e) => {
                p.last_error = Some(e);
                p.consecutive_failures += 1;
            }
        }
    }

    /// Reads of Jellyfin that failed in a row.
    pub fn consecutive_failures(&self) -> u32 {
        lock(&self.inner).poll.consecutive_failures
    }

    /// A plan was made (`item_starts`: remote items seen starting since the last one): it
    /// becomes the last decision, a sample of the history and a line of the recent decisions,
    /// and its figures go to the metrics.
    pub fn remember(
        &self,
        plan: Plan,
        trigger: &'static str,
        from_stale_model: bool,
        item_starts: u64,
    ) {
        self.metrics.recomputes.inc();
        self.metrics.item_starts.inc_by(item_starts);
        self.metrics.record_plan(&plan);
        let t = unix_seconds(SystemTime::now());
        let changes = plan.decisions.iter().filter(|d| d.needs_write()).count();
        let meter = self.budget.borrow().meter.clone();
        let mut inner = lock(&self.inner);
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(Sample {
            t,
            budget: plan.budget,
            held: plan.held,
            remote_rate: plan.streaming,
            claimants: plan.claimants(),
            measured: meter.as_ref().and_then(|m| m.measured_bps),
            other: meter.as_ref().and_then(|m| m.other_bps),
            downloaders_limit: plan.downloaders.as_ref().map(|d| d.limit),
            downloaders_rate: plan.downloaders.as_ref().map(|_| {
                lock(&self.downloaders)
                    .iter()
                    .filter_map(|d| d.rate_bps)
                    .sum()
            }),
        });
        if inner.recent.len() == RECENT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(Recent {
            t,
            trigger,
            changes,
            summary: plan.summary(),
        });
        inner.last_plan = Some(LastPlan {
            at: SystemTime::now(),
            trigger,
            from_stale_model,
            plan,
        });
    }

    /// Alive when the engine runs and the last successful read of Jellyfin is younger than
    /// `unhealthy_after`. Not before Jellyfin was first reached: a daemon that has never
    /// managed anything is not healthy (a container's `HEALTHCHECK --start-period` covers
    /// the first poll).
    pub fn health(&self, unhealthy_after: Duration) -> Health {
        let engine_alive = self.engine_alive.load(Ordering::SeqCst);
        let inner = lock(&self.inner);
        let age = inner.poll.last_ok.map(|t| t.elapsed());
        let fresh = age.is_some_and(|a| a <= unhealthy_after);
        Health {
            healthy: engine_alive && fresh,
            engine_alive,
            age,
            last_error: inner.poll.last_error.clone(),
        }
    }

    /// The samples behind the chart, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        lock(&self.inner).history.iter().copied().collect()
    }

    /// Everything `/api/state` shows. Personal values are their `to_string()`, so an alias
    /// when anonymizing ([`crate::ids`]).
    pub fn view(&self, settings: &Settings) -> StateView {
        let m = &self.metrics;
        let inner = lock(&self.inner);
        let count = |kind: &str| {
            ["accepted", "ignored", "dropped"]
                .iter()
                .map(|r| m.events(kind, r))
                .sum::<u64>()
        };
        let (down, up) = (m.pushes_sent(Direction::Down), m.pushes_sent(Direction::Up));
        let item_starts = m.item_starts.get();
        StateView {
            mode: settings.daemon.mode.as_str(),
            sign_in_required: settings.daemon.status_protected(),
            dry_run: settings.daemon.dry_run,
            budget_bps: self.budget.borrow().budget_bps,
            budget: self.budget.borrow().clone(),
            notifications: self.notifier.view(),
            uptime_seconds: self.started.elapsed().as_secs(),
            poll_interval_seconds: settings.daemon.poll_interval().as_secs(),
            poll: PollView {
                last_ok_unix: inner.poll.last_ok_at.map(unix_seconds),
                last_ok_age_seconds: inner.poll.last_ok.map(|t| t.elapsed().as_secs_f64()),
                last_error: inner.poll.last_error.clone(),
                consecutive_failures: inner.poll.consecutive_failures,
                polls: m.poll_count(),
                recomputes: m.recomputes.get(),
            },
            events: EventsView {
                playback_start: count("PlaybackStart"),
                playback_stop: count("PlaybackStop"),
                playback_progress: count("PlaybackProgress"),
                other: count("other"),
                rejected: m.events("invalid", "rejected"),
                unauthorized: m.events("unknown", "unauthorized"),
                dropped: m.events("PlaybackStart", "dropped") + m.events("PlaybackStop", "dropped"),
            },
            writes: WritesView {
                pending: m.pending_writes.get(),
                written: m.policy_writes.get(),
                failed: m.policy_write_failures.get(),
                pushes: PushesView { down, up },
                item_starts,
                pushes_per_item_start: (item_starts > 0)
                    .then(|| (down + up) as f64 / item_starts as f64),
            },
            last_decision: inner.last_plan.as_ref().map(decision_view),
            downloaders: lock(&self.downloaders).clone(),
            server_limits: lock(&self.server_limits).clone(),
            media_servers: lock(&self.media_servers).clone(),
            server_shares: inner
                .last_plan
                .as_ref()
                .map(|p| p.plan.servers.clone())
                .unwrap_or_default(),
            overrides: lock(&self.overrides).clone(),
            control: ControlView::default(),
            paused: inner.last_plan.as_ref().is_some_and(|p| p.plan.paused),
            reserved_bps: inner.last_plan.as_ref().map_or(0, |p| p.plan.reserved),
            downloaders_limit_bps: inner
                .last_plan
                .as_ref()
                .and_then(|p| p.plan.downloaders.as_ref().map(|d| d.limit)),
            recent: inner.recent.iter().rev().cloned().collect(),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// `/api/state`.
#[derive(Debug, Serialize)]
pub struct StateView {
    pub mode: &'static str,
    pub dry_run: bool,
    /// The page needs the status secret (so it offers to sign out).
    pub sign_in_required: bool,
    pub budget_bps: u64,
    /// What the budget is made of: static, or the meter's reading.
    pub budget: BudgetState,
    /// Notification targets, the conditions in force, the last notifications.
    pub notifications: crate::adapters::notify::NotifyView,
    pub uptime_seconds: u64,
    pub poll_interval_seconds: u64,
    pub poll: PollView,
    pub events: EventsView,
    pub writes: WritesView,
    pub last_decision: Option<DecisionView>,
    /// The torrent clients (`[[downloader]]`).
    pub downloaders: Vec<super::seeders::DownloaderView>,
    /// Their combined limit in the last plan, bits/s.
    pub downloaders_limit_bps: Option<u64>,
    /// The media servers whose total limit is managed (`manage_wan_total`): what they hold.
    pub server_limits: Vec<super::servers::ServerLimitView>,
    /// The other Jellyfin and Emby servers (`[[server]]`), whose users are managed beside
    /// the `[jellyfin]` server's: whether they answer, how many users and streams.
    pub media_servers: Vec<crate::adapters::jellyfin::fleet::MemberView>,
    /// What the last plan gave them, and why.
    pub server_shares: Vec<crate::core::plan::ServerShare>,
    /// The owner's overrides in force (pause, pins, exemptions, weights, reserve).
    pub overrides: Vec<crate::core::control::View>,
    /// What this request may change (set by the handler, which knows the request).
    pub control: ControlView,
    /// The last plan was made paused: every original is back.
    pub paused: bool,
    /// Bits/s of the budget the owner keeps free in the last plan.
    pub reserved_bps: u64,
    /// Newest first.
    pub recent: Vec<Recent>,
    pub version: &'static str,
}

/// Whether the page may offer the owner's controls.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ControlView {
    /// A status secret is configured (control needs one).
    pub available: bool,
    /// This request carries a signed-in session.
    pub signed_in: bool,
}

#[derive(Debug, Serialize)]
pub struct PollView {
    pub last_ok_unix: Option<u64>,
    pub last_ok_age_seconds: Option<f64>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub polls: u64,
    pub recomputes: u64,
}

#[derive(Debug, Serialize)]
pub struct EventsView {
    #[serde(rename = "PlaybackStart")]
    pub playback_start: u64,
    #[serde(rename = "PlaybackStop")]
    pub playback_stop: u64,
    #[serde(rename = "PlaybackProgress")]
    pub playback_progress: u64,
    pub other: u64,
    pub rejected: u64,
    pub unauthorized: u64,
    pub dropped: u64,
}

#[derive(Debug, Serialize)]
pub struct WritesView {
    pub pending: i64,
    pub written: u64,
    pub failed: u64,
    pub pushes: PushesView,
    pub item_starts: u64,
    pub pushes_per_item_start: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct PushesView {
    pub down: u64,
    pub up: u64,
}

/// The last plan, as shown.
#[derive(Debug, Serialize)]
pub struct DecisionView {
    pub at_unix: u64,
    pub trigger: &'static str,
    pub from_stale_model: bool,
    pub algorithm: String,
    /// The budget this plan shared (the owner's reserve taken off), bits/s.
    pub budget_bps: u64,
    pub streaming_bps: u64,
    pub held_bps: u64,
    pub unmanaged_bps: u64,
    pub overloaded: bool,
    pub claimants: usize,
    pub uncontrolled_streams: usize,
    /// The server's video transcodes against `[transcoding] capacity` (absent without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcodes: Option<TranscodesView>,
    pub users: Vec<UserView>,
    pub warnings: Vec<String>,
    pub local_streams: Vec<LocalStreamView>,
    pub summary: String,
}

#[derive(Debug, Serialize)]
pub struct TranscodesView {
    /// Video transcodes under the plan's limits.
    pub count: u32,
    /// Of them, of 4K sources.
    pub count_4k: u32,
    /// What the server runs at once, in words ("2 streams at most (1 of 4K)").
    pub capacity: String,
    /// The limits force more transcodes than that.
    pub beyond_capacity: bool,
    /// Users given their whole demand so their streams play direct.
    pub kept_direct: usize,
}

#[derive(Debug, Serialize)]
pub struct UserView {
    pub user_id: String,
    pub user: String,
    pub role: &'static str,
    pub streams: usize,
    pub endpoints: Vec<String>,
    pub stream_rate_bps: u64,
    pub current_limit_bps: i64,
    pub limit_bps: i64,
    pub reason: String,
    pub stream_details: Vec<StreamView>,
}

#[derive(Debug, Serialize)]
pub struct StreamView {
    pub session: String,
    pub device: String,
    pub source_bps: Option<u64>,
    pub rate_bps: Option<u64>,
    pub held_bps: u64,
    pub push: Option<PushView>,
    pub uncontrolled: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PushView {
    pub direction: Direction,
    pub bitrate_bps: u64,
}

#[derive(Debug, Serialize)]
pub struct LocalStreamView {
    pub user: Option<String>,
    pub device: String,
    pub rate_bps: Option<u64>,
    pub paused: bool,
}

fn decision_view(l: &LastPlan) -> DecisionView {
    let p = &l.plan;
    DecisionView {
        at_unix: unix_seconds(l.at),
        trigger: l.trigger,
        from_stale_model: l.from_stale_model,
        algorithm: p.algorithm.to_string(),
        budget_bps: p.budget,
        streaming_bps: p.streaming,
        held_bps: p.held,
        unmanaged_bps: p.unmanaged_bps,
        overloaded: p.overloaded,
        claimants: p.claimants(),
        uncontrolled_streams: p
            .streams()
            .filter(|(_, s)| s.uncontrolled.is_some())
            .count(),
        transcodes: p.transcodes.map(|t| TranscodesView {
            count: t.count.total(),
            count_4k: t.count.uhd,
            capacity: t.capacity.describe(),
            beyond_capacity: t.beyond,
            kept_direct: t.kept_direct,
        }),
        users: p
            .decisions
            .iter()
            .map(|d| UserView {
                user_id: d.user_id.to_string(),
                user: d.user_name.to_string(),
                role: d.role.label(),
                streams: d.streams.len(),
                endpoints: d.endpoints.iter().map(|ip| ip.to_string()).collect(),
                stream_rate_bps: d.stream_rate,
                current_limit_bps: d.current,
                limit_bps: d.target,
                reason: d.reason.to_string(),
                stream_details: d
                    .streams
                    .iter()
                    .map(|s| StreamView {
                        session: s.session_id.to_string(),
                        device: s.device.to_string(),
                        source_bps: s.source,
                        rate_bps: s.rate,
                        held_bps: s.held,
                        push: s.push.map(|p| PushView {
                            direction: p.direction,
                            bitrate_bps: p.bitrate,
                        }),
                        uncontrolled: s.uncontrolled.map(|u| u.to_string()),
                    })
                    .collect(),
            })
            .collect(),
        warnings: p.warnings.iter().map(|w| w.to_string()).collect(),
        local_streams: p
            .sessions
            .iter()
            .filter(|v| v.playing && matches!(v.location, Location::Local(_)))
            .map(|v| LocalStreamView {
                user: v.user_name.as_ref().map(|n| n.to_string()),
                device: v.device.to_string(),
                rate_bps: v.rate.map(|r| r.bps()),
                paused: v.paused,
            })
            .collect(),
        summary: format!(
            "{} streaming of a {} budget, {} remote user(s)",
            fmt_mbps(p.streaming),
            fmt_mbps(p.budget),
            p.claimants()
        ),
    }
}
