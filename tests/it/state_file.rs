//! The state file has one writer: while a daemon uses it, a second daemon, `reconcile --once`
//! and `restore` are refused (exit 4) with a message naming the holder, while `check` and dry
//! runs still work. A state directory that cannot be written fails `check`, `run` and
//! `reconcile --once` at once with exit 4, before anything is written to Jellyfin.

use std::path::Path;

use crate::common::{Harness, KEY, M};
use jellydemon::sim::fake::{FakeJellyfin, Playback};

/// The real binary with `args`, the config, and `daemon.listen` on port 0.
async fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = crate::common::bin::Bin::with_config(config, args)
        .env("JELLYDEMON_DAEMON__LISTEN", "127.0.0.1:0")
        .output()
        .await;
    (out.code, out.stdout, out.stderr)
}

fn streaming() -> FakeJellyfin {
    let fake = FakeJellyfin::new(KEY);
    let alice = fake.add_user("alice", |_| {});
    fake.add_session(
        Some(&alice),
        Some("203.0.113.5"),
        "Jellyfin Web",
        Some(Playback::direct("a", Some(8 * M), None)),
    );
    fake
}

#[tokio::test]
async fn a_second_writer_is_refused_while_a_daemon_uses_the_state_file() {
    let h = Harness::start(streaming(), "", "").await;
    let d = h.daemon("").await;
    let pid = format!("(pid {})", std::process::id());
    let writes = h.fake.policy_posts().len();

    for args in [&["run"][..], &["reconcile", "--once"], &["restore"]] {
        let (code, out, err) = cli(&h.config_path, args).await;
        assert_eq!(code, 4, "{args:?}: {out}\n{err}");
        assert!(
            err.contains("is in use by another jellydemon") && err.contains(&pid),
            "{args:?}: {err}"
        );
    }
    assert_eq!(h.fake.policy_posts().len(), writes, "nothing was written");
    // Looking is allowed.
    let (code, out, err) = cli(&h.config_path, &["reconcile", "--once", "--dry-run"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = cli(&h.config_path, &["check"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "a running jellydemon {pid} is using the state file"
        )),
        "{out}"
    );

    // Once the daemon has stopped, the next writer gets the file.
    d.stop().await;
    let (code, out, err) = cli(&h.config_path, &["reconcile", "--once"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, _) = cli(&h.config_path, &["check"]).await;
    assert_eq!(code, 0);
    assert!(!out.contains("a running jellydemon"), "{out}");
}

#[tokio::test]
async fn a_state_directory_that_cannot_be_written_is_exit_4_before_any_write() {
    let h = Harness::start(streaming(), "", "").await;
    // The state file's directory is a regular file: it can be neither created nor written in
    // (whoever runs the test, root included).
    let blocker = h.dir.path().join("not-a-directory");
    std::fs::write(&blocker, "").unwrap();
    let state = blocker.join("state.json");
    let text = std::fs::read_to_string(&h.config_path).unwrap().replace(
        &h.state_path.display().to_string(),
        &state.display().to_string(),
    );
    std::fs::write(&h.config_path, text).unwrap();

    let (code, out, err) = cli(&h.config_path, &["check"]).await;
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(
        out.contains("FAIL cannot write in the state directory") && out.contains("not-a-directory"),
        "{out}"
    );
    for args in [&["run"][..], &["reconcile", "--once"]] {
        let (code, out, err) = cli(&h.config_path, args).await;
        assert_eq!(code, 4, "{args:?}: {out}\n{err}");
        assert!(
            err.contains("cannot write in the state directory"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        h.fake.policy_posts().len(),
        0,
        "nothing was written to Jellyfin"
    );

    // A directory that does not exist yet but can be created is fine, and check creates
    // nothing.
    let fresh = h.dir.path().join("new").join("deeper").join("state.json");
    let text = std::fs::read_to_string(&h.config_path)
        .unwrap()
        .replace(&state.display().to_string(), &fresh.display().to_string());
    std::fs::write(&h.config_path, text).unwrap();
    let (code, out, err) = cli(&h.config_path, &["check"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!h.dir.path().join("new").exists(), "check created nothing");
    assert_eq!(
        std::fs::read_dir(h.dir.path()).unwrap().count(),
        2,
        "no probe file left: config.toml and not-a-directory only"
    );
}
