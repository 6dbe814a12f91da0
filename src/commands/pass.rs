//! `reconcile --once` (one pass: read, plan, write) and `restore` (every original back).

use std::path::Path;
use std::process::ExitCode;

use super::{Outcome, client, exit, load, open_ledger, sqm};
use crate::adapters::ledger::LedgerHandle;
use crate::reconcile::{self, PassError};
use crate::report;

/// `reconcile --once [--dry-run]`: one pass, and its table.
pub async fn reconcile(config: &Path, level: &str, dry_run: bool) -> Outcome {
    let mut settings = load(config, level, dry_run)?;
    sqm(&mut settings).await?;
    let client = client(&settings)?;
    let dry_run = dry_run || settings.daemon.dry_run;
    let ledger = LedgerHandle::new(open_ledger(&settings, dry_run)?);
    match reconcile::reconcile_once(&client, &settings, &ledger, dry_run).await {
        Ok(report) => {
            // The owner's terminal shows names; the logs keep the aliases.
            print!("{}", crate::anon::reveal(&report::pass_table(&report)));
            if report.failed_writes() > 0 {
                eprintln!("error: {} write(s) failed", report.failed_writes());
                return Err(ExitCode::from(exit::WRITE_FAILED));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(PassError::Jellyfin(e)) => {
            eprintln!(
                "error: {}",
                crate::check::explain(&e, &settings.jellyfin.url, &settings)
            );
            Err(ExitCode::from(exit::JELLYFIN))
        }
        Err(PassError::Ledger(e)) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(exit::STATE))
        }
    }
}

/// `restore`: every original the state file holds put back, users' and torrent clients' and
/// media servers' alike, until `timeout`.
pub async fn restore(config: &Path, level: &str, timeout: std::time::Duration) -> Outcome {
    let settings = load(config, level, false)?;
    let client = client(&settings)?;
    let ledger = LedgerHandle::new(open_ledger(&settings, false)?);
    let deadline = tokio::time::Instant::now() + timeout;
    let (results, torrents) = tokio::join!(
        reconcile::restore(&client, &ledger, deadline),
        crate::throttle::restore_all(&settings, &ledger, deadline)
    );
    let results = results.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(exit::STATE)
    })?;
    print!("{}", crate::anon::reveal(&report::restore_table(&results)));
    print!("{}", report::torrent_restore_table(&torrents));
    let failed = results
        .iter()
        .filter(|(_, o)| matches!(o, reconcile::RestoreOutcome::Failed(_)))
        .count();
    let torrents_failed = torrents
        .iter()
        .filter(|(_, r)| matches!(r, crate::throttle::Restored::Failed(_)))
        .count();
    if torrents_failed > 0 {
        eprintln!(
            "error: {torrents_failed} torrent client(s) or media server(s) could not be \
             restored; their originals stay in {} for the next try",
            settings.state.file.display()
        );
    }
    if failed > 0 || torrents_failed > 0 {
        if failed > 0 {
            eprintln!(
                "error: {failed} user(s) could not be restored; they stay in {} for the next try",
                settings.state.file.display()
            );
        }
        return Err(ExitCode::from(exit::WRITE_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}
