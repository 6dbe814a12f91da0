//! `jellydemon init` against the fake Jellyfin: with every answer as a flag, and with answers
//! piped on standard input (a wrong key asked again), refusing to overwrite, and writing
//! nothing when an answer is missing or Jellyfin refuses.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::KEY;
use crate::common::bin::Bin;
use jellydemon::config::{Mode, Settings};
use jellydemon::sim::fake::FakeJellyfin;

/// Run `jellydemon --config <config> init <args>` with `stdin` piped in.
async fn init(config: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let out = Bin::with_config(config, &["init"])
        .args(args)
        .stdin(stdin)
        .output()
        .await;
    (out.code, out.stdout, out.stderr)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

struct Setup {
    _dir: tempfile::TempDir,
    url: String,
    config: std::path::PathBuf,
    key_file: std::path::PathBuf,
    state: String,
    _fake: FakeJellyfin,
}

async fn setup() -> Setup {
    let fake = FakeJellyfin::new(KEY);
    fake.add_user("alice", |_| {});
    fake.add_non_admin_key("user-token-not-admin");
    let (url, _, _) = fake.spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key-from-the-dashboard");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    Setup {
        url,
        config: dir.path().join("jellydemon").join("config.toml"),
        key_file,
        state: dir.path().join("state.json").display().to_string(),
        _dir: dir,
        _fake: fake,
    }
}

#[tokio::test]
async fn every_answer_as_a_flag_writes_a_working_configuration() {
    let s = setup().await;
    let key_file = s.key_file.display().to_string();
    let args = [
        "--url",
        &s.url,
        "--api-key-file",
        &key_file,
        "--upload-mbps",
        "40",
        "--webhooks",
        "--state-file",
        &s.state,
        "--torrent",
        "none",
    ];
    let (code, out, err) = init(&s.config, &args, "").await;
    assert_eq!(code, 0, "{out}\n{err}");
    let dir = s.config.parent().unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("api_key")).unwrap().trim(),
        KEY
    );
    assert_eq!(mode(&dir.join("api_key")), 0o600);
    assert_eq!(mode(&dir.join("webhook_token")), 0o600);
    assert_eq!(mode(&s.config), 0o644);
    let token = std::fs::read_to_string(dir.join("webhook_token")).unwrap();
    assert_eq!(token.trim().len(), 32);
    let text = std::fs::read_to_string(&s.config).unwrap();
    assert!(!text.contains(KEY), "the key is not in config.toml");

    let settings = Settings::load(&s.config).unwrap();
    assert_eq!(settings.jellyfin.url, s.url);
    assert_eq!(settings.bandwidth.total_upload_mbps, 40.0);
    assert_eq!(settings.daemon.mode, Mode::Webhook);
    assert!(
        settings.daemon.listen.ip().is_loopback(),
        "Jellyfin is local"
    );
    assert!(settings.daemon.webhook_token().unwrap().is_some());
    // What to click in the plugin, then the check of what was written.
    assert!(out.contains("/hook"), "{out}");
    assert!(out.contains("X-Jellydemon-Token"), "{out}");
    assert!(out.contains("ok   API key"), "{out}");

    // A second run does not overwrite; --force does.
    let before = std::fs::read_to_string(dir.join("webhook_token")).unwrap();
    let (code, _, err) = init(&s.config, &args, "").await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("exists; pass --force"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("webhook_token")).unwrap(),
        before
    );
    let mut forced = args.to_vec();
    forced.push("--force");
    let (code, out, err) = init(&s.config, &forced, "").await;
    assert_eq!(code, 0, "{out}\n{err}");
}

#[tokio::test]
async fn answers_piped_on_standard_input_are_checked_and_asked_again() {
    let s = setup().await;
    // A URL that is not Jellyfin, then the right one; a non-admin token, then the key; a
    // speed that is not a number, then one; no webhooks.
    let stdin = format!(
        "{url}/not-here\n{url}\nuser-token-not-admin\n{KEY}\nfast\n25.5\nn\nnone\n",
        url = s.url
    );
    let (code, out, err) = init(&s.config, &["--state-file", &s.state], &stdin).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("not as Jellyfin"), "{err}");
    assert!(err.contains("not an administrator's"), "{err}");
    assert!(err.contains("a number of Mbps"), "{err}");
    assert!(!err.contains(KEY), "the key is never echoed: {err}");
    let settings = Settings::load(&s.config).unwrap();
    assert_eq!(settings.jellyfin.url, s.url);
    assert_eq!(settings.bandwidth.total_upload_mbps, 25.5);
    assert_eq!(settings.daemon.mode, Mode::ReconcileOnly);
    // The secret is written all the same: the systemd unit hands it to the service, and it
    // guards the status page off loopback.
    assert_eq!(
        mode(&s.config.parent().unwrap().join("webhook_token")),
        0o600
    );
    assert!(settings.daemon.webhook_token().unwrap().is_some());
}

