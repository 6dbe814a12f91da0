//! Environment variables override the configuration file: `JELLYDEMON_SECTION__KEY` wins over the
//! file, an unknown one is an error, a wrong one never quotes a secret, and the variables the
//! systemd unit sets are accepted.
//!
//! These tests set process-wide environment variables (figment's `Jail` runs them one at a time
//! and puts the environment back). They live in their own test binary so that no other test
//! loads a configuration in the same process while a variable is set.

use std::path::Path;

use jellydemon::config::{Algorithm, SECRET_KEYS, Settings};
use secrecy::ExposeSecret;

const UNIT: &str = include_str!("../packaging/jellydemon.service");

/// A file with every required key and an API key.
const MINIMAL: &str = "[jellyfin]\nurl = \"http://127.0.0.1:8096\"\napi_key = \"k\"\n\
                       [bandwidth]\ntotal_upload_mbps = 100\n";

// figment's Jail API returns figment::Error, which is large; that is figment's choice.
#[test]
#[allow(clippy::result_large_err)]
fn environment_overrides_the_file_and_unknown_env_keys_fail() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "config.toml",
            "[jellyfin]\nurl = \"http://127.0.0.1:8096\"\n[bandwidth]\ntotal_upload_mbps = 100\n",
        )?;
        jail.set_env("JELLYDEMON_JELLYFIN__API_KEY", "from-the-environment");
        jail.set_env("JELLYDEMON_BANDWIDTH__ALGORITHM", "demand");
        jail.set_env("JELLYDEMON_CONFIG", "config.toml");
        let s = Settings::load(Path::new("config.toml")).map_err(|e| e.to_string())?;
        assert_eq!(s.bandwidth.algorithm, Algorithm::Demand);
        assert_eq!(s.api_key().unwrap().expose_secret(), "from-the-environment");
        assert!(!format!("{s:?}").contains("from-the-environment"));

        jail.set_env("JELLYDEMON_BANDWIDTH__BOGUS", "1");
        let err = Settings::load(Path::new("config.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `bandwidth.bogus`"), "{err}");
        assert!(err.contains("JELLYDEMON_"), "names the source: {err}");
        Ok(())
    });
}

/// A secret given the wrong type through the environment: the error names the key, never the
/// value.
#[test]
#[allow(clippy::result_large_err)]
fn environment_errors_never_quote_a_secret() {
    const SECRET: &str = "4242424242424242";
    for key in SECRET_KEYS {
        let (section, name) = key.split_once('.').unwrap();
        figment::Jail::expect_with(|jail| {
            jail.create_file("config.toml", MINIMAL)?;
            jail.set_env(
                format!(
                    "JELLYDEMON_{}__{}",
                    section.to_uppercase(),
                    name.to_uppercase()
                ),
                format!("[{SECRET}]"),
            );
            let err = Settings::load(Path::new("config.toml"))
                .expect_err("a list is not a secret")
                .to_string();
            assert!(!err.contains(SECRET), "{key} from the environment: {err}");
            assert!(err.contains(key), "{err}");
            Ok(())
        });
    }
}

/// The values of `key=` lines in the systemd unit.
fn unit_values(key: &str) -> Vec<&'static str> {
    UNIT.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// One place for the key from the first run to the service: `init` writes `api_key` and
