//! Writing the daemon's own files (the ledger, the alias map, the planner's memory, the log):
//! atomically (temp file in the same directory, fsync, rename, fsync of the directory), and
//! readable by the owner only (0600, whatever the umask: they name users and hold their
//! limits). A name in the state directory that someone turned into a symlink is never
//! followed: temp files have a random name and are created exclusively, and the lock and log
//! files are opened with `O_NOFOLLOW`.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// `O_NOFOLLOW`, for `OpenOptionsExt::custom_flags`: opening a symlink fails (`ELOOP`).
pub fn no_follow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Open the owner-only file `path` for appending (a log), creating it 0600; a symlink there
/// is refused, and an existing file's mode is set to 0600.
pub fn open_private_append(path: &Path) -> io::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(no_follow())
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Replace `path` with `bytes` atomically, as a file only its owner can read. After a crash the
/// file holds either the old or the new content.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    // A name nobody can guess, created exclusively: never an existing file or a symlink.
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(
        ".tmp.{}",
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    let tmp = dir.join(tmp_name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(no_follow())
        .open(&tmp)?;
    let result = (|| {
        // Whatever the umask.
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_planted_at_a_temp_name_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        // The name the writer used to use: `<file>.tmp.<pid>`.
        std::os::unix::fs::symlink(
            &victim,
            dir.path()
                .join(format!("state.json.tmp.{}", std::process::id())),
        )
        .unwrap();
        let path = dir.path().join("state.json");
        write_private(&path, b"state").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"state");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        // A log file that is a symlink is refused.
        let log = dir.path().join("log");
        std::os::unix::fs::symlink(&victim, &log).unwrap();
        assert!(open_private_append(&log).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn replaces_the_file_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("state.json");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temp file left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }
}