#[tokio::test]
async fn nothing_is_written_without_every_answer_or_when_jellyfin_refuses() {
    let s = setup().await;
    // Standard input ends before the upload speed.
    let stdin = format!("{}\n{KEY}\n", s.url);
    let (code, _, err) = init(&s.config, &[], &stdin).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no answer for the upload speed (pass --upload-mbps)"),
        "{err}"
    );
    assert!(!s.config.parent().unwrap().exists(), "nothing written");

    // A flag's answer that Jellyfin refuses is not asked again.
    let wrong = s.key_file.with_file_name("wrong-key");
    std::fs::write(&wrong, "not-a-key\n").unwrap();
    let wrong = wrong.display().to_string();
    let args = [
        "--url",
        &s.url,
        "--api-key-file",
        &wrong,
        "--upload-mbps",
        "40",
    ];
    let (code, _, err) = init(&s.config, &args, "").await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("refused the API key"), "{err}");
    assert!(!s.config.parent().unwrap().exists(), "nothing written");

    let (code, _, err) = init(&s.config, &["--upload-mbps", "-3"], "").await;
    assert_eq!(code, 2, "{err}");
}

#[tokio::test]
async fn a_url_without_its_scheme_means_http() {
    let s = setup().await;
    let key_file = s.key_file.display().to_string();
    let bare = s.url.trim_start_matches("http://").to_string();
    let args = [
        "--url",
        &bare,
        "--api-key-file",
        &key_file,
        "--upload-mbps",
        "40",
        "--no-webhooks",
        "--state-file",
        &s.state,
        "--torrent",
        "none",
    ];
    let (code, out, err) = init(&s.config, &args, "").await;
    assert_eq!(code, 0, "{out}\n{err}");
    let settings = Settings::load(&s.config).unwrap();
    assert_eq!(settings.jellyfin.url, s.url);
    assert!(settings.downloader.is_empty());
}

/// The torrent client asked about on standard input: a real qBittorrent, read once, its
/// password in a file of its own beside the configuration.
#[tokio::test]
async fn a_torrent_client_is_asked_for_read_once_and_written() {
    use crate::common::torrent::{Kind, PASS, Torrent, USER};
    let Some(t) = Torrent::start(Kind::Qbittorrent).await else {
        return;
    };
    let s = setup().await;
    let key_file = s.key_file.display().to_string();
    let args = [
        "--url",
        &s.url,
        "--api-key-file",
        &key_file,
        "--upload-mbps",
        "40",
        "--no-webhooks",
        "--state-file",
        &s.state,
    ];
    let bare = t.url.trim_start_matches("http://");
    let stdin = format!("maybe\nqbittorrent\n{bare}\n{USER}\n{PASS}\n");
    let (code, out, err) = init(&s.config, &args, &stdin).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("answer none, qbittorrent or transmission"),
        "{err}"
    );
    assert!(
        err.contains("qbittorrent answers: upload limit 0.82 Mbps"),
        "{err}"
    );
    assert!(
        !err.contains(PASS) && !out.contains(PASS),
        "the password is never echoed"
    );
    let settings = Settings::load(&s.config).unwrap();
    let d = &settings.downloader[0];
    assert_eq!(d.url, t.url);
    assert_eq!(d.username.as_deref(), Some(USER));
    let file = s.config.parent().unwrap().join("qbittorrent_password");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), PASS);
    assert_eq!(mode(&file), 0o600);
    assert!(!std::fs::read_to_string(&s.config).unwrap().contains(PASS));
    assert_eq!(t.failed_logins(), 0);
    // The check init runs at its end reads it as well.
    assert!(out.contains("ok   downloader qbittorrent"), "{out}");
}

