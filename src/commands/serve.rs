//! `run` (the daemon) and `demo` (the daemon against the built-in simulated Jellyfin).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Outcome, exit, load, sqm, watch_signals};
use crate::config::Mode;
use crate::daemon::{self, DaemonError};

/// `run`: the daemon, until SIGTERM or SIGINT; every original back at the stop.
pub async fn run(config: &Path, level: &str, reconcile_only: bool, dry_run: bool) -> Outcome {
    let mut settings = load(config, level, dry_run)?;
    if reconcile_only {
        settings.daemon.mode = Mode::ReconcileOnly;
    }
    sqm(&mut settings).await?;
    let listen = settings.daemon.listen;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        eprintln!("error: cannot listen on {listen} (daemon.listen): {e}");
        ExitCode::from(exit::LISTEN)
    })?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    match daemon::run(Arc::new(settings), listener, shutdown).await {
        Ok(s) if s.restore_failures > 0 => Err(ExitCode::from(exit::WRITE_FAILED)),
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(match e {
                DaemonError::Config(_) | DaemonError::Jellyfin(_) => exit::CONFIG,
                DaemonError::Ledger(_) => exit::STATE,
                DaemonError::Serve(_) => exit::FAILURE,
            }))
        }
    }
}

/// `demo`: the real daemon against a simulated Jellyfin where streamers come and go.
#[cfg(feature = "demo")]
pub async fn demo(
    level: &str,
    listen: std::net::SocketAddr,
    step_secs: f64,
    duration_secs: Option<f64>,
) -> Outcome {
    let _ = crate::telemetry::init(None, level, false);
    let secs = |s: f64| std::time::Duration::from_secs_f64(s.max(0.05));
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        eprintln!("error: cannot listen on {listen} ({e}): pass --listen ADDR");
        ExitCode::from(exit::LISTEN)
    })?;
    match crate::sim::demo::run(listener, secs(step_secs), duration_secs.map(secs), shutdown).await
    {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e:#}");
            Err(ExitCode::from(exit::FAILURE))
        }
    }
}
