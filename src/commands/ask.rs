//! The commands that talk to the running daemon: `pause`, `resume`, `pin`, `exempt`,
//! `weight`, `clear`, `reserve` and `overrides`.

use std::path::Path;
use std::process::ExitCode;

use super::{Outcome, exit};
use crate::config::Settings;
use crate::core::control::Action;

/// Send `action` to the running daemon (or, with none, ask for its overrides) and print what
/// it says.
pub async fn control(
    config: &Path,
    address: Option<std::net::SocketAddr>,
    action: Option<Action>,
) -> Outcome {
    // The configuration only for the address and the secret: no logging set-up, no file
    // touched.
    let settings = Settings::load(config).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(exit::CONFIG)
    })?;
    let fail = |e: crate::ctl::CtlError| {
        eprintln!("error: {e}");
        ExitCode::from(exit::DAEMON)
    };
    let target = crate::ctl::Target::new(&settings, address).map_err(fail)?;
    let answer = match &action {
        Some(a) => target.send(a).await.map_err(fail)?,
        None => target.state().await.map_err(fail)?,
    };
    if let Some(done) = answer.get("done").and_then(serde_json::Value::as_str) {
        println!("{}", crate::escape::escape_controls(done));
    }
    print!("{}", crate::ctl::render_overrides(&answer));
    Ok(ExitCode::SUCCESS)
}
