//! The daemon's own files against a hostile neighbour on the machine: the state and alias
//! files are owner-only whatever the umask, a dry run writes none, and symlinks planted in
//! the state directory are never followed.

use crate::common::bin::Bin;
use crate::common::{Harness, KEY};
use crate::security::household;
use jellydemon::sim::fake::FakeJellyfin;

/// `jellydemon ARGS` under `umask 000`, with anonymization on (so the alias map is written
/// too); its exit code.
async fn run_with_umask_000(h: &Harness, args: &[&str]) -> i32 {
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    let path = h.dir.path().join("anon.toml");
    let log = h.dir.path().join("jellydemon.log");
    std::fs::write(
        &path,
        format!(
            "{text}\n[logging]\nanonymize = true\nfile = \"{}\"\n",
            log.display()
        ),
    )
    .unwrap();
    Bin::after_shell("umask 000")
        .arg("--config")
        .arg(&path)
        .args(args)
        .output()
        .await
        .code
}

#[tokio::test]
async fn the_state_and_alias_files_are_private_and_a_dry_run_writes_none() {
    use std::os::unix::fs::PermissionsExt;
    let fake = FakeJellyfin::new(KEY);
    household(&fake);
    let h = Harness::start(fake, "", "").await;
    let aliases = h.dir.path().join("aliases.json");

    assert_eq!(
        run_with_umask_000(&h, &["reconcile", "--once", "--dry-run"]).await,
        0
    );
    assert!(!h.state_path.exists(), "a dry run wrote the state file");
    assert!(!aliases.exists(), "a dry run wrote the alias map");

    assert_eq!(run_with_umask_000(&h, &["reconcile", "--once"]).await, 0);
    let log = h.dir.path().join("jellydemon.log");
    for file in [&h.state_path, &aliases, &log] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    let leftovers: Vec<_> = std::fs::read_dir(h.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn symlinks_planted_in_the_state_directory_are_never_followed() {
    use std::os::unix::fs::symlink;
    let fake = FakeJellyfin::new(KEY);
    household(&fake);
    let h = Harness::start(fake, "", "").await;
    let victim = h.dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    // The lock file: the command refuses instead of writing through it.
    let lock = h.dir.path().join("state.json.lock");
    symlink(&victim, &lock).unwrap();
    let (code, out, err) = h.cli(&["reconcile"]).await;
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(err.contains("state directory"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    std::fs::remove_file(&lock).unwrap();
    // The log file: refused with a clear error.
    let log = h.dir.path().join("jellydemon.log");
    symlink(&victim, &log).unwrap();
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    let cfg = h.dir.path().join("log.toml");
    std::fs::write(
        &cfg,
        format!("{text}\n[logging]\nfile = \"{}\"\n", log.display()),
    )
    .unwrap();
    let out = Bin::with_config(&cfg, &["reconcile"]).output().await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("cannot open log file"), "{out:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    // Temp file names are random (src/files.rs tests a planted one).
}
