//! The integration tests, one binary: the real daemon, `reconcile --once`, `check`, `restore`
//! and the demo against the simulated Jellyfin in `src/sim/fake.rs`, the status page in a browser,
//! hostile clients, faults, the container image, and the files we ship (example config, webhook template, systemd
//! unit, Grafana dashboard). Shared helpers are in `common/`.
//!
//! One binary links the crate once instead of once per file. Every test binds port 0 and works
//! in its own temp dir, so they run in parallel in one process. Tests that set environment
//! variables are not here: they are in `tests/environment.rs`.

mod anonymize;
mod browser;
mod check;
mod common;
mod config;
mod container;
mod control;
mod daemon;
mod demo;
mod fake;
mod faults;
mod health;
mod history;
mod import_config;
mod init;
mod late_writes;
mod lifecycle;
mod meter;
mod notify;
mod openapi;
mod packaging;
mod plex;
mod private_files;
mod reconcile;
mod restore;
mod scenarios;
mod security;
mod servers;
mod snmp;
mod state_file;
mod steady;
mod terminal;
mod torrent;
mod transcoding;
mod webhook_templates;
