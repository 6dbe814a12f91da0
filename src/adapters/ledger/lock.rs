//! One writer at a time: the exclusive `flock` on `<state file>.lock` a writing command holds
//! while it runs, the pid in it for the message a second writer gets, and the checks `check`
//! makes of the state directory.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use super::LedgerError;

/// `<state file>.lock`.
pub(super) fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// The directory the state file at `path` lives in (`.` for a bare file name).
pub fn directory(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Take the writer's lock of the ledger at `path`, and write our pid into the lock file for
/// the message a second writer gets.
pub(super) fn lock(path: &Path) -> Result<fs::File, LedgerError> {
    let dir = directory(path);
    let dir_error = |source| LedgerError::Directory {
        dir: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(dir_error)?;
    // Not truncated on open: the holder's pid is read for the message.
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(crate::files::no_follow())
        .open(lock_path(path))
        .map_err(dir_error)?;
    // A few tries: `check` looking at the lock holds it for an instant.
    let mut tries = 0;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(e) if e == rustix::io::Errno::WOULDBLOCK && tries < 4 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(LedgerError::InUse {
                    path: path.to_path_buf(),
                    holder: holder_pid(&mut file),
                });
            }
            Err(e) => return Err(dir_error(e.into())),
        }
    }
    let _ = file.set_len(0);
    let _ = writeln!(file, "{}", std::process::id());
    Ok(file)
}

pub(super) fn holder_pid(file: &mut fs::File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    match text.trim().parse::<u32>() {
        Ok(pid) => format!(" (pid {pid})"),
        Err(_) => String::new(),
    }
}

/// Whether a writer holds the ledger at `path`: `Some(" (pid N)")` when one does. Only looks:
/// creates nothing, holds nothing.
pub fn in_use(path: &Path) -> Option<String> {
    let mut file = fs::File::open(lock_path(path)).ok()?;
    match flock(&file, FlockOperation::NonBlockingLockShared) {
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Some(holder_pid(&mut file)),
        _ => None, // dropped with the file
    }
}

/// Whether the state file's directory can be written in (or, while it does not exist yet,
/// created): a probe file is made and removed in it, or in its nearest existing ancestor.
/// Leaves nothing behind.
pub fn check_writable(path: &Path) -> Result<(), LedgerError> {
    let dir = directory(path);
    let mut probe_dir = dir;
    while !probe_dir.exists() {
        probe_dir = match probe_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => p,
            None => Path::new("."),
        };
        if probe_dir == Path::new(".") || probe_dir == Path::new("/") {
            break;
        }
    }
    let probe = probe_dir.join(format!(".jellydemon-probe.{}", std::process::id()));
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
        .map(|_| {
            let _ = fs::remove_file(&probe);
        })
        .map_err(|source| LedgerError::Directory {
            dir: dir.to_path_buf(),
            source,
        })
}
