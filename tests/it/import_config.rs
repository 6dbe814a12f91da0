//! `jellydemon import-config` on the Python JellyDemon's published `config.example.yml`
//! (`tests/python-jellydemon/`): the files it writes, the configuration `check` accepts
//! against the fake Jellyfin, no overwrite without `--force`, and nothing written for a file it
//! cannot convert.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::KEY;
use jellydemon::config::{Mode, Settings};
use jellydemon::sim::fake::FakeJellyfin;

const EXAMPLE: &str = include_str!("../python-jellydemon/config.example.yml");

/// Run `jellydemon --config <config> <args>` with `env` set for the child only.
async fn run(config: &Path, args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let mut bin = crate::common::bin::Bin::with_config(config, args);
    for (k, v) in env {
        bin = bin.env(k, v);
    }
    let out = bin.output().await;
    (out.code, out.stdout, out.stderr)
}

#[tokio::test]
async fn the_published_example_becomes_a_configuration_that_check_accepts() {
    let fake = FakeJellyfin::new(KEY);
    fake.add_user("alice", |_| {});
    let (url, _, _) = fake.spawn().await;
    let port = url.rsplit(':').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    // The published file, pointed at the fake Jellyfin.
    let yml = dir.path().join("config.yml");
    let text = EXAMPLE
        .replace("host: \"localhost\"", "host: \"127.0.0.1\"")
        .replace("port: 8096", &format!("port: {port}"))
        .replace("your_api_key_here", KEY);
    assert_ne!(text, EXAMPLE);
    std::fs::write(&yml, text).unwrap();
    let config = dir.path().join("etc").join("config.toml");
    let yml_arg = yml.display().to_string();

    let (code, out, err) = run(&config, &["import-config", &yml_arg], &[]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    // Every key of the old file is accounted for.
    for key in [
        "jellyfin.host",
        "daemon.update_interval",
        "network.test_mode",
        "daemon.pid_file",
    ] {
        assert!(out.contains(key), "no note for {key}:\n{out}");
    }
    // There is no torrent client to import, and the output says so.
    assert!(
        out.contains("nothing to import: the Python JellyDemon manages no torrent client"),
        "{out}"
    );
    let key_file = config.parent().unwrap().join("api_key");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), KEY);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key_file), 0o600);
    let token_file = config.parent().unwrap().join("webhook_token");
    assert_eq!(mode(&token_file), 0o600);
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap().trim().len(),
        32
    );
    assert_eq!(mode(&config), 0o644);
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(!written.contains(KEY), "the key stays out of config.toml");
    let settings = Settings::load(&config).unwrap();
    assert_eq!(settings.jellyfin.url, url);
    assert_eq!(settings.daemon.mode, Mode::ReconcileOnly);
    assert_eq!(settings.bandwidth.total_upload_mbps, 100.0);
    assert!(settings.daemon.webhook_token().unwrap().is_some());

    // The result works: check reaches the fake with the key from the file.
    let state = dir.path().join("state").join("state.json");
    let env = [("JELLYDEMON_STATE__FILE", state.display().to_string())];
    let (code, out, err) = run(&config, &["check"], &env).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("ok   API key"), "{out}");

    // A second import does not overwrite; --force does.
    std::fs::write(&config, "# edited by hand\n").unwrap();
    let (code, _, err) = run(&config, &["import-config", &yml_arg], &[]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("exists; pass --force"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "# edited by hand\n"
    );
    let (code, _, err) = run(&config, &["import-config", &yml_arg, "--force"], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), written);
}

#[tokio::test]
async fn a_file_it_cannot_convert_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("out").join("config.toml");
    // The example with a key (its placeholder is refused first; see below).
    let example = EXAMPLE.replace("your_api_key_here", "k-0123456789abcdef");
    for (name, text, expected) in [
        ("missing.yml", None, "cannot read"),
        ("empty.yml", Some(""), "the file is empty"),
        (
            "unknown.yml",
            Some(&*example.replace("daemon:\n", "daemon:\n  spike: 3\n")),
            "unknown key `daemon.spike`",
        ),
        (
            "type.yml",
            Some(&*example.replace("total_upload_mbps: 100.0", "total_upload_mbps: fast")),
            "`bandwidth.total_upload_mbps`: expected a number",
        ),
        (
            "no-section.yml",
            Some(&*example.replace("jellyfin:", "jelyfin:")),
            "unknown key `jelyfin`",
        ),
    ] {
        let yml = dir.path().join(name);
        if let Some(text) = text {
            std::fs::write(&yml, text).unwrap();
        }
        let (code, out, err) =
            run(&config, &["import-config", &yml.display().to_string()], &[]).await;
        assert_eq!(code, 3, "{name}: {out}\n{err}");
        assert!(err.contains(expected), "{name}: {err}");
        assert!(err.contains("nothing was written"), "{name}: {err}");
        assert!(
            !err.contains("k-0123456789abcdef"),
            "{name}: the key is never quoted: {err}"
        );
        assert!(
            !config.parent().unwrap().exists(),
            "{name}: nothing written"
        );
    }
}

#[tokio::test]
async fn the_examples_placeholder_key_is_refused_unless_a_key_file_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("out").join("config.toml");
    let yml = dir.path().join("config.yml");
    std::fs::write(&yml, EXAMPLE).unwrap();
    let yml_arg = yml.display().to_string();
    let (code, out, err) = run(&config, &["import-config", &yml_arg], &[]).await;
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("`jellyfin.api_key`") && err.contains("placeholder"),
        "{err}"
    );
    assert!(err.contains("--api-key-file"), "{err}");
    assert!(!config.parent().unwrap().exists(), "nothing written");

    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let (code, out, err) = run(
        &config,
        &[
            "import-config",
            &yml_arg,
            "--api-key-file",
            &key_file.display().to_string(),
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let written = config.parent().unwrap().join("api_key");
    assert_eq!(std::fs::read_to_string(written).unwrap().trim(), KEY);
}

#[tokio::test]
async fn a_new_user_is_pointed_at_init() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(&dir.path().join("none.toml"), &["--help"], &[]).await;
    assert_eq!(code, 0);
    assert!(out.contains("jellydemon init"), "{out}");
    let (code, _, err) = run(&dir.path().join("none.toml"), &["check"], &[]).await;
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("not found") && err.contains("jellydemon init"),
        "{err}"
    );
}
