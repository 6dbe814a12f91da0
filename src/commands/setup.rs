//! `init` (a first configuration, asked for or given as flags, then checked) and
//! `import-config` (from the Python JellyDemon's `config.yml`).

use std::process::ExitCode;

use super::{Outcome, exit, load};

/// `init`, then a summary, the Webhook plugin's settings and `check` on what was written.
pub async fn init(opts: &crate::init::Options, level: &str) -> Outcome {
    use crate::init::InitError;
    let mut prompt = crate::init::Prompt::stdio();
    let w = crate::init::run(opts, &mut prompt).await.map_err(|e| {
        eprintln!("error: {e}; nothing was written");
        ExitCode::from(match e {
            InitError::Folder(_) | InitError::Io(_) => exit::CONFIG,
            InitError::NoAnswer { .. } => exit::USAGE,
            InitError::Rejected(_) => exit::JELLYFIN,
        })
    })?;
    let a = &w.answers;
    println!(
        "wrote {} ({} at {}, {} Mbps upload, {})",
        w.config.display(),
        a.server,
        a.url,
        a.upload_mbps,
        if a.webhooks {
            "webhooks"
        } else {
            "polling only"
        }
    );
    println!("wrote {} (the API key, owner-only)", w.api_key.display());
    let t = &w.webhook_token;
    println!("wrote {} (the webhook secret, owner-only)", t.display());
    if a.webhooks {
        println!();
        println!("In Jellyfin's Webhook plugin, add a Generic Destination:");
        let host = if a.listen.ip().is_unspecified() {
            "<this machine's address>".to_string()
        } else {
            a.listen.ip().to_string()
        };
        println!("  Webhook URL: http://{host}:{}/hook", a.listen.port());
        println!(
            "  a header X-Jellydemon-Token holding the content of {}",
            t.display()
        );
        println!("  the template and the other settings: webhook-templates/README.md");
    }
    println!();
    println!(
        "Checking it (jellydemon --config {} check):",
        w.config.display()
    );
    let settings = load(&w.config, level, false)?;
    let report = crate::check::check(&settings).await;
    print!("{}", crate::anon::reveal(&report.to_string()));
    if report.failed() {
        Err(ExitCode::from(exit::JELLYFIN))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// `import-config`: convert, write config.toml and the secrets' files, print the notes.
pub fn import_config(
    file: &std::path::Path,
    key_file: Option<&std::path::Path>,
    config: &std::path::Path,
    force: bool,
) -> Outcome {
    let fail = |msg: String| {
        eprintln!("error: {msg}; nothing was written");
        ExitCode::from(exit::CONFIG)
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?;
    let key = match key_file {
        Some(k) => {
            let key = std::fs::read_to_string(k)
                .map_err(|e| fail(format!("cannot read the API key from {}: {e}", k.display())))?;
            if key.trim().is_empty() {
                return Err(fail(format!("{} is empty", k.display())));
            }
            Some(secrecy::SecretString::from(key.trim().to_string()))
        }
        None => None,
    };
    let c = crate::import::convert_with_key(&text, key)
        .map_err(|e| fail(format!("{}: {e}", file.display())))?;
    let w = crate::import::write(&c, config, force).map_err(|e| fail(e.to_string()))?;
    println!("{} -> {}", file.display(), w.config.display());
    for (from, to) in &c.notes {
        println!("  {from}: {to}");
    }
    println!(
        "wrote {}, {} (the API key) and {} (a new webhook secret), the last two owner-only",
        w.config.display(),
        w.api_key.display(),
        w.webhook_token.display()
    );
    println!("next: jellydemon --config {} check", w.config.display());
    Ok(ExitCode::SUCCESS)
}
