//! The command line: clap definitions (their doc comments are the `--help` text) and the
//! dispatch of each command to the library. Exit codes are part of the interface; see
//! [`exit`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use clap::{Parser, Subcommand};

use crate::config::{Mode, Settings};
use crate::control::Action;
use crate::daemon::{self, DaemonError};
use crate::jellyfin::fleet::Fleet;
use crate::ledger::{Ledger, LedgerHandle};
use crate::reconcile::{self, PassError};
use crate::{check, report};

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

/// Keeps each remote Jellyfin user's bitrate limit at a fair share of your upload link.
///
/// jellydemon reads who is streaming from outside your network (GET /Sessions), splits your
/// upload budget among them, and sets each user's "Internet streaming bitrate limit"
/// (Policy.RemoteClientBitrateLimit). The original limit of every user it changes is kept in a
/// state file and put back by `jellydemon restore`.
///
/// Start with `jellydemon init` (it writes a configuration and checks it), or `jellydemon
/// demo` to see it work without a server; then `jellydemon reconcile --dry-run` shows what it
/// would do.
#[derive(Debug, Parser)]
#[command(name = "jellydemon", version, about, long_about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Configuration file (TOML). Every key can also be set as JELLYDEMON_SECTION__KEY,
    /// e.g. JELLYDEMON_JELLYFIN__API_KEY.
    #[arg(
        long,
        short,
        global = true,
        env = "JELLYDEMON_CONFIG",
        default_value = "/etc/jellydemon/config.toml"
    )]
    pub config: PathBuf,

    /// What to do; without a command, `run`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The command, `run` when none was given.
    pub fn command(&self) -> Command {
        self.command.clone().unwrap_or(Command::Run {
            reconcile_only: false,
            dry_run: false,
        })
    }

    /// The default log level: the daemon tells what it does, one-shot commands only warn (their
    /// table says the rest). `RUST_LOG` overrides both.
    pub fn default_log_level(&self) -> &'static str {
        match self.command() {
            Command::Run { .. } => "info",
            // One-shot commands and the demo (which prints the decisions itself) only warn.
            _ => "warn",
        }
    }
}

const EXIT_CODES: &str = "Exit codes: 0 ok, 1 internal error (healthcheck: not healthy), \
2 bad command line, 3 configuration error, \
4 state file error, 5 Jellyfin unreachable or refused, 6 a write or restore failed, \
7 cannot listen on daemon.listen, 8 the running daemon cannot be reached or refused.";

