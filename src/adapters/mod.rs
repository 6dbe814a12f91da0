//! The outside world: each module talks to one thing and maps what it answers into the core's
//! terms (`crate::core`). They import the core and the parsed configuration, never the daemon
//! or each other's internals.
//!
//! [`webhook`] (the Webhook plugins' bodies), [`jellyfin`] (the client and its DTOs, the
//! lossless policy read-modify-write, the fleet of servers), [`downloader`] (the torrent
//! clients, qBittorrent and Transmission), [`plex`] (what a Plex server on the same link
//! streams outside the house), [`budget`] (the budget in force: static, scheduled or metered,
//! less what other media servers stream), [`ledger`] (the originals in the state file),
//! [`overrides`] (the owner's overrides beside it), [`notify`] (notification targets),
//! [`history`] (the SQLite database of plays, samples, decisions and actions).

pub mod budget;
pub mod downloader;
pub mod history;
pub mod jellyfin;
pub mod ledger;
pub mod notify;
pub mod overrides;
pub mod plex;
pub mod webhook;