/// A Plex server on the same link, asked for on standard input (the fake Plex,
/// `src/sim/plex.rs`): read once, its token in `plex_token` beside the configuration, never
/// echoed; the check at the end reads it as well.
#[tokio::test]
async fn a_plex_server_is_asked_for_read_once_and_written() {
    const PLEX_TOKEN: &str = "plex-owner-token-0123";
    let plex = jellydemon::sim::plex::FakePlex::new(PLEX_TOKEN);
    plex.add_session("anneliese", "wan", 12_000);
    let (plex_url, _stop) = plex.spawn().await;
    let s = setup().await;
    let key_file = s.key_file.display().to_string();
    let args = [
        "--url",
        &s.url,
        "--api-key-file",
        &key_file,
        "--upload-mbps",
        "40",
        "--no-webhooks",
        "--state-file",
        &s.state,
        "--torrent",
        "none",
    ];
    let bare = plex_url.trim_start_matches("http://");
    let (code, out, err) = init(&s.config, &args, &format!("{bare}\n{PLEX_TOKEN}\n")).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("plex answers: 1 stream outside the house now"),
        "{err}"
    );
    assert!(
        !err.contains(PLEX_TOKEN) && !out.contains(PLEX_TOKEN),
        "the token is never echoed"
    );
    let settings = Settings::load(&s.config).unwrap();
    assert_eq!(settings.server.len(), 1);
    assert_eq!(settings.server[0].url, plex_url);
    let file = s.config.parent().unwrap().join("plex_token");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), PLEX_TOKEN);
    assert_eq!(mode(&file), 0o600);
    assert!(
        !std::fs::read_to_string(&s.config)
            .unwrap()
            .contains(PLEX_TOKEN)
    );
    assert!(out.contains("ok   server plex: plex at"), "{out}");

    // As flags; `none` writes no server.
    let s = setup().await;
    let key_file = s.key_file.display().to_string();
    let (code, out, err) = init(
        &s.config,
        &[
            "--url",
            &s.url,
            "--api-key-file",
            &key_file,
            "--upload-mbps",
            "40",
            "--no-webhooks",
            "--state-file",
            &s.state,
            "--torrent",
            "none",
            "--plex-url",
            "none",
        ],
        "",
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(Settings::load(&s.config).unwrap().server.is_empty());
}

/// Another server on the same link, asked for on standard input: an Emby (the fake's Emby
/// dialect, `src/sim/emby.rs`) found under `/emby` from its bare address, its key tried once
/// and written to `emby_api_key`, never echoed; a key it refuses writes nothing.
#[tokio::test]
async fn an_emby_server_is_found_asked_for_its_key_and_written() {
    const EMBY_KEY: &str = "emby-admin-key-0123456789abcdef";
    let emby = FakeJellyfin::emby(EMBY_KEY);
    emby.set_base_path("/emby");
    emby.add_user("carol", |_| {});
    let (emby_url, _, _stop) = emby.spawn().await;
    let bare = emby_url
        .trim_start_matches("http://")
        .trim_end_matches("/emby");
    let s = setup().await;
    let key_file = s.key_file.display().to_string();
    let args = [
        "--url",
        &s.url,
        "--api-key-file",
        &key_file,
        "--upload-mbps",
        "40",
        "--no-webhooks",
        "--state-file",
        &s.state,
        "--torrent",
        "none",
        "--plex-url",
        "none",
    ];
    let (code, out, err) = init(&s.config, &args, &format!("{bare}\n{EMBY_KEY}\n")).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("Emby Server 4.8.11.0 answers: 1 user"),
        "{err}"
    );
    assert!(!err.contains(EMBY_KEY) && !out.contains(EMBY_KEY));
    let settings = Settings::load(&s.config).unwrap();
    assert_eq!(settings.server.len(), 1);
    assert_eq!(
        settings.server[0].kind(),
        jellydemon::config::ServerKind::Emby
    );
    assert_eq!(settings.server[0].url, emby_url);
    let file = s.config.parent().unwrap().join("emby_api_key");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), EMBY_KEY);
    assert_eq!(mode(&file), 0o600);
    assert!(
        !std::fs::read_to_string(&s.config)
            .unwrap()
            .contains(EMBY_KEY)
    );
    // The check at the end reads it.
    assert!(
        out.contains("ok   server emby: Emby Server 4.8.11.0 at"),
        "{out}"
    );

    // A key it refuses: nothing is written.
    let s = setup().await;
    let (code, _, err) = init(&s.config, &args, &format!("{bare}\nnot-the-key\n")).await;
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("refuses that key"), "{err}");
    assert!(!s.config.exists());
}
