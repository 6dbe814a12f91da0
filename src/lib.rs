//! jellydemon keeps each remote Jellyfin user's bitrate limit
//! (`Policy.RemoteClientBitrateLimit`) at a fair share of the server's upload link.
//!
//! # Layout
//! Data flows one way: inputs (webhooks, the poll of `/Sessions` and `/Users`) -> engine
//! (plan) -> writer -> Jellyfin.
//!
//! * [`access`]: who may use which HTTP endpoint: secrets, sign-in sessions, allowed hosts.
//! * [`anon`]: stable aliases for personal values in everything jellydemon emits.
//! * [`ids`]: user, session and device ids and names, client addresses: typed, normalized
//!   once, shown as their aliases when anonymizing.
//! * [`config`]: the TOML/env configuration, validated at load; secrets stay redacted.
//! * [`clock`]: unix seconds and the one exponential backoff.
//! * [`cli`]: the command line and its exit codes; `main.rs` only calls it.
//! * [`jellyfin`]: the HTTP client and the few DTOs we read; lossless policy read-modify-write.
//! * [`network`]: parsing `RemoteEndPoint` and classifying it as local or remote (pure).
//! * [`allocate`]: the allocation algorithms, weighted max-min water-filling (pure).
//! * [`plan`]: from a snapshot of Jellyfin and the ledger to one decision per user (pure).
//! * [`files`]: atomic, owner-only writes of the daemon's own files.
//! * [`ledger`]: the users' original limits, persisted atomically in the state file.
//! * [`reconcile`]: one pass (fetch, plan, write) and `restore`; the I/O around `plan`.
//! * [`write`]: one decision written (read-modify-write with the ledger's intent first) and
//!   its pushes; the daemon's writer and `reconcile --once` both call it.
//! * [`webhook`]: parsing the Webhook plugin's bodies (pure).
//! * [`engine`]: the daemon's one task that owns the model, debounces events, polls and plans.
//! * [`writer`]: governed, retried policy writes and `SetMaxStreamingBitrate` pushes.
//! * [`http`]: the router (`/hook`, `/healthz`, `/api/state`).
//! * [`listener`]: accepting connections with timeouts, a connection cap and a bounded drain.
//! * [`daemon`]: `jellydemon run`, wiring the above, and the restoring shutdown.
//! * [`metrics`]: the Prometheus metrics, also the counters behind `/api/state`.
//! * [`demo`]: `jellydemon demo`, the real daemon against the built-in simulated Jellyfin.
//! * [`check`]: the connectivity and set-up check.
//! * [`report`]: the tables printed by the commands.
//! * [`sim`]: a trace-driven simulation of the planner against Jellyfin's rate model (the
//!   effectiveness yardstick of `benches/effectiveness.rs` and its test).
//! * [`sync`]: the one helper for locking shared state.
//! * [`telemetry`]: logging set-up.
//! * [`fake`]: a stateful fake Jellyfin server for tests (and the demo), faithful to the
//!   server's real behaviour and traps.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod allocate;
pub(crate) mod anon;
pub mod check;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub mod daemon;
pub(crate) mod files;
pub mod ids;
pub mod jellyfin;
pub mod ledger;
pub(crate) mod metrics;
pub mod network;
pub mod plan;
pub mod reconcile;
pub mod report;
#[cfg(feature = "demo")]
pub mod sim;
pub(crate) mod sync;
pub(crate) mod telemetry;
pub mod webhook;
pub mod write;
