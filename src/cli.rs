//! The command line: clap definitions (their doc comments are the `--help` text), and which
//! function of `src/commands/` each command is. Exit codes are part of the interface; see
//! [`exit`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands;
pub use crate::commands::exit;
use crate::core::control::Action;

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

/// A number of Mbps > 0.
fn positive_mbps(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1_000_000.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of Mbps > 0")),
    }
}

/// Run the parsed command and map the outcome to an exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match dispatch(cli).await {
        Ok(code) | Err(code) => code,
    }
}

async fn dispatch(cli: Cli) -> commands::Outcome {
    let level = cli.default_log_level();
    let config = cli.config.as_path();
    let ask = |daemon: DaemonAt, action: Option<Action>| {
        commands::control(config, daemon.address, action)
    };
    match cli.command() {
        Command::Run {
            reconcile_only,
            dry_run,
        } => commands::run(config, level, reconcile_only, dry_run).await,
        Command::Reconcile { once: _, dry_run } => {
            commands::reconcile(config, level, dry_run).await
        }
        Command::Check => commands::check(config, level).await,
        #[cfg(feature = "demo")]
        Command::Demo {
            listen,
            step_secs,
            duration_secs,
        } => commands::demo(level, listen, step_secs, duration_secs).await,
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
            commands::init(&opts, level).await
        }
        Command::ImportConfig {
            file,
            api_key_file,
            force,
        } => commands::import_config(&file, api_key_file.as_deref(), config, force),
        Command::Notify { test: _, target } => {
            commands::notify_test(config, level, target.as_deref()).await
        }
        Command::Report {
            output,
            log,
            lines,
            address,
        } => {
            let opts = crate::bugreport::Options {
                config: cli.config.clone(),
                log,
                lines,
                address,
            };
            commands::report(opts, &output).await
        }
        Command::Pause { for_, daemon } => ask(daemon, Some(Action::Pause { for_ })).await,
        Command::Resume { daemon } => ask(daemon, Some(Action::Resume)).await,
        Command::Pin {
            user,
            mbps,
            for_,
            daemon,
        } => ask(daemon, Some(Action::Pin { user, mbps, for_ })).await,
        Command::Exempt { user, for_, daemon } => {
            ask(daemon, Some(Action::Exempt { user, for_ })).await
        }
        Command::Weight {
            user,
            weight,
            for_,
            daemon,
        } => ask(daemon, Some(Action::Weight { user, weight, for_ })).await,
        Command::Clear { user, daemon } => ask(daemon, Some(Action::Clear { user })).await,
        Command::Reserve { mbps, for_, daemon } => {
            ask(daemon, Some(Action::Reserve { mbps, for_ })).await
        }
        Command::Overrides { daemon } => ask(daemon, None).await,
        Command::Stats { since, user, json } => {
            commands::stats(config, since, user.as_deref(), json)
        }
        Command::Healthcheck {
            address,
            timeout_secs,
        } => commands::healthcheck(config, address, timeout_secs).await,
        Command::Anonymize => commands::anonymize(config, level),
        Command::Restore { timeout } => commands::restore(config, level, timeout).await,
    }
}
