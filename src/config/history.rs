//! `[history]`: the SQLite database of what was played, the link over time, the decisions and
//! the owner's actions (`src/adapters/history.rs`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[history]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySettings {
    /// Keep a history at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The database; default `history.sqlite` beside the state file.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Rows older than this many days are pruned (every hour).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// The database is kept under this many MB: the oldest rows go first.
    #[serde(default = "default_max_mb")]
    pub max_mb: u32,
}

fn yes() -> bool {
    true
}

fn default_retention_days() -> u32 {
    30
}

fn default_max_mb() -> u32 {
    200
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            enabled: true,
            file: None,
            retention_days: default_retention_days(),
            max_mb: default_max_mb(),
        }
    }
}

impl HistorySettings {
    /// Values a history cannot run with.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.retention_days == 0 {
            return Err(invalid(
                "history.retention_days",
                "at least 1 (to keep no history, set history.enabled = false)",
            ));
        }
        if self.max_mb == 0 {
            return Err(invalid(
                "history.max_mb",
                "at least 1 (to keep no history, set history.enabled = false)",
            ));
        }
        Ok(())
    }

    /// The database's path: `file`, or `history.sqlite` beside `state_file`.
    pub fn path(&self, state_file: &Path) -> PathBuf {
        self.file.clone().unwrap_or_else(|| {
            state_file
                .parent()
                .unwrap_or(Path::new("."))
                .join("history.sqlite")
        })
    }

    /// `max_mb` in bytes.
    pub fn max_bytes(&self) -> u64 {
        u64::from(self.max_mb) * 1_000_000
    }
}
