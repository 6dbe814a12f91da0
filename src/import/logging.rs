//! The Python daemon's logging keys (`daemon.log_*`, the anonymization ones) as `[logging]`.

use std::fmt::Write as _;

use crate::config::toml_string as toml_str;

use super::{ImportError, Out};

/// "10MB", "512 KB", "1GB", "1048576" as bytes (binary units, as Python's logging sizes were
/// read).
pub(super) fn size_bytes(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_uppercase();
    let (digits, unit) = t.split_at(
        t.find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len()),
    );
    let n: f64 = digits.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1.0,
        "K" | "KB" | "KIB" => 1024.0,
        "M" | "MB" | "MIB" => 1024.0 * 1024.0,
        "G" | "GB" | "GIB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = (n * mult).round();
    (bytes.is_finite() && bytes >= 1.0).then_some(bytes as u64)
}

/// The `daemon` keys of the Python daemon's logging.
pub(super) struct LogKeys {
    pub(super) level: Option<String>,
    pub(super) file: Option<String>,
    pub(super) max_size: Option<String>,
    pub(super) backup_count: Option<f64>,
    pub(super) anonymize: Option<bool>,
    pub(super) save_map: Option<bool>,
    pub(super) map_file: Option<String>,
}

/// `daemon.log_*` and the anonymization keys as `[logging]` (absolute paths only: a relative
/// one was relative to the Python daemon's folder).
pub(super) fn logging(log: LogKeys, out: &mut Out) -> Result<(), ImportError> {
    let mut logging = String::new();
    if let Some(level) = &log.level {
        let l = match level.to_ascii_uppercase().as_str() {
            "DEBUG" => "debug",
            "INFO" => "info",
            "WARNING" | "WARN" => "warn",
            "ERROR" | "CRITICAL" => "error",
            _ => {
                return Err(ImportError::Invalid {
                    key: "daemon.log_level".into(),
                    problem: format!("{level:?} is not DEBUG, INFO, WARNING or ERROR"),
                });
            }
        };
        let _ = writeln!(logging, "level = {}", toml_str(l));
        out.note(
            "daemon.log_level",
            format!("logging.level = {}", toml_str(l)),
        );
    }
    match &log.file {
        Some(f) if f.starts_with('/') => {
            let _ = writeln!(logging, "file = {}", toml_str(f));
            out.note("daemon.log_file", format!("logging.file = {}", toml_str(f)));
        }
        Some(f) => out.note(
            "daemon.log_file",
            format!(
                "{f:?} was relative to the Python daemon's folder; not imported: jellydemon \
                 logs to standard error (journald, the container's log). To also keep a file, \
                 set logging.file to an absolute path"
            ),
        ),
        None => {}
    }
    if let Some(size) = &log.max_size {
        let bytes = size_bytes(size).ok_or_else(|| ImportError::Invalid {
            key: "daemon.log_max_size".into(),
            problem: format!("{size:?} is not a size such as \"10MB\""),
        })?;
        let _ = writeln!(logging, "max_file_bytes = {bytes}");
        out.note(
            "daemon.log_max_size",
            format!("logging.max_file_bytes = {bytes}"),
        );
    }
    if let Some(n) = log.backup_count {
        let n = n.round() as u64;
        let _ = writeln!(logging, "keep_files = {n}");
        out.note(
            "daemon.log_backup_count",
            format!("logging.keep_files = {n}"),
        );
    }
    if let Some(a) = log.anonymize {
        let _ = writeln!(logging, "anonymize = {a}");
        out.note("daemon.anonymize_logs", format!("logging.anonymize = {a}"));
    }
    if log.save_map.is_some() {
        out.note(
            "daemon.save_anonymization_map",
            "always on: with anonymize, the alias map is kept, so aliases stay the same across \
             restarts and `jellydemon anonymize` can scrub older logs"
                .into(),
        );
    }
    match &log.map_file {
        Some(f) if f.starts_with('/') => {
            let _ = writeln!(logging, "alias_file = {}", toml_str(f));
            out.note(
                "daemon.anonymization_map_file",
                format!("logging.alias_file = {}", toml_str(f)),
            );
        }
        Some(f) => out.note(
            "daemon.anonymization_map_file",
            format!(
                "{f:?} was relative to the Python daemon's folder; not imported: the alias map \
                 goes beside the state file"
            ),
        ),
        None => {}
    }
    if !logging.is_empty() {
        let _ = write!(out.toml, "\n[logging]\n{logging}");
    }
    Ok(())
}
