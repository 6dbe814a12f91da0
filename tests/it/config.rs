//! The configuration: the example file loads (with every documented key switched on), each file
//! in `tests/invalid-configs/` fails with the message its first line names, and no error quotes
//! a secret. Environment variables are tested in `tests/environment.rs`.

use std::collections::HashSet;
use std::path::Path;

use jellydemon::config::{Algorithm, Settings};
use secrecy::ExposeSecret;

const EXAMPLE: &str = include_str!("../../config.example.toml");

#[test]
fn the_example_config_loads() {
    let s = Settings::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(s.bandwidth.algorithm, Algorithm::Equal);
    assert_eq!(s.budget().budget_bps, 90_000_000);
}

/// Uncomment every `# key = value` line (the first of each key in a section, skipping the
/// `*_file` alternatives): every documented key must exist and its example value be valid.
#[test]
fn every_documented_key_is_real_and_its_example_valid() {
    let mut out = String::new();
    let mut seen = HashSet::new();
    let mut section = String::new();
    let mut uncommented = 0;
    // Keys set in the example itself, to leave their commented alternative alone.
    let mut active = HashSet::new();
    for line in EXAMPLE.lines() {
        if line.starts_with('[') {
            section = line.to_string();
        } else if let Some((key, _)) = line.split_once(" = ")
            && !line.starts_with('#')
        {
            active.insert(format!("{section}.{key}"));
        }
        let candidate = line.strip_prefix("# ").filter(|rest| {
            let key = rest.split(" = ").next().unwrap_or("");
            rest.contains(" = ")
                && !key.is_empty()
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        });
        match candidate {
            Some(rest) => {
                let key = rest.split(" = ").next().unwrap();
                // The *_file keys are alternatives to keys that are switched on already, and
                // a key whose *_file is set in the example is the alternative to that.
                if !key.ends_with("_file")
                    && !active.contains(&format!("{section}.{key}_file"))
                    && seen.insert(format!("{section}.{key}"))
                {
                    out.push_str(rest);
                    uncommented += 1;
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    assert!(uncommented >= 15, "only {uncommented} keys found");
    let s = Settings::from_toml_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(s.budget().max_per_user_bps, Some(40_000_000));
    assert_eq!(s.bandwidth.priority.weight("ALICE", false), 2.0);
    assert!(
        s.users
            .is_excluded(&"4f1c2d3e-0000-1111-2222-333344445555".into(), "x")
    );
}

/// The example blocks (lines starting with `#   `, from a table header such as
/// `[bandwidth.meter]` on) each load
/// when copied under a minimal configuration.
#[test]
fn every_example_block_loads() {
    let mut blocks: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in EXAMPLE.lines() {
        match line.strip_prefix("#   ") {
            // A block starts with its table header.
            Some(rest) if rest.starts_with('[') || !current.is_empty() => {
                current.push_str(rest);
                current.push('\n');
            }
            Some(_) => {}
            None if !current.is_empty() => blocks.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    assert!(blocks.len() >= 10, "{blocks:?}");
    let dir = tempfile::tempdir().unwrap();
    for secret in [
        "snmp_community",
        "openwrt_password",
        "ntfy_topic",
        "gotify_token",
        "qbittorrent_password",
        "transmission_password",
        "plex_token",
        "emby_api_key",
    ] {
        std::fs::write(dir.path().join(secret), "s3cret\n").unwrap();
    }
    for url in ["discord_webhook_url", "ha_webhook_url"] {
        std::fs::write(dir.path().join(url), "https://example.org/hook/s3cret\n").unwrap();
    }
    for block in blocks {
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!(
                "[jellyfin]\nurl = \"http://127.0.0.1:8096\"\napi_key = \"k\"\n\
                 [bandwidth]\ntotal_upload_mbps = 100\nreserved_mbps = 10\n{block}"
            ),
        )
        .unwrap();
        let s = Settings::load(&path).unwrap_or_else(|e| panic!("{e}\n{block}"));
        assert!(
            s.bandwidth.meter.is_some()
                || !s.bandwidth.schedule.is_empty()
                || !s.notify.is_empty()
                || !s.downloader.is_empty()
                || !s.server.is_empty()
                || block.starts_with("[bandwidth.downloaders]"),
            "{block}"
        );
        for d in &s.downloader {
            jellydemon::adapters::downloader::Downloader::new(d)
                .unwrap_or_else(|e| panic!("{e}\n{block}"));
        }
        for p in s.server.iter().filter(|p| p.is_plex()) {
            jellydemon::adapters::plex::Plex::new(p).unwrap_or_else(|e| panic!("{e}\n{block}"));
        }
        if s.server.iter().any(|p| p.manages_users()) {
            jellydemon::adapters::jellyfin::fleet::Fleet::from_settings(&s)
                .unwrap_or_else(|e| panic!("{e}\n{block}"));
        }
        for t in &s.notify {
            jellydemon::adapters::notify::target::Resolved::new(t)
                .unwrap_or_else(|e| panic!("{e}\n{block}"));
        }
        if let Some(m) = &s.bandwidth.meter {
            jellydemon::adapters::budget::meter::Meter::new(m)
                .unwrap_or_else(|e| panic!("{e}\n{block}"));
        }
    }
}

#[test]
fn every_invalid_config_fails_with_its_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid-configs");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks a '# expect: ' first line", path.display()));
        let err = match Settings::from_toml_str(&text) {
            Ok(_) => panic!("{} loaded but should fail with {expect:?}", path.display()),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(expect),
            "{}: expected {expect:?} in the error, got {err:?}",
            path.display()
        );
        // Words for people editing a file, not Rust's: no type names, no doubled backticks.
        for rust in [
            "``",
            "f64",
            "u32",
            "u64",
            "i64",
            "struct ",
            "untagged enum",
            "variant",
        ] {
            assert!(
                !err.contains(rust),
                "{}: {rust:?} in {err:?}",
                path.display()
            );
        }
        count += 1;
    }
    assert!(count >= 20, "only {count} invalid configs");
}

#[test]
fn api_key_file_is_read_and_trimmed_and_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "  secret-from-file\n").unwrap();
    let toml = format!(
        "[jellyfin]\nurl = \"http://h\"\napi_key_file = \"{}\"\n[bandwidth]\ntotal_upload_mbps = 10\n",
        key.display()
    );
    let s = Settings::from_toml_str(&toml).unwrap();
    assert_eq!(s.api_key().unwrap().expose_secret(), "secret-from-file");

    // Read once, at load: the file gone afterwards changes nothing.
    std::fs::remove_file(&key).unwrap();
    assert_eq!(s.api_key().unwrap().expose_secret(), "secret-from-file");
    // Gone at load: the rest loads (`check` and `report` run as another user than the
    // service's), and the key's use names the file's key.
    let s = Settings::from_toml_str(&toml).unwrap();
    let err = s.api_key().unwrap_err().to_string();
    assert!(err.contains("jellyfin.api_key_file"), "{err}");
}

