//! The open-file limit and the connection cap under it: every accepted connection is a file
//! descriptor, and the daemon needs some of its own to keep the ledger, reach Jellyfin and
//! restore at shutdown, so the listener never serves more connections than the limit leaves.

/// File descriptors the daemon keeps for itself beside its connections: standard streams, the
/// runtime, the listener, the state file, its lock and temp files, the log file, the Jellyfin
/// client's pool (the restore uses eight at once), the meter and the notification targets.
pub const FDS_RESERVED: u64 = 64;

/// The fewest connections the listener serves, however low the open-file limit.
const MIN_CONNECTIONS: usize = 8;

/// The connection cap under an open-file limit of `soft`: `configured`, or what the limit
/// leaves after [`FDS_RESERVED`] when that is less.
pub fn cap_for(soft: u64, configured: usize) -> usize {
    let room = soft.saturating_sub(FDS_RESERVED);
    (configured as u64).min(room).max(MIN_CONNECTIONS as u64) as usize
}

/// Raise the soft open-file limit to the hard one (allowed to any process), and return the
/// connection cap that fits under it, with a warning when it is below `configured`.
pub fn connection_cap(configured: usize) -> (usize, Option<String>) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        let raised = rustix::process::Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            l = getrlimit(Resource::Nofile);
        }
    }
    let Some(soft) = l.current else {
        return (configured, None); // unlimited
    };
    let cap = cap_for(soft, configured);
    let note = (cap < configured).then(|| {
        format!(
            "the open-file limit is {soft}: serving at most {cap} connections instead of \
             daemon.http_max_connections = {configured}, keeping {FDS_RESERVED} files for the \
             state file, Jellyfin and the restore (raise LimitNOFILE or ulimit -n)"
        )
    });
    (cap, note)
}

/// The open-file limit a daemon started from this process would have once it raised its soft
/// limit: the hard limit (`None`: unlimited). Changes nothing.
pub fn hard_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_under_the_open_file_limit() {
        assert_eq!(cap_for(1024, 256), 256);
        assert_eq!(cap_for(256, 256), 192);
        assert_eq!(cap_for(100, 256), 36);
        assert_eq!(cap_for(20, 256), MIN_CONNECTIONS);
        assert_eq!(cap_for(u64::MAX, 256), 256);
    }
}
