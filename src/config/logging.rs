//! `[logging]`: level, format, the log file and its rotation, anonymization.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (journald adds its own timestamps).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[logging]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSettings {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a filter such as
    /// `jellydemon::daemon::engine=debug,info`. `RUST_LOG` wins over this.
    #[serde(default)]
    pub level: Option<String>,
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// Also write logs to this file, rotated by size.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Rotate the log file when it would grow beyond this many bytes.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// How many rotated files (`file.1`, `file.2`, …) to keep.
    #[serde(default = "default_keep_files")]
    pub keep_files: u32,
    /// Replace user names, user ids, IP addresses, session ids and device ids by stable aliases
    /// in logs, metrics and the status API, so logs can be shared.
    #[serde(default)]
    pub anonymize: bool,
    /// Where the alias map is kept so aliases stay stable across restarts. Default: next to the
    /// state file, `aliases.json`.
    #[serde(default)]
    pub alias_file: Option<PathBuf>,
}

pub(super) fn default_max_file_bytes() -> u64 {
    10 * 1024 * 1024
}

pub(super) fn default_keep_files() -> u32 {
    5
}

impl LoggingSettings {
    /// A level or filter tracing understands, and a rotation size that makes sense.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(level) = &self.level
            && tracing_subscriber::EnvFilter::try_new(level).is_err()
        {
            return Err(invalid(
                "logging.level",
                format!("\"{level}\" is not a level or filter (e.g. \"info\")"),
            ));
        }
        if self.max_file_bytes < 4096 {
            return Err(invalid("logging.max_file_bytes", "must be at least 4096"));
        }
        Ok(())
    }
}

impl Default for LoggingSettings {
    fn default() -> Self {
        LoggingSettings {
            level: None,
            format: LogFormat::Text,
            file: None,
            max_file_bytes: default_max_file_bytes(),
            keep_files: default_keep_files(),
            anonymize: false,
            alias_file: None,
        }
    }
}