/// What to do (`run` when none is given).
// Parsed once per process, so `init`'s many flags making its variant large cost nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the daemon (the default): react to the Webhook plugin at POST /hook, reconcile with a
    /// slow poll of /Sessions, serve /healthz and /api/state. SIGTERM or SIGINT put every
    /// original limit back (daemon.restore_on_exit) and exit.
    Run {
        /// Poll /Sessions only, no webhooks (same as daemon.mode = "reconcile-only").
        #[arg(long)]
        reconcile_only: bool,
        /// Compute and report, write nothing (not even the state file).
        #[arg(long)]
        dry_run: bool,
    },
    /// Compute every remote user's limit once, write what changed, print a table, exit.
    ///
    /// The table shows each managed user: where they stream from, how many streams, their
    /// current rate, the old and new limit, and why.
    Reconcile {
        /// One pass and exit: what `reconcile` always does (kept for scripts that say so).
        #[arg(long)]
        once: bool,
        /// Compute and print, write nothing (not even the state file).
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the configuration and the connection: reachability, version, the API key and its
    /// rights, the sessions and how each is classified, proxy and LAN set-up problems.
    Check,
    /// Put every user's original limit back and empty the state file.
    ///
    /// Each user is tried again until the timeout. A limit jellydemon sent that Jellyfin never
    /// answered (the process was killed while it waited) may still be applied: such a user is
    /// read again only once that can no longer happen (twice jellyfin.timeout after it was
    /// sent), so the restore may wait that long.
    Restore {
        /// How long to keep trying; the users not restored by then stay in the state file.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
        timeout: std::time::Duration,
    },
    /// See it work without a server: the real daemon against a built-in simulated Jellyfin with
    /// scripted remote and local streamers joining and leaving. Prints what happens and serves
    /// the status page. Needs no configuration file.
    #[cfg(feature = "demo")]
    Demo {
        /// Where the status page is served.
        #[arg(long, default_value = "127.0.0.1:8098")]
        listen: std::net::SocketAddr,
        /// Seconds between two scripted events.
        #[arg(long, default_value_t = 4.0)]
        step_secs: f64,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long)]
        duration_secs: Option<f64>,
    },
    /// Write a first configuration: asks for Jellyfin's URL, an API key (checked: valid, an
    /// administrator's), the upload speed and whether the Webhook plugin will call; writes
    /// config.toml (at --config) with the key in a file beside it; then runs `check`. Every
    /// question has a flag, so it also runs from a script.
    Init {
        /// Jellyfin's URL, with its base path if any (default offered: http://127.0.0.1:8096
        /// when it answers).
        #[arg(long)]
        url: Option<String>,
        /// Read the API key from this file instead of asking (keeps it out of the process list
        /// and the shell history).
        #[arg(long)]
        api_key_file: Option<PathBuf>,
        /// The upload speed of the internet link, in Mbps.
        #[arg(long, value_parser = positive_mbps)]
        upload_mbps: Option<f64>,
        /// The Webhook plugin will call jellydemon (a webhook secret is generated).
        #[arg(long, conflicts_with = "no_webhooks")]
        webhooks: bool,
        /// No webhooks: poll Jellyfin instead.
        #[arg(long)]
        no_webhooks: bool,
        /// Where the daemon listens (default: 127.0.0.1:8098, or 0.0.0.0:8098 when webhooks
        /// come from another machine).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Where the ledger of original limits goes (default /var/lib/jellydemon/state.json).
        #[arg(long)]
        state_file: Option<PathBuf>,
        /// A torrent client seeding on the link: none, qbittorrent or transmission.
        #[arg(long)]
        torrent: Option<String>,
        /// Its WebUI / RPC URL (default http://127.0.0.1:8080, :9091 for Transmission).
        #[arg(long)]
        torrent_url: Option<String>,
        /// Its user name (empty: no login).
        #[arg(long)]
        torrent_username: Option<String>,
        /// Read its password from this file instead of asking.
        #[arg(long)]
        torrent_password_file: Option<PathBuf>,
        /// A Plex server streaming on the same link: its URL (`none`: there is none).
        #[arg(long)]
        plex_url: Option<String>,
        /// Read the Plex server owner's X-Plex-Token from this file instead of asking.
        #[arg(long)]
        plex_token_file: Option<PathBuf>,
        /// Another Jellyfin or Emby server streaming on the same link: its URL (`none`: there
        /// is none).
        #[arg(long)]
        server_url: Option<String>,
        /// Read an administrator's API key of that server from this file instead of asking.
        #[arg(long)]
        server_api_key_file: Option<PathBuf>,
        /// Overwrite config.toml and the key files if they exist.
        #[arg(long)]
        force: bool,
    },
    /// Turn the Python JellyDemon's config.yml into config.toml (at --config, with the API
    /// key in a file beside it), printing what each of its keys became or why it has no
    /// equivalent. Writes nothing when the file cannot be converted.
    ImportConfig {
        /// The Python JellyDemon's config.yml.
        file: PathBuf,
        /// Read the API key from this file instead of config.yml's jellyfin.api_key (which
        /// may then be missing or the example's placeholder).
        #[arg(long)]
        api_key_file: Option<PathBuf>,
        /// Overwrite config.toml and api_key if they exist.
        #[arg(long)]
        force: bool,
    },
    /// Write one text file for a bug report: the version, `check`, the configuration with
    /// every secret removed, what a pass would do now, the running daemon's last decisions
    /// and recent log lines. Names, ids and addresses are always replaced by aliases. Nothing
    /// is uploaded.
    Report {
        /// Where to write it; `-` for standard output.
        #[arg(long, short, default_value = "jellydemon-report.txt")]
        output: PathBuf,
        /// The log to take the last lines of: a file, or `-` to read it from standard input
        /// (e.g. `journalctl -u jellydemon -n 500 | jellydemon report --log -`). Default:
        /// logging.file.
        #[arg(long)]
        log: Option<PathBuf>,
        /// How many log lines.
        #[arg(long, default_value_t = 200)]
        lines: usize,
        /// Where the running daemon listens, if not at daemon.listen.
        #[arg(long)]
        address: Option<std::net::SocketAddr>,
    },
    /// Send a test message to each notification target (`[[notify]]`) and say what each
    /// answered: exit 0 when every one took it, 1 when one did not.
    Notify {
        /// Send the test message (the only action so far; required, so that a bare `notify`
        /// sends nothing by surprise).
        #[arg(long, required = true)]
        test: bool,
        /// Only the target with this name.
        #[arg(long)]
        target: Option<String>,
    },
    /// Ask the running daemon whether it is healthy (GET /healthz on daemon.listen): exit 0
    /// when it is, 1 when not. For container health checks; needs no shell or curl.
    Healthcheck {
        /// Ask this address instead of daemon.listen from the configuration.
        #[arg(long)]
        address: Option<std::net::SocketAddr>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5.0)]
        timeout_secs: f64,
    },
    /// Scrub a log written before logging.anonymize was on: reads standard input, writes
    /// standard output, replacing every name, id and address in the saved alias map (and any
    /// other IP address) by its alias. Example: jellydemon anonymize < old.log > shared.log
    Anonymize,
    /// Pause the running daemon: every original limit (Jellyfin's and the torrent clients')
    /// is put back now and held until `resume`, across restarts.
    Pause {
        /// For how long ("2h", "30m"); default: until `resume`.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        for_: Option<std::time::Duration>,
        /// Where the running daemon is.
        #[command(flatten)]
        daemon: DaemonAt,
    },
    /// End a pause: limits are managed again at once.
    Resume {
        /// Where the running daemon is.
        #[command(flatten)]
        daemon: DaemonAt,
    },
    /// Give one user a fixed limit, whatever the budget.
    Pin {
        /// The user's name (any case) or id.
        user: String,
        /// The limit, Mbps.
        mbps: f64,
        /// For how long; default: until `clear`.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        for_: Option<std::time::Duration>,
        /// Where the running daemon is.
        #[command(flatten)]
        daemon: DaemonAt,
    },
    /// Leave one user alone: the original limit back, never touched until `clear`.
    Exempt {
        /// The user's name (any case) or id.
        user: String,
        /// For how long; default: until `clear`.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        for_: Option<std::time::Duration>,
        /// Where the running daemon is.
        #[command(flatten)]
        daemon: DaemonAt,
    },
    /// Give one user a weight (with algorithm priority or demand; 1 is everyone's default).
    Weight {
        /// The user's name (any case) or id.
        user: String,
        /// The weight, above 0, at most 100.
        weight: f64,
        /// For how long; default: until `clear`.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        for_: Option<std::time::Duration>,
        /// Where the running daemon is.
        #[command(flatten)]
        daemon: DaemonAt,
    },
    /// Remove one user's pin, exemption or weight.
    Clear {
        /// The user's name (any case) or id.
        user: String,
        /// Where the running daemon is.
        #[command(flatten)]
        daemon: DaemonAt,
    },
    /// Keep part of the budget free (your own upload); 0 removes the reserve.
    Reserve {
        /// Mbps kept free.
        mbps: f64,
        /// For how long; default: until `reserve 0`.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        for_: Option<std::time::Duration>,
        /// Where the running daemon is.
        #[command(flatten)]
        daemon: DaemonAt,
    },
    /// What the history says: per user hours streamed from outside, mean rate, the share of
    /// play time at the full source bitrate, transcodes and pushes; time over budget per day;
    /// the busiest hours of the week. Reads the history database (`[history]`); the daemon
    /// may keep running.
    Stats {
        /// The period, back from now ("24h", "7d", "30d").
        #[arg(long, value_parser = humantime::parse_duration, default_value = "7d")]
        since: std::time::Duration,
        /// Only this user's plays (the link figures stay whole).
        #[arg(long)]
        user: Option<String>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// List the running daemon's overrides (pause, pins, exemptions, weights, reserve), who
    /// set each and when it ends.
    Overrides {
        /// Where the running daemon is.
        #[command(flatten)]
        daemon: DaemonAt,
    },
}