#[test]
fn a_short_webhook_secret_is_refused_in_a_file_as_inline() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("webhook_token");
    std::fs::write(&token, "abc\n").unwrap();
    let toml = format!(
        "[jellyfin]\nurl = \"http://h\"\napi_key = \"k\"\n[bandwidth]\ntotal_upload_mbps = 10\n\
         [daemon]\nlisten = \"0.0.0.0:8098\"\nwebhook_token_file = \"{}\"\n",
        token.display()
    );
    let err = Settings::from_toml_str(&toml).unwrap_err().to_string();
    assert!(
        err.contains("daemon.webhook_token_file") && err.contains("at least 16"),
        "{err}"
    );
    assert!(!err.contains("abc"), "{err}");
    // Read once, at load: a file made short afterwards changes nothing.
    std::fs::write(&token, "0123456789abcdef\n").unwrap();
    let s = Settings::from_toml_str(&toml).unwrap();
    std::fs::write(&token, "abc\n").unwrap();
    let t = s.daemon.webhook_token().unwrap().unwrap();
    assert_eq!(t.expose_secret(), "0123456789abcdef");
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let err = Settings::load(Path::new("/nonexistent/jellydemon.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/jellydemon.toml") && err.contains("--config"),
        "{err}"
    );
}

/// No mistake in the configuration makes an error message quote a secret: a syntax error on
/// the secret's line, a value of the wrong type, a URL with a password. (The messages still say
/// where and what.) The same from the environment is in `tests/environment.rs`.
#[test]
fn configuration_errors_never_quote_a_secret() {
    const SECRET: &str = "4242424242424242";
    let base = |line: &str, section: &str| {
        let meter = match section {
            "bandwidth.meter" if line.starts_with("community") => {
                format!(
                    "[bandwidth.meter]\nkind = \"snmp\"\ninterface = \"wan\"\nhost = \"r\"\n{line}\n"
                )
            }
            "bandwidth.meter" => format!(
                "[bandwidth.meter]\nkind = \"openwrt\"\ninterface = \"wan\"\n\
                 url = \"http://r/ubus\"\nusername = \"u\"\n{line}\n"
            ),
            _ => String::new(),
        };
        format!(
            "[jellyfin]\nurl = \"http://127.0.0.1:8096\"\n{}\n[bandwidth]\ntotal_upload_mbps = 100\n\
             [daemon]\n{}\n{meter}",
            if section == "jellyfin" {
                line
            } else {
                "api_key = \"k\""
            },
            if section == "daemon" { line } else { "" },
        )
    };
    for key in jellydemon::config::SECRET_KEYS {
        let (section, name) = key.rsplit_once('.').unwrap();
        for line in [
            format!("{name} = {SECRET}x"),         // not quoted: a syntax error
            format!("{name} = {SECRET}"),          // a number, not a string
            format!("{name} = [\"{SECRET}\"]"),    // a list
            format!("{name} = \"{SECRET}\" oops"), // junk after the value
        ] {
            let err = Settings::from_toml_str(&base(&line, section))
                .expect_err(&line)
                .to_string();
            assert!(!err.contains(SECRET), "{key}: {line:?} gave {err}");
            assert!(
                err.contains("line") || err.contains(key),
                "{key}: {line:?} gave {err}"
            );
        }
    }
}

#[test]
fn a_password_in_the_jellyfin_url_is_refused_and_never_shown() {
    for url in [
        "http://admin:hunter2hunter2@jellyfin.lan:8096",
        "https://hunter2hunter2@jellyfin.lan/jellyfin",
        "http://admin:hunter2hunter2@jellyfin.lan:8096/ bad path",
    ] {
        let err = Settings::from_toml_str(&format!(
            "[jellyfin]\nurl = \"{url}\"\napi_key = \"k\"\n[bandwidth]\ntotal_upload_mbps = 100\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("jellyfin.url"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("***@jellyfin.lan"), "{err}");
    }
}
