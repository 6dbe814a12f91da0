//! `jellydemon run`: the daemon's runtime, wired together, and a shutdown that restores the
//! originals within a bounded time.
//!
//! Inside, the arrows run one way: `listener` serves `http`'s router (`access` decides who may
//! use what); `http` hands events to the `engine`, which owns the model, plans and hands
//! decisions to the `writer`; the engine and the handlers record and read what happened
//! through `status`.
//!
//! [`run`] takes an already-bound listener and a shutdown token, so tests bind port 0 and run
//! many daemons in parallel; the binary binds `daemon.listen` and cancels the token on
//! SIGTERM/SIGINT.

mod access;
pub(crate) mod engine;
mod http;
mod listener;
mod members;
pub mod schedule;
pub(crate) mod seeders;
pub(crate) mod servers;
mod status;
mod writer;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::adapters::jellyfin::JellyfinError;
use crate::adapters::jellyfin::fleet::{Fleet, FleetError};
use crate::adapters::ledger::{Ledger, LedgerError, LedgerHandle};
use crate::adapters::notify::conditions::Observation;
use crate::config::{ConfigError, Settings};
use crate::metrics::Metrics;
use crate::reconcile::{self, RestoreOutcome};

use engine::Engine;
use http::{AppState, router};
use status::Status;

