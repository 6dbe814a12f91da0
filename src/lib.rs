//! jellydemon keeps each remote Jellyfin user's bitrate limit
//! (`Policy.RemoteClientBitrateLimit`) at a fair share of the server's upload link.
//!
//! # Layout
//! Data flows one way: inputs (webhooks, the poll of `/Sessions` and `/Users`) -> engine
//! (plan) -> writer -> Jellyfin. The modules from the bottom up; each imports only modules
//! listed before it:
//!
//! 1. helpers: `sync` (locking), `files` (atomic owner-only writes), `clock` (unix time,
//!    backoff), `units` (bit rates as Mbps), [`escape`] (outside text made safe to print),
//!    [`redact`] (what a secret is, and how it is taken out of messages, URLs and `report`),
//!    [`fds`] (the open-file limit and the connection cap under it), [`healthcheck`] (a
//!    container's health check); `anon` (the alias map) and [`ids`] (user, session and device
//!    ids and names, client addresses, the other servers' id prefix: typed, normalized once,
//!    shown as their alias when anonymizing, escaped); [`media`] (a server's users and sessions
//!    in the core's own terms, what the adapters below map their answers and webhooks into);
//! 2. the outside world, parsed: [`network`] (who is remote), [`webhook`] (the plugins'
//!    bodies), then [`config`] (validated at load, secrets redacted), [`jellyfin`] (the client
//!    and DTOs, lossless policy read-modify-write, the fleet of servers), `downloader` (the
//!    torrent clients, qBittorrent and Transmission, each read and set in the setting that
//!    bites) and [`plex`] (what a Plex server on the same link streams outside the house);
//! 3. the pure core: [`control`] (the owner's overrides: pause, pin, exempt, weight,
//!    reserve), [`allocate`] (weighted water-filling) and [`plan`] (the rule that sets
//!    limits, one function per step; `plan::memory` is what the daemon remembers between
//!    plans; `plan::transcode` keeps streams direct within `[transcoding] capacity`; the
//!    originals come in as data, `plan::Originals`, a copy the ledger hands over); `telemetry`
//!    beside them;
//! 4. the I/O around a plan: [`ledger`] (the originals, Jellyfin's and the torrent clients',
//!    in the state file; `LedgerHandle` is how tasks share it), `metrics`, [`budget`] (the
//!    budget in force: static, scheduled or metered, less what other media servers stream),
//!    [`write`](mod@write) (the `Applier`: decisions in order, writes under the rate limit,
//!    the ledger's intent first, then the pushes), `throttle` (a torrent client's limit set
//!    and put back under the ledger's rules), [`snapshot`] (what a pass plans from: the
//!    servers' read, hand changes, the plan made from it), [`reconcile`] (one pass: read,
//!    plan, apply; `restore`), [`report`] (tables), [`check`], [`history`] (the SQLite
//!    database of plays, samples, decisions and actions, its writer thread and `stats`),
//!    [`ctl`] (the commands that ask the running daemon); and the commands for a new user:
//!    [`init`] (a first configuration), [`import`] (from the Python JellyDemon's
//!    config.yml), both written by [`folder`] (config.toml and its secrets' files),
//!    [`bugreport`] (`jellydemon report`);
//! 5. [`daemon`]: `jellydemon run`, one folder: listener -> http (with access) -> engine ->
//!    writer, the other servers' watch (members), the torrent clients' and media servers'
//!    tasks (seeders, servers), all recording into status; the restoring shutdown;
//!    `daemon::schedule` is the engine's pure rule of when to plan and why, and
//!    `daemon::engine::logic` its core without I/O (what each input does, as effects for the
//!    task to carry out);
//! 6. [`sim`] (the default `demo` feature): the fake Jellyfin, `jellydemon demo` and the
//!    effectiveness yardstick, which runs the engine's own core (`daemon::engine::logic`);
//! 7. [`commands`]: one function per command (load what it needs, work through the library,
//!    print for the owner, end with an exit code); [`cli`]: the command line (clap) and which
//!    of them each command is; `main.rs` only calls it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod allocate;
pub(crate) mod anon;
pub mod budget;
pub mod bugreport;
pub mod check;
pub mod cli;
pub(crate) mod clock;
pub mod commands;
pub mod config;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod downloader;
pub mod escape;
pub mod fds;
pub(crate) mod files;
pub mod folder;
pub mod healthcheck;
pub mod history;
pub mod ids;
pub mod import;
pub mod init;
pub mod jellyfin;
pub mod ledger;
pub mod media;
pub(crate) mod metrics;
pub mod network;
pub mod notify;
pub mod plan;
pub mod plex;
pub mod reconcile;
pub mod redact;
pub mod report;
#[cfg(feature = "demo")]
pub mod sim;
pub mod snapshot;
pub(crate) mod sync;
pub(crate) mod telemetry;
pub mod throttle;
pub(crate) mod units;
pub mod webhook;
pub mod write;
