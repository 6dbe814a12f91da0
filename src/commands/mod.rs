//! One function per command of the command line (`src/cli.rs` parses the arguments and calls
//! the one asked for): each loads what it needs, works through the library, prints what the
//! owner reads and ends with its exit code ([`exit`]). Grouped by what they are for:
//! `serve` (run, demo), `pass` (reconcile, restore), `setup` (init, import-config), `look`
//! (check, report, notify --test, stats, healthcheck, anonymize) and `ask` (the commands that
//! talk to the running daemon).

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::adapters::jellyfin::fleet::Fleet;
use crate::adapters::ledger::Ledger;
use crate::config::Settings;

mod ask;
mod look;
mod pass;
mod serve;
mod setup;

pub use ask::control;
pub use look::{anonymize, check, healthcheck, notify_test, report, stats};
pub use pass::{reconcile, restore};
#[cfg(feature = "demo")]
pub use serve::demo;
pub use serve::run;
pub use setup::{import_config, init};

/// Exit codes. Scripts can rely on them.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Unexpected internal error; for `healthcheck`, the daemon is not healthy.
    pub const FAILURE: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// The configuration is missing or invalid.
    pub const CONFIG: u8 = 3;
    /// The state file (ledger) cannot be read or written.
    pub const STATE: u8 = 4;
    /// Jellyfin cannot be reached or refused a read (wrong URL, key, TLS, 5xx).
    pub const JELLYFIN: u8 = 5;
    /// The pass ran but at least one policy write (or restore) failed.
    pub const WRITE_FAILED: u8 = 6;
    /// The daemon cannot listen on `daemon.listen`.
    pub const LISTEN: u8 = 7;
    /// The running daemon cannot be reached, or refused the action.
    pub const DAEMON: u8 = 8;
}

/// How a command ends: its exit code, success (`Ok`) or not.
pub type Outcome = Result<ExitCode, ExitCode>;

/// Print `e` as an error and give `code`.
fn fail(code: u8) -> impl Fn(&dyn std::fmt::Display) -> ExitCode {
    move |e| {
        eprintln!("error: {e}");
        ExitCode::from(code)
    }
}

/// SIGTERM and SIGINT stop the daemon. SIGHUP (config reload) is not supported: the listener,
/// the secret and the ledger path are bound at start, and a restart is cheap. It is logged and
/// otherwise ignored, rather than killing the process as its default action would.
pub(crate) async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => tracing::warn!(
                "SIGHUP ignored: reloading the configuration is not supported; restart the service"
            ),
        }
    }
    shutdown.cancel();
}

/// Load the configuration and set up logging (and anonymization) from it. `dry_run` (the
/// command line's) joins `daemon.dry_run` first: a dry run writes no file at all.
pub(crate) fn load(
    path: &std::path::Path,
    default_level: &str,
    dry_run: bool,
) -> Result<Settings, ExitCode> {
    let mut settings = Settings::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(exit::CONFIG)
    })?;
    settings.daemon.dry_run |= dry_run;
    init_logging(&settings, default_level, !settings.daemon.dry_run)?;
    Ok(settings)
}

/// The settings, for a command that writes nothing: the anonymizer (when on) keeps the
/// aliases it makes up in memory.
pub(crate) fn load_read_only(
    path: &std::path::Path,
    default_level: &str,
) -> Result<Settings, ExitCode> {
    let settings = Settings::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(exit::CONFIG)
    })?;
    init_logging(&settings, default_level, false)?;
    Ok(settings)
}

fn init_logging(settings: &Settings, default_level: &str, writes: bool) -> Result<(), ExitCode> {
    crate::telemetry::init(Some(settings), default_level, writes).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(exit::CONFIG)
    })
}

/// `total_upload_mbps = "sqm"`: the capacity read from the router before anything plans.
pub(crate) async fn sqm(settings: &mut Settings) -> Result<(), ExitCode> {
    crate::adapters::budget::sqm::resolve(settings)
        .await
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(exit::CONFIG)
        })
}

/// Every Jellyfin and Emby server the configuration names.
pub(crate) fn client(settings: &Settings) -> Result<Fleet, ExitCode> {
    Fleet::from_settings(settings).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(exit::CONFIG)
    })
}

/// The ledger, as its one writer unless `dry_run`.
pub(crate) fn open_ledger(settings: &Settings, dry_run: bool) -> Result<Ledger, ExitCode> {
    let path = &settings.state.file;
    let ledger = if dry_run {
        Ledger::open(path)
    } else {
        Ledger::open_exclusive(path)
    };
    ledger.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(exit::STATE)
    })
}