/// Where the running daemon is, for the commands that talk to it.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonAt {
    /// Where the running daemon listens, if not at daemon.listen.
    #[arg(long)]
    address: Option<std::net::SocketAddr>,
}

/// SIGTERM and SIGINT stop the daemon. SIGHUP (config reload) is not supported: the listener,
/// the secret and the ledger path are bound at start, and a restart is cheap. It is logged and
/// otherwise ignored, rather than killing the process as its default action would.
async fn watch_signals(shutdown: CancellationToken) {
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

/// Send `action` to the running daemon (or, with none, ask for its overrides) and print what
/// it says.
async fn control(
    cli: &Cli,
    daemon: DaemonAt,
    action: Option<Action>,
) -> Result<ExitCode, ExitCode> {
    // The configuration only for the address and the secret: no logging set-up, no file
    // touched.
    let settings = Settings::load(&cli.config).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(exit::CONFIG)
    })?;
    let fail = |e: crate::ctl::CtlError| {
        eprintln!("error: {e}");
        ExitCode::from(exit::DAEMON)
    };
    let target = crate::ctl::Target::new(&settings, daemon.address).map_err(fail)?;
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

/// Load the configuration and set up logging (and anonymization) from it. `dry_run` (the
/// command line's) joins `daemon.dry_run` first: a dry run writes no file at all.
fn load(path: &std::path::Path, default_level: &str, dry_run: bool) -> Result<Settings, ExitCode> {
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
fn load_read_only(path: &std::path::Path, default_level: &str) -> Result<Settings, ExitCode> {
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
async fn sqm(settings: &mut Settings) -> Result<(), ExitCode> {
    crate::budget::sqm::resolve(settings).await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(exit::CONFIG)
    })
}

