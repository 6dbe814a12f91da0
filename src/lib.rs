//! jellydemon keeps each remote Jellyfin user's bitrate limit
//! (`Policy.RemoteClientBitrateLimit`) at a fair share of the server's upload link.
//!
//! # Layout
//! Data flows one way: inputs (webhooks, the poll of `/Sessions` and `/Users`) -> engine
//! (plan) -> writer -> Jellyfin. The folders and modules from the bottom up; each imports only
//! what is listed before it:
//!
//! 1. helpers: `sync` (locking), `files` (atomic owner-only writes), `clock` (unix time,
//!    backoff), [`escape`] (outside text made safe to print), [`redact`] (what a secret is,
//!    and how it is taken out of messages, URLs and `report`), [`fds`] (the open-file limit
//!    and the connection cap under it), [`healthcheck`] (a container's health check); `anon`
//!    (the alias map) and [`ids`] (user, session and device ids and names, client addresses,
//!    the other servers' id prefix: typed, normalized once, shown as their alias when
//!    anonymizing, escaped);
//! 2. what the owner wrote, parsed: [`network`] (who is remote) and [`config`] (validated at
//!    load, secrets redacted); `telemetry` (logging) and `metrics` beside them;
//! 3. [`core`], the pure core, no I/O: [`core::rate`] (bit rates as Mbps), [`core::media`] (a
//!    server's users and sessions in the core's own terms, what the adapters map their answers
//!    and webhooks into), [`core::control`] (the owner's overrides: pause, pin, exempt,
//!    weight, reserve), [`core::allocate`] (weighted water-filling) and [`core::plan`] (the
//!    rule that sets limits, one function per step; `plan::memory` is what the daemon
//!    remembers between plans; `plan::transcode` keeps streams direct within
//!    `[transcoding] capacity`; the originals come in as data, `plan::Originals`; each
//!    decision's reason is a value, `plan::Reason`, put in words only when shown);
//! 4. [`adapters`], the outside world in the core's terms: [`adapters::webhook`] (the
//!    plugins' bodies), [`adapters::jellyfin`] (the client and DTOs, lossless policy
//!    read-modify-write, the fleet of servers), [`adapters::downloader`] (the torrent clients,
//!    each read and set in the setting that bites), [`adapters::plex`], [`adapters::budget`]
//!    (the budget in force: static, scheduled or metered by the router, less what other media
//!    servers stream), [`adapters::ledger`] (the originals, Jellyfin's and the torrent
//!    clients', in the state file; `LedgerHandle` is how tasks share it),
//!    [`adapters::overrides`] (the overrides' file), [`adapters::notify`] and
//!    [`adapters::history`] (the SQLite database of plays, samples, decisions and actions, its
//!    writer thread and `stats`);
//! 5. the I/O around a plan: [`write`](mod@write) (the `Applier`: decisions in order, writes
//!    under the rate limit, the ledger's intent first, then the pushes), `throttle` (a torrent
//!    client's limit set and put back under the ledger's rules), [`snapshot`] (what a pass
//!    plans from: the servers' read, hand changes, the plan made from it), [`reconcile`] (one
//!    pass: read, plan, apply; `restore`), [`report`] (tables), [`check`], [`ctl`] (the
//!    commands that ask the running daemon); and the commands for a new user: [`init`] (a
//!    first configuration), [`import`] (from the Python JellyDemon's config.yml), both written
//!    by [`folder`] (config.toml and its secrets' files), [`bugreport`] (`jellydemon report`);
//! 6. [`daemon`]: `jellydemon run`, one folder: listener -> http (with access) -> engine ->
//!    writer, the other servers' watch (members), the torrent clients' and media servers'
//!    tasks (seeders, servers), all recording into status; the restoring shutdown;
//!    `daemon::schedule` is the engine's pure rule of when to plan and why, and
//!    `daemon::engine::logic` its core without I/O (what each input does, as effects for the
//!    task to carry out);
//! 7. [`sim`] (the default `demo` feature): the fake Jellyfin, `jellydemon demo` and the
//!    effectiveness yardstick, which runs the engine's own core (`daemon::engine::logic`);
//! 8. [`commands`]: one function per command (load what it needs, work through the library,
//!    print for the owner, end with an exit code); [`cli`]: the command line (clap) and which
//!    of them each command is; `main.rs` only calls it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod adapters;
pub(crate) mod anon;
pub mod bugreport;
pub mod check;
pub mod cli;
pub(crate) mod clock;
pub mod commands;
pub mod config;
pub mod core;
pub mod ctl;
pub mod daemon;
pub mod escape;
pub mod fds;
pub(crate) mod files;
pub mod folder;
pub mod healthcheck;
pub mod ids;
pub mod import;
pub mod init;
pub(crate) mod metrics;
pub mod network;
pub mod reconcile;
pub mod redact;
pub mod report;
#[cfg(feature = "demo")]
pub mod sim;
pub mod snapshot;
pub(crate) mod sync;
pub(crate) mod telemetry;
pub mod throttle;
pub mod write;
