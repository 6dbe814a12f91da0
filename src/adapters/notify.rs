//! Notifications: telling the admin when it matters (`[[notify]]` targets: ntfy, Gotify,
//! Discord, Apprise, any webhook).
//!
//! The daemon hands observations to a [`Notifier`] without ever waiting: a bounded queue,
//! full means dropped and counted. One task owns the [`conditions::Conditions`] (which turn
//! observations into edge-triggered notices with a cooldown) and gives each notice to the
//! targets that want it; every target has its own queue and task, so a target that hangs or
//! keeps failing delays neither the others, nor the engine, the writer or `/hook`. A notice is
//! tried three times (1 s, then 2 s apart; a 429's `retry_after` is honoured, up to a minute);
//! a target that keeps failing is logged by name (never its URL or token) and counted in
//! `jellydemon_notifications{target, result}`.

pub mod conditions;
pub mod target;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use self::conditions::{Conditions, Notice, Observation};
use self::target::{Resolved, Sent};
use crate::clock::unix_seconds;
use crate::config::{ConfigError, EventKind, Settings};
use crate::metrics::Metrics;
use crate::sync::lock;

/// Observations waiting for the conditions task.
const QUEUE: usize = 256;
/// Notices waiting per target.
const TARGET_QUEUE: usize = 64;
/// Notifications kept for the status page.
const RECENT: usize = 20;
/// Tries per notice and target.
const TRIES: u32 = 3;

/// The daemon's side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Observation>>,
    view: Arc<Mutex<NotifyView>>,
    metrics: Option<Arc<Metrics>>,
}

/// What `/api/state` and the status page show.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NotifyView {
    /// The targets, by name.
    pub targets: Vec<String>,
    /// The conditions in force: (event, user when it is about one).
    pub active: Vec<ActiveView>,
    /// The last notifications, newest first.
    pub recent: VecDeque<SentView>,
}

/// A condition in force.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveView {
    /// Its event.
    pub event: &'static str,
    /// The user it is about, if any.
    pub about: String,
}

/// A notification and what became of it at one target.
#[derive(Debug, Clone, Serialize)]
pub struct SentView {
    /// Unix seconds.
    pub t: u64,
    /// The target's name.
    pub target: String,
    /// The event.
    pub event: &'static str,
    /// The title.
    pub title: String,
    /// "delivered", "failed: …" or "dropped: the queue was full".
    pub result: String,
}

impl Notifier {
    /// No targets: observations go nowhere.
    pub fn disabled() -> Notifier {
        Notifier {
            tx: None,
            view: Arc::new(Mutex::new(NotifyView::default())),
            metrics: None,
        }
    }

    /// Hand over an observation; never waits (a full queue drops it, counted).
    pub fn observe(&self, obs: Observation) {
        if let Some(tx) = &self.tx
            && tx.try_send(obs).is_err()
            && let Some(m) = &self.metrics
        {
            m.notification("(intake)", "dropped");
        }
    }

    /// The targets, active conditions and last notifications.
    pub fn view(&self) -> NotifyView {
        lock(&self.view).clone()
    }
}

/// Start the notifier for `settings`' targets. `close` ends it: what is queued by then is
/// still delivered (the caller bounds the wait, e.g. by the shutdown deadline).
pub fn start(
    settings: &Settings,
    metrics: Arc<Metrics>,
    close: CancellationToken,
) -> Result<(Notifier, Option<tokio::task::JoinHandle<()>>), ConfigError> {
    if settings.notify.is_empty() {
        return Ok((Notifier::disabled(), None));
    }
    let targets: Vec<(Resolved, Vec<EventKind>)> = settings
        .notify
        .iter()
        .map(|t| Resolved::new(t).map(|r| (r, t.subscribed())))
        .collect::<Result<_, _>>()?;
    let view = Arc::new(Mutex::new(NotifyView {
        targets: targets.iter().map(|(t, _)| t.name.clone()).collect(),
        ..NotifyView::default()
    }));
    let (tx, rx) = mpsc::channel(QUEUE);
    let d = &settings.daemon;
    let conditions = Conditions::new(
        d.notify_cooldown,
        d.notify_unreachable_after,
        d.notify_writes_failing_after,
    );
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| crate::config::invalid("notify", e.to_string()))?;
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for (t, wants) in targets {
        let (ttx, trx) = mpsc::channel::<Notice>(TARGET_QUEUE);
        let name = t.name.clone();
        tasks.push(tokio::spawn(deliver(
            t,
            trx,
            http.clone(),
            metrics.clone(),
            view.clone(),
        )));
        senders.push((name, wants, ttx));
    }
    let notifier = Notifier {
        tx: Some(tx),
        view: view.clone(),
        metrics: Some(metrics.clone()),
    };
    let task = tokio::spawn(async move {
        intake(rx, conditions, senders, view, metrics, close).await;
        for t in tasks {
            let _ = t.await;
        }
    });
    Ok((notifier, Some(task)))
}

type TargetSender = (String, Vec<EventKind>, mpsc::Sender<Notice>);