/// Why the daemon could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state file cannot be read or written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The Jellyfin client cannot be built (an API key that cannot be sent in a header).
    #[error(transparent)]
    Jellyfin(#[from] JellyfinError),
    /// Serving HTTP failed.
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// How the daemon ended.
#[derive(Debug, Default)]
pub struct Shutdown {
    /// Users whose original could not be put back (they stay in the ledger).
    pub restore_failures: usize,
    /// The restore did not finish within `daemon.shutdown_timeout`.
    pub restore_timed_out: bool,
}

/// Run until `shutdown` is cancelled, then stop in order and restore. With `daemon.dry_run`
/// set it computes and reports and writes nothing.
pub async fn run(
    settings: Arc<Settings>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Shutdown, DaemonError> {
    let running = start(settings, listener, shutdown.clone())?;
    shutdown.cancelled().await;
    running.stop().await
}

/// The daemon while it runs: what its shutdown stops, in order, and restores with.
struct Running {
    settings: Arc<Settings>,
    client: Fleet,
    ledger: LedgerHandle,
    notifier: crate::adapters::notify::Notifier,
    /// Stops every worker below, so that intake and writes stop before the restore.
    workers: CancellationToken,
    /// The workers' tasks: the engine first (no new plan), then what carries its decisions
    /// out.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    history_writer: Option<crate::adapters::history::Writer>,
    /// Closed after the restore, so that "stopped" and a failed restore are still sent.
    notify_close: CancellationToken,
    notify_task: Option<tokio::task::JoinHandle<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The state file, opened for the daemon: locked for its writer, unless a dry run (which
/// never writes it).
fn open_ledger(settings: &Settings) -> Result<LedgerHandle, DaemonError> {
    let ledger = if settings.daemon.dry_run {
        Ledger::open(&settings.state.file)?
    } else {
        Ledger::open_exclusive(&settings.state.file)?
    };
    for (name, fields) in crate::throttle::orphans(settings, &ledger) {
        warn!(
            downloader = %name,
            "the state file holds originals of a torrent client or media server no \
             [[downloader]] or [[server]] names any more ({}): name it again so that they are \
             put back, or set them by hand",
            fields.join(", ")
        );
    }
    Ok(LedgerHandle::new(ledger))
}

/// The owner's overrides: a pause or pin set before the restart holds; a file that cannot be
/// parsed is moved aside (a dry run leaves it), said loudly, and the daemon runs without.
fn load_overrides(settings: &Settings) -> crate::core::control::Overrides {
    let overrides =
        crate::adapters::overrides::load(&settings.overrides_file(), !settings.daemon.dry_run)
            .unwrap_or_else(|e| {
                error!("{e}");
                crate::core::control::Overrides::default()
            });
    if overrides.paused() {
        warn!(
            "paused by the owner before the restart: every original stays until `jellydemon resume`"
        );
    }
    overrides
}

/// Wire everything together and start serving on `listener` (which stops accepting when
/// `shutdown` is cancelled).
fn start(
    settings: Arc<Settings>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, DaemonError> {
    let dry_run = settings.daemon.dry_run;
    if settings.bandwidth.sqm == crate::config::Sqm::Unread {
        return Err(DaemonError::Config(crate::config::invalid(
            "bandwidth.total_upload_mbps",
            "\"sqm\": the router's SQM rate must be read before the daemon starts \
             (crate::adapters::budget::sqm::resolve)",
        )));
    }
    let client = Fleet::from_settings(&settings).map_err(|e| match e {
        FleetError::Config(e) => DaemonError::Config(e),
        FleetError::Jellyfin(e) => DaemonError::Jellyfin(e),
    })?;
    let token = settings.daemon.webhook_token()?.cloned().map(Arc::new);
    let ledger = open_ledger(&settings)?;
    let overrides = load_overrides(&settings);
    let metrics = Arc::new(Metrics::new());
    let workers = CancellationToken::new();
    let (budget, meter_task) =
        crate::adapters::budget::feed::start(&settings, metrics.clone(), workers.clone())?;
    let plex_hook = settings
        .server
        .iter()
        .any(|s| s.is_plex())
        .then(|| budget.read_servers.clone());
    let notify_close = CancellationToken::new();
    let (notifier, notify_task) =
        crate::adapters::notify::start(&settings, metrics.clone(), notify_close.clone())?;
    notifier.observe(Observation::Started);
    let status = Arc::new(Status::new(
        metrics.clone(),
        budget.state.clone(),
        notifier.clone(),
    ));

    // The torrent clients: the engine's plans give them their combined limit.
    let (downloaders_tx, downloaders_rx) = tokio::sync::watch::channel(None);
    let seeders_task = seeders::Seeders {
        settings: settings.clone(),
        ledger: ledger.clone(),
        limit: downloaders_rx,
        rates: budget.downloaders.clone(),
        views: status.downloaders(),
        metrics: metrics.clone(),
        notifier: notifier.clone(),
        dry_run,
    }
    .spawn(workers.clone())?;
    // The media servers whose total limit is managed: the engine's plans give them theirs.
    let (servers_tx, servers_rx) = tokio::sync::watch::channel(None);
    let servers_task = servers::Servers {
        settings: settings.clone(),
        ledger: ledger.clone(),
        limits: servers_rx,
        views: status.server_limits(),
        dry_run,
    }
    .spawn(workers.clone())?;

    let (history, history_writer) = start_history(&settings, &notifier, &metrics);

    let (pushed_tx, pushed) = tokio::sync::mpsc::unbounded_channel();
    let (writer, writer_task) = writer::spawn(
        client.clone(),
        ledger.clone(),
        settings.daemon.max_writes_per_second,
        pushed_tx,
        metrics.clone(),
        notifier.clone(),
        workers.clone(),
    );
    // The other Jellyfin and Emby servers: a change in what plays there asks for a plan.
    let (members_changed, member_hook, members_task) =
        match members::spawn(client.clone(), &settings, workers.clone()) {
            Some(w) => (Some(w.changed), Some(w.read_now), Some(w.task)),
            None => (None, None, None),
        };
    let (engine, engine_task) = Engine {
        members_changed,
        client: client.clone(),
        settings: settings.clone(),
        ledger: ledger.clone(),
        writer,
        pushed,
        status: status.clone(),
        dry_run,
        budget,
        notifier: notifier.clone(),
        downloaders: downloaders_tx,
        servers: servers_tx,
        overrides,
        history,
    }
    .spawn(workers.clone());

    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let app = router(AppState {
        access: Arc::new(access::Access::new(&settings)?),
        settings: settings.clone(),
        token,
        engine,
        status,
        metrics,
        plex_hook,
        member_hook,
    });
    let (max_connections, low_fds) =
        crate::fds::connection_cap(settings.daemon.http_max_connections);
    if let Some(note) = low_fds {
        warn!("{note}");
    }
    let limits = listener::Limits {
        header_timeout: settings.daemon.http_header_timeout,
        max_connections,
        drain: settings.daemon.http_drain,
    };
    let server = tokio::spawn(listener::serve(listener, app, limits, shutdown));
    info!(
        listen = %addr,
        mode = settings.daemon.mode.as_str(),
        poll_interval = ?settings.daemon.poll_interval(),
        dry_run,
        "jellydemon running"
    );

    Ok(Running {
        settings,
        client,
        ledger,
        notifier,
        workers,
        // The engine first (no new plan), then what carries its decisions out; a write to a
        // torrent client in flight is answered (or times out) before the restore.
        tasks: [
            Some(engine_task),
            members_task,
            Some(writer_task),
            meter_task,
            seeders_task,
            servers_task,
        ]
        .into_iter()
        .flatten()
        .collect(),
        history_writer,
        notify_close,
        notify_task,
        server,
    })
}

impl Running {
    /// Stop intake and writes, restore every original within `daemon.shutdown_timeout`, send
    /// what is queued for the notification targets, and wait for the listener's drain.
    async fn stop(self) -> Result<Shutdown, DaemonError> {
        let settings = &self.settings;
        info!("shutting down");
        self.notifier.observe(Observation::Stopped);
        // The listener stops accepting and drains its connections for at most `http_drain`,
        // on its own: the restore below does not wait for any client.
        self.workers.cancel();
        let deadline = tokio::time::Instant::now() + settings.daemon.shutdown_timeout;
        for t in self.tasks {
            let _ = tokio::time::timeout_at(deadline, t).await;
        }
        // What the engine recorded is written (bounded; the restore does not wait for it).
        let history_stop = self
            .history_writer
            .map(|w| tokio::spawn(w.stop(std::time::Duration::from_secs(5))));
        let out = if settings.daemon.restore_on_exit && !settings.daemon.dry_run {
            restore_at_exit(
                settings,
                &self.client,
                &self.ledger,
                &self.notifier,
                deadline,
            )
            .await
        } else {
            Shutdown::default()
        };
        // What is queued for the targets goes out, within what is left of the deadline (at
        // least two seconds, so that a failed restore can still be told).
        self.notify_close.cancel();
        if let Some(t) = self.notify_task {
            let until =
                deadline.max(tokio::time::Instant::now() + std::time::Duration::from_secs(2));
            let _ = tokio::time::timeout_at(until, t).await;
        }
        if let Some(t) = history_stop {
            let _ = t.await;
        }
        // Bounded by the drain: the listener drops whatever is still open then.
        match self.server.await {
            Ok(Err(e)) => return Err(DaemonError::Serve(e)),
            Ok(Ok(())) => {}
            Err(e) => warn!("the listener ended abnormally: {e}"),
        }
        Ok(out)
    }
}

/// The history, unless off or a dry run (which writes no file): where the engine records, and
/// the writer thread to stop at the end.
fn start_history(
    settings: &Settings,
    notifier: &crate::adapters::notify::Notifier,
    metrics: &Arc<Metrics>,
) -> (
    crate::adapters::history::History,
    Option<crate::adapters::history::Writer>,
) {
    if !settings.history.enabled || settings.daemon.dry_run {
        return (
            crate::adapters::history::History::off(metrics.clone()),
            None,
        );
    }
    let h = &settings.history;
    let n = notifier.clone();
    let (history, writer) = crate::adapters::history::start(
        h.path(&settings.state.file),
        std::time::Duration::from_secs(u64::from(h.retention_days) * 24 * 3600),
        h.max_bytes(),
        metrics.clone(),
        Box::new(move |error| n.observe(Observation::History(error))),
    );
    (history, Some(writer))
}

/// Put every original back (Jellyfin's users and the torrent clients' settings at once),
/// trying until `deadline`; what could not be is kept in the state file, logged and notified.
async fn restore_at_exit(
    settings: &Settings,
    client: &Fleet,
    ledger: &LedgerHandle,
    notifier: &crate::adapters::notify::Notifier,
    deadline: tokio::time::Instant,
) -> Shutdown {
    let mut out = Shutdown::default();
    // The restore keeps trying until the deadline by itself; the outer bound is a guard.
    let guard = deadline + std::time::Duration::from_secs(1);
    let (jellyfin, torrents) = tokio::join!(
        tokio::time::timeout_at(guard, reconcile::restore(client, ledger, deadline)),
        tokio::time::timeout_at(
            guard,
            crate::throttle::restore_all(settings, ledger, deadline)
        ),
    );
    let torrent_failures = match torrents {
        Ok(results) => results
            .iter()
            .filter(|(_, r)| matches!(r, crate::throttle::Restored::Failed(_)))
            .count(),
        Err(_) => 1,
    };
    match jellyfin {
        Ok(Ok(results)) => {
            out.restore_failures = results
                .iter()
                .filter(|(_, o)| matches!(o, RestoreOutcome::Failed(_)))
                .count();
            info!(
                restored = results.len() - out.restore_failures,
                failed = out.restore_failures,
                "originals restored"
            );
        }
        Ok(Err(e)) => {
            error!("{e}");
            out.restore_failures = ledger.read(Ledger::len);
        }
        Err(_) => {
            out.restore_timed_out = true;
            out.restore_failures = ledger.read(Ledger::len);
        }
    }
    out.restore_failures += torrent_failures;
    if out.restore_failures > 0 || out.restore_timed_out {
        notifier.observe(Observation::RestoreFailed {
            users: out.restore_failures,
            state_file: settings.state.file.display().to_string(),
        });
        warn!(
            left = out.restore_failures,
            state_file = %settings.state.file.display(),
            "not every original could be restored; they are kept in the state file: run `jellydemon restore` when Jellyfin is reachable"
        );
    }
    out
}
