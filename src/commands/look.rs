//! The commands that look and write nothing of the daemon's: `check`, `report`,
//! `notify --test`, `stats`, `healthcheck` and `anonymize`.

use std::path::Path;
use std::process::ExitCode;

use super::{Outcome, exit, fail, load, load_read_only};
use crate::config::Settings;

/// `check`: the configuration, Jellyfin, the key, the sessions and what else is set up.
pub async fn check(config: &Path, level: &str) -> Outcome {
    // A check writes nothing: not even the aliases it shows.
    let mut settings = load_read_only(config, level)?;
    let sqm = crate::adapters::budget::sqm::resolve(&mut settings)
        .await
        .err();
    let mut report = crate::check::check(&settings).await;
    if let Some(e) = sqm {
        // The Unread line check adds says the rest.
        report.fail_first(e.to_string());
    }
    print!("{}", crate::anon::reveal(&report.to_string()));
    if report.state_failed() {
        Err(ExitCode::from(exit::STATE))
    } else if report.failed() {
        Err(ExitCode::from(exit::JELLYFIN))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// `notify --test`: one test notification to each target (or the one named).
pub async fn notify_test(config: &Path, level: &str, target: Option<&str>) -> Outcome {
    let settings = load(config, level, false)?;
    let results = crate::adapters::notify::send_test(&settings, target)
        .await
        .map_err(|e| fail(exit::CONFIG)(&e))?;
    let mut failed = 0;
    for (name, r) in &results {
        match r {
            Ok(a) => println!("ok   {name}: {a}"),
            Err(e) => {
                failed += 1;
                println!("FAIL {name}: {e}");
            }
        }
    }
    if failed > 0 {
        return Err(ExitCode::from(exit::FAILURE));
    }
    Ok(ExitCode::SUCCESS)
}

/// `report`: a file for a bug report, anonymized, secrets removed.
pub async fn report(opts: crate::bugreport::Options, output: &Path) -> Outcome {
    let _ = crate::telemetry::init(None, "warn", false);
    let text = crate::bugreport::gather(&opts).await;
    if output == Path::new("-") {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    crate::files::write_private(output, text.as_bytes()).map_err(|e| {
        eprintln!("error: cannot write {}: {e}", output.display());
        ExitCode::from(exit::FAILURE)
    })?;
    println!(
        "wrote {}: names, ids and addresses are aliased and secrets removed; read it before \
         you attach it to a bug report",
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `stats`: what the history says over `since`, for everyone or one user.
pub fn stats(config: &Path, since: std::time::Duration, user: Option<&str>, json: bool) -> Outcome {
    // Names as the owner knows them: this is the owner's terminal (`report` is the output to
    // share).
    let settings = Settings::load(config).map_err(|e| fail(exit::CONFIG)(&e))?;
    let path = settings.history.path(&settings.state.file);
    if !settings.history.enabled && !path.exists() {
        eprintln!("error: the history is off (history.enabled = false)");
        return Err(ExitCode::from(exit::CONFIG));
    }
    let now = crate::clock::unix_millis_now();
    let from = now.saturating_sub(since.as_millis() as u64);
    let tz = settings.timezone();
    match crate::adapters::history::stats::load(&path, from, now, user, &tz, 1) {
        Ok((stats, _)) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&stats).expect("serializes")
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok((stats, _)) => {
            print!("{}", crate::adapters::history::stats::render(&stats));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(fail(exit::STATE)(&e)),
    }
}

/// `healthcheck`: whether the running daemon answers `/healthz` as healthy.
pub async fn healthcheck(
    config: &Path,
    address: Option<std::net::SocketAddr>,
    timeout_secs: f64,
) -> Outcome {
    // The configuration only for the address: no logging set-up, no file touched.
    let addr = match address {
        Some(a) => a,
        None => {
            Settings::load(config)
                .map_err(|e| fail(exit::CONFIG)(&e))?
                .daemon
                .listen
        }
    };
    let timeout = std::time::Duration::from_secs_f64(timeout_secs.clamp(0.1, 3600.0));
    match crate::healthcheck::probe(crate::healthcheck::address(addr), timeout).await {
        Ok(body) => {
            println!("healthy: {body}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            Err(ExitCode::from(exit::FAILURE))
        }
    }
}

/// `anonymize`: standard input with the names, ids and addresses the alias map knows replaced.
pub fn anonymize(config: &Path, level: &str) -> Outcome {
    let settings = load(config, level, false)?;
    let path = settings.alias_file();
    let a = crate::anon::Anonymizer::load(&path).map_err(|e| fail(exit::STATE)(&e))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| {
        eprintln!("error: cannot read standard input: {e}");
        ExitCode::from(exit::FAILURE)
    })?;
    print!("{}", a.scrub(&text));
    Ok(ExitCode::SUCCESS)
}
