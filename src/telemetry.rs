//! Logging set-up: `tracing` to stderr, level from `RUST_LOG` or the given default.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. One-shot commands pass `"warn"` so their table is not drowned
/// in log lines; `RUST_LOG` always wins.
pub fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