/// `webhook_token` beside `/etc/jellydemon/config.toml`, which names them with relative paths;
/// the unit hands those very files to the service as credentials and points the same keys at
/// them. The configuration as `init` writes it loads under the unit's environment (no "not
/// both") and the service reads the credentials.
#[test]
#[allow(clippy::result_large_err)]
fn the_environment_the_unit_sets_is_accepted_by_the_config_loader() {
    // The unit's credentials are the files init writes beside the configuration.
    let mut creds = unit_values("LoadCredential");
    creds.sort();
    assert_eq!(
        creds,
        [
            "api_key:/etc/jellydemon/api_key",
            "webhook_token:/etc/jellydemon/webhook_token"
        ]
    );
    assert!(unit_values("ExecStart")[0].contains("--config /etc/jellydemon/config.toml"));

    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    let run = dir.path().join("credentials");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&run).unwrap();
    let answers = jellydemon::init::Answers {
        url: "http://127.0.0.1:8096".into(),
        server: "Home".into(),
        key: secrecy::SecretString::from("k".to_string()),
        upload_mbps: 50.0,
        webhooks: true,
        listen: ([127, 0, 0, 1], 8098).into(),
        state_file: None,
        torrent: None,
        plex: None,
        member: None,
    };
    let config = etc.join("config.toml");
    std::fs::write(&config, jellydemon::init::render(&answers)).unwrap();
    std::fs::write(etc.join("api_key"), "key-beside-the-config\n").unwrap();
    std::fs::write(etc.join("webhook_token"), "0123456789abcdef0123\n").unwrap();
    // systemd's copies, in the service's credentials directory.
    std::fs::write(run.join("api_key"), "key-beside-the-config\n").unwrap();
    std::fs::write(run.join("webhook_token"), "0123456789abcdef0123\n").unwrap();

    // By hand (`sudo jellydemon check`): the files beside the configuration. (In a jail too:
    // jails run one at a time, so no other test's variable is set meanwhile.)
    figment::Jail::expect_with(|_jail| {
        let by_hand = Settings::load(&config).map_err(|e| e.to_string())?;
        assert_eq!(
            by_hand.api_key().unwrap().expose_secret(),
            "key-beside-the-config"
        );
        Ok(())
    });
    std::fs::remove_file(etc.join("api_key")).unwrap();
    figment::Jail::expect_with(|jail| {
        for env in unit_values("Environment") {
            let (k, v) = env.split_once('=').unwrap();
            let v = v
                .replace("%d", &run.display().to_string())
                .replace("%S", &dir.path().display().to_string());
            jail.set_env(k, v);
        }
        // Under the unit (which cannot read /etc/jellydemon/api_key): the credentials.
        let s = Settings::load(&config).map_err(|e| e.to_string())?;
        assert_eq!(
            s.api_key().unwrap().expose_secret(),
            "key-beside-the-config"
        );
        assert!(s.daemon.webhook_token().unwrap().is_some());
        assert!(s.state.file.ends_with("jellydemon/state.json"));
        Ok(())
    });
}

/// The systemd unit passes the key file as `JELLYDEMON_JELLYFIN__API_KEY_FILE`; a config file
/// that still holds `api_key` is refused, and the message says where each one came from.
#[test]
#[allow(clippy::result_large_err)]
fn a_key_given_twice_names_the_file_and_the_variable() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("config.toml", MINIMAL)?;
        jail.set_env(
            "JELLYDEMON_JELLYFIN__API_KEY_FILE",
            "/run/credentials/api_key",
        );
        let err = Settings::load(Path::new("config.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not both"), "{err}");
        assert!(err.contains("api_key (in "), "{err}");
        assert!(err.contains("config.toml)"), "{err}");
        assert!(
            err.contains(
                "api_key_file (from the environment variable JELLYDEMON_JELLYFIN__API_KEY_FILE)"
            ),
            "{err}"
        );
        Ok(())
    });
}

/// A relative key file is found beside the configuration file, wherever the command runs.
#[test]
#[allow(clippy::result_large_err)]
fn a_relative_key_file_is_relative_to_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api_key"), "key-beside-the-config\n").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[jellyfin]\nurl = \"http://127.0.0.1:8096\"\napi_key_file = \"api_key\"\n\
         [bandwidth]\ntotal_upload_mbps = 50\n",
    )
    .unwrap();
    figment::Jail::expect_with(|_jail| {
        // The jail's working directory is elsewhere.
        let s = Settings::load(&config).map_err(|e| e.to_string())?;
        assert_eq!(
            s.api_key().unwrap().expose_secret(),
            "key-beside-the-config"
        );
        Ok(())
    });
}

/// Under the systemd unit the service's user cannot read a secret file in /etc/jellydemon;
/// systemd hands it over as a credential of the same name (`LoadCredential=`), and the file
/// named in the configuration is found there.
#[test]
#[allow(clippy::result_large_err)]
fn a_secret_file_the_service_cannot_read_is_found_among_its_credentials() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "config.toml",
            &format!(
                "{MINIMAL}[[downloader]]\nkind = \"qbittorrent\"\nurl = \"http://127.0.0.1:8080\"\n\
                 username = \"admin\"\npassword_file = \"/etc/jellydemon-nonexistent/qbittorrent_password\"\n"
            ),
        )?;
        // The file is read at load; one this process cannot read leaves the rest loaded and
        // the password's use says why.
        let settings = Settings::load(&jail.directory().join("config.toml")).unwrap();
        let e = settings.downloader[0].password().unwrap_err().to_string();
        assert!(
            e.contains("cannot read /etc/jellydemon-nonexistent/qbittorrent_password"),
            "{e}"
        );
        std::fs::create_dir(jail.directory().join("credentials")).unwrap();
        jail.create_file("credentials/qbittorrent_password", "from-systemd\n")?;
        jail.set_env(
            "CREDENTIALS_DIRECTORY",
            jail.directory().join("credentials").display(),
        );
        let settings = Settings::load(&jail.directory().join("config.toml")).unwrap();
        let p = settings.downloader[0].password().unwrap().unwrap();
        assert_eq!(p.expose_secret(), "from-systemd");
        Ok(())
    });
}