/// Every Jellyfin and Emby server the configuration names.
fn client(settings: &Settings) -> Result<Fleet, ExitCode> {
    Fleet::from_settings(settings).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(exit::CONFIG)
    })
}

/// The ledger, as its one writer unless `dry_run`.
fn open_ledger(settings: &Settings, dry_run: bool) -> Result<Ledger, ExitCode> {
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

/// A number of Mbps > 0.
fn positive_mbps(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1_000_000.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of Mbps > 0")),
    }
}

/// `init`, then a summary, the Webhook plugin's settings and `check` on what was written.
async fn init(opts: &crate::init::Options, level: &str) -> Result<ExitCode, ExitCode> {
    use crate::init::InitError;
    let mut prompt = crate::init::Prompt::stdio();
    let w = crate::init::run(opts, &mut prompt).await.map_err(|e| {
        eprintln!("error: {e}; nothing was written");
        ExitCode::from(match e {
            InitError::Exists(_) | InitError::Io(_) => exit::CONFIG,
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
    let report = check::check(&settings).await;
    print!("{}", crate::anon::reveal(&report.to_string()));
    if report.failed() {
        Err(ExitCode::from(exit::JELLYFIN))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// `import-config`: convert, write config.toml and the secrets' files, print the notes.
fn import_config(
    file: &std::path::Path,
    key_file: Option<&std::path::Path>,
    config: &std::path::Path,
    force: bool,
) -> Result<ExitCode, ExitCode> {
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
    let w = crate::import::write(&c, config, force).map_err(fail)?;
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

/// Run the parsed command and map the outcome to an exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match dispatch(cli).await {
        Ok(code) | Err(code) => code,
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode, ExitCode> {
    let level = cli.default_log_level();
    match cli.command() {
        Command::Run {
            reconcile_only,
            dry_run,
        } => {
            let mut settings = load(&cli.config, level, dry_run)?;
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
        Command::Reconcile { once: _, dry_run } => {
            let mut settings = load(&cli.config, level, dry_run)?;
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
                        check::explain(&e, &settings.jellyfin.url, &settings)
                    );
                    Err(ExitCode::from(exit::JELLYFIN))
                }
                Err(PassError::Ledger(e)) => {
                    eprintln!("error: {e}");
                    Err(ExitCode::from(exit::STATE))
                }
            }
        }
        Command::Check => {
            // A check writes nothing: not even the aliases it shows.
            let mut settings = load_read_only(&cli.config, level)?;
            let sqm = crate::budget::sqm::resolve(&mut settings).await.err();
            let mut report = check::check(&settings).await;
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
        #[cfg(feature = "demo")]
        Command::Demo {
            listen,
            step_secs,
            duration_secs,
        } => {
            let _ = crate::telemetry::init(None, level, false);
            let secs = |s: f64| std::time::Duration::from_secs_f64(s.max(0.05));
            let shutdown = CancellationToken::new();
            tokio::spawn(watch_signals(shutdown.clone()));
            let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
                eprintln!("error: cannot listen on {listen} ({e}): pass --listen ADDR");
                ExitCode::from(exit::LISTEN)
            })?;
            match crate::sim::demo::run(
                listener,
                secs(step_secs),
                duration_secs.map(secs),
                shutdown,
            )
            .await
            {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    Err(ExitCode::from(exit::FAILURE))
                }
            }
        }
        Command::Init {
            url,
            api_key_file,
            upload_mbps,
            webhooks,
            no_webhooks,
            listen,
            state_file,
            torrent,
            torrent_url,
            torrent_username,
            torrent_password_file,
            plex_url,
            plex_token_file,
            server_url,
            server_api_key_file,
            force,
        } => {
            let opts = crate::init::Options {
                config: cli.config.clone(),
                url,
                api_key_file,
                upload_mbps,
                webhooks: (webhooks || no_webhooks).then_some(webhooks),
                listen,
                state_file,
                torrent,
                torrent_url,
                torrent_username,
                torrent_password_file,
                plex_url,
                plex_token_file,
                server_url,
                server_api_key_file,
                force,
            };
            init(&opts, level).await
        }
        Command::ImportConfig {
            file,
            api_key_file,
            force,
        } => import_config(&file, api_key_file.as_deref(), &cli.config, force),
        Command::Notify { test: _, target } => {
            let settings = load(&cli.config, level, false)?;
            let results = crate::notify::send_test(&settings, target.as_deref())
                .await
                .map_err(|e| {
                    eprintln!("error: {e}");
                    ExitCode::from(exit::CONFIG)
                })?;
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
        Command::Report {
            output,
            log,
            lines,
            address,
        } => {
            let _ = crate::telemetry::init(None, "warn", false);
            let opts = crate::bugreport::Options {
                config: cli.config.clone(),
                log,
                lines,
                address,
            };
            let text = crate::bugreport::gather(&opts).await;
            if output == std::path::Path::new("-") {
                print!("{text}");
                return Ok(ExitCode::SUCCESS);
            }
            crate::files::write_private(&output, text.as_bytes()).map_err(|e| {
                eprintln!("error: cannot write {}: {e}", output.display());
                ExitCode::from(exit::FAILURE)
            })?;
            println!(
                "wrote {}: names, ids and addresses are aliased and secrets removed; read it \
                 before you attach it to a bug report",
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Pause { for_, daemon } => {
            control(&cli, daemon, Some(Action::Pause { for_ })).await
        }
        Command::Resume { daemon } => control(&cli, daemon, Some(Action::Resume)).await,
        Command::Pin {
            user,
            mbps,
            for_,
            daemon,
        } => control(&cli, daemon, Some(Action::Pin { user, mbps, for_ })).await,
        Command::Exempt { user, for_, daemon } => {
            control(&cli, daemon, Some(Action::Exempt { user, for_ })).await
        }
        Command::Weight {
            user,
            weight,
            for_,
            daemon,
        } => control(&cli, daemon, Some(Action::Weight { user, weight, for_ })).await,
        Command::Clear { user, daemon } => {
            control(&cli, daemon, Some(Action::Clear { user })).await
        }
        Command::Reserve { mbps, for_, daemon } => {
            control(&cli, daemon, Some(Action::Reserve { mbps, for_ })).await
        }
        Command::Overrides { daemon } => control(&cli, daemon, None).await,
        Command::Stats { since, user, json } => {
            // Names as the owner knows them: this is the owner's terminal (`report` is the
            // output to share).
            let settings = Settings::load(&cli.config).map_err(|e| {
                eprintln!("error: {e}");
                ExitCode::from(exit::CONFIG)
            })?;
            let path = settings.history.path(&settings.state.file);
            if !settings.history.enabled && !path.exists() {
                eprintln!("error: the history is off (history.enabled = false)");
                return Err(ExitCode::from(exit::CONFIG));
            }
            let now = crate::clock::unix_millis_now();
            let from = now.saturating_sub(since.as_millis() as u64);
            let tz = settings.timezone();
            match crate::history::stats::load(&path, from, now, user.as_deref(), &tz, 1) {
                Ok((stats, _)) if json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&stats).expect("serializes")
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Ok((stats, _)) => {
                    print!("{}", crate::history::stats::render(&stats));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Err(ExitCode::from(exit::STATE))
                }
            }
        }
        Command::Healthcheck {
            address,
            timeout_secs,
        } => {
            // The configuration only for the address: no logging set-up, no file touched.
            let addr = match address {
                Some(a) => a,
                None => {
                    Settings::load(&cli.config)
                        .map_err(|e| {
                            eprintln!("error: {e}");
                            ExitCode::from(exit::CONFIG)
                        })?
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
        Command::Anonymize => {
            let settings = load(&cli.config, level, false)?;
            let path = settings.alias_file();
            let a = crate::anon::Anonymizer::load(&path).map_err(|e| {
                eprintln!("error: {e}");
                ExitCode::from(exit::STATE)
            })?;
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| {
                eprintln!("error: cannot read standard input: {e}");
                ExitCode::from(exit::FAILURE)
            })?;
            print!("{}", a.scrub(&text));
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { timeout } => {
            let settings = load(&cli.config, level, false)?;
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
    }
}