/// The conditions task: observations in, notices out to the targets that want them.
async fn intake(
    mut rx: mpsc::Receiver<Observation>,
    mut conditions: Conditions,
    senders: Vec<TargetSender>,
    view: Arc<Mutex<NotifyView>>,
    metrics: Arc<Metrics>,
    close: CancellationToken,
) {
    let origin = Instant::now();
    let handle = |obs: Observation, conditions: &mut Conditions| {
        for n in conditions.observe(obs, origin.elapsed()) {
            debug!(event = n.event.as_str(), cleared = n.cleared, "notice");
            for (name, wants, tx) in &senders {
                if !wants.contains(&n.event) {
                    continue;
                }
                if tx.try_send(n.clone()).is_err() {
                    metrics.notification(name, "dropped");
                    record(&view, name, &n, "dropped: the queue was full".into());
                }
            }
        }
        lock(&view).active = conditions
            .active()
            .into_iter()
            .map(|(e, about)| ActiveView {
                event: e.as_str(),
                about,
            })
            .collect();
    };
    loop {
        tokio::select! {
            biased;
            obs = rx.recv() => match obs {
                Some(obs) => handle(obs, &mut conditions),
                None => break,
            },
            _ = close.cancelled() => {
                // What is queued now still goes out.
                while let Ok(obs) = rx.try_recv() {
                    handle(obs, &mut conditions);
                }
                break;
            }
        }
    }
    // Dropping the senders lets each target finish its queue and end.
}

/// One target's task: its notices, in order, each tried up to three times.
async fn deliver(
    t: Resolved,
    mut rx: mpsc::Receiver<Notice>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    view: Arc<Mutex<NotifyView>>,
) {
    while let Some(n) = rx.recv().await {
        let result = deliver_one(&http, &t, &n).await;
        match &result {
            Ok(()) => metrics.notification(&t.name, "delivered"),
            Err(e) => {
                metrics.notification(&t.name, "failed");
                warn!(
                    target_name = %t.name,
                    kind = t.kind.as_str(),
                    event = n.event.as_str(),
                    "notification not delivered after {TRIES} tries: {e}"
                );
            }
        }
        record(
            &view,
            &t.name,
            &n,
            match result {
                Ok(()) => "delivered".into(),
                Err(e) => format!("failed: {e}"),
            },
        );
    }
}

/// Send `n` to `t`: up to three tries, 1 s then 2 s apart, or the 429's wait.
pub async fn deliver_one(http: &reqwest::Client, t: &Resolved, n: &Notice) -> Result<(), String> {
    let req = target::request(t, n, SystemTime::now());
    let mut last = String::new();
    for attempt in 0..TRIES {
        match target::send(http, &req, t.timeout).await {
            Sent::Ok(_) => return Ok(()),
            Sent::RetryAfter(wait) => {
                last = format!(
                    "rate limited (429, retry after {:.1} s)",
                    wait.as_secs_f64()
                );
                if attempt + 1 < TRIES {
                    tokio::time::sleep(wait).await;
                }
            }
            Sent::Failed(e) => {
                last = e;
                if attempt + 1 < TRIES {
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
            }
        }
    }
    Err(last)
}

fn record(view: &Arc<Mutex<NotifyView>>, target: &str, n: &Notice, result: String) {
    let mut v = lock(view);
    if v.recent.len() == RECENT {
        v.recent.pop_back();
    }
    v.recent.push_front(SentView {
        t: unix_seconds(SystemTime::now()),
        target: target.to_string(),
        event: n.event.as_str(),
        title: n.title.clone(),
        result,
    });
}

/// `jellydemon notify --test`: one test message to each target (or the one named), one try
/// each; what each answered.
pub async fn send_test(
    settings: &Settings,
    only: Option<&str>,
) -> Result<Vec<(String, Result<String, String>)>, ConfigError> {
    let targets: Vec<&crate::config::NotifyTarget> = settings
        .notify
        .iter()
        .filter(|t| only.is_none_or(|n| t.display_name() == n))
        .collect();
    if targets.is_empty() {
        return Err(crate::config::invalid(
            "notify",
            match only {
                Some(n) => format!(
                    "no target named \"{n}\" (targets: {})",
                    settings
                        .notify
                        .iter()
                        .map(|t| t.display_name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => "no [[notify]] target is configured".into(),
            },
        ));
    }
    let http = reqwest::Client::new();
    let notice = Notice {
        event: EventKind::Test,
        severity: conditions::Severity::Info,
        title: "jellydemon test notification".into(),
        message: "If you read this, jellydemon can reach you here.".into(),
        cleared: false,
        data: serde_json::json!({}),
    };
    let mut out = Vec::new();
    for t in targets {
        let r = Resolved::new(t)?;
        let req = target::request(&r, &notice, SystemTime::now());
        let answer = match target::send(&http, &req, r.timeout).await {
            Sent::Ok(code) => Ok(format!("delivered (HTTP {code})")),
            Sent::RetryAfter(d) => Err(format!(
                "rate limited (429): try again in {:.0} s",
                d.as_secs_f64()
            )),
            Sent::Failed(e) => Err(e),
        };
        out.push((format!("{} ({})", r.name, r.kind.as_str()), answer));
    }
    Ok(out)
}
