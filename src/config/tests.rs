use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;

const MINIMAL: &str = r#"
    [jellyfin]
    url = "http://127.0.0.1:8096"
    api_key = "0123456789abcdef0123456789abcdef"
    [bandwidth]
    total_upload_mbps = 100
    reserved_mbps = 10
"#;

#[test]
fn minimal_config_gets_sane_defaults() {
    let s = Settings::from_toml_str(MINIMAL).unwrap();
    assert_eq!(s.bandwidth.algorithm, Algorithm::Equal);
    assert_eq!(s.jellyfin.timeout, Duration::from_secs(10));
    assert_eq!(s.network.ranges().clone(), InternalRanges::FromJellyfin);
    let b = s.budget();
    assert_eq!(b.budget_bps, 90_000_000);
    assert_eq!(b.min_per_user_bps, 2_000_000);
    assert_eq!(b.max_per_user_bps, None);
    assert_eq!(b.step_bps, 500_000);
}

#[test]
fn debug_output_hides_the_api_key() {
    let s = Settings::from_toml_str(MINIMAL).unwrap();
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("0123456789abcdef"), "{dbg}");
}

#[test]
fn unknown_key_is_named() {
    let toml = format!("{MINIMAL}\nbogus = 1\n");
    let err = Settings::from_toml_str(&toml).unwrap_err().to_string();
    assert!(err.contains("bandwidth.bogus"), "{err}");
}

#[test]
fn fixed_ranges_parse_v4_and_v6() {
    let toml = format!(
        "{MINIMAL}\n[network]\ninternal_ranges = [\"10.0.0.0/8\", \"fd00::/8\", \"192.168.1.7\"]\n"
    );
    let s = Settings::from_toml_str(&toml).unwrap();
    let InternalRanges::Fixed(nets) = s.network.ranges().clone() else {
        panic!("expected fixed ranges")
    };
    assert_eq!(nets.len(), 3);
    assert_eq!(nets[2].to_string(), "192.168.1.7/32");
}

proptest::proptest! {
    /// The loader never panics, whatever the file says: it loads or names the problem.
    #[test]
    fn loader_never_panics_on_arbitrary_text(text in "[\\PC\n]{0,300}") {
        let _ = Settings::from_toml_str(&text);
    }

    /// Nor on a valid file with one line replaced by arbitrary `key = value` text.
    #[test]
    fn loader_never_panics_on_mutated_files(
        line in 0usize..8,
        key in "[a-z_]{1,20}",
        value in "[\\PC]{0,40}",
    ) {
        let mut lines: Vec<String> = MINIMAL.lines().map(str::to_string).collect();
        let i = line % lines.len();
        lines[i] = format!("{key} = {value}");
        let text = lines.join("\n");
        if let Err(e) = Settings::from_toml_str(&text) {
            proptest::prop_assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn priority_weight_by_name_then_role() {
    let mut p = PrioritySettings {
        admin_weight: 2.0,
        ..Default::default()
    };
    p.users.insert("Alice".into(), 3.0);
    assert_eq!(p.weight("alice", false), 3.0);
    assert_eq!(p.weight("bob", true), 2.0);
    assert_eq!(p.weight("carol", false), 1.0);
}

/// Every `<key>_file` is read at load into its `<key>`: a notification URL read from a file is
/// checked as an inline one (without quoting it), and a file that cannot be read leaves the
/// rest loaded, its key named where the secret is needed.
#[test]
fn secret_files_are_read_once_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("discord_url");
    let toml = format!(
        "{MINIMAL}\n[[notify]]\nkind = \"discord\"\nurl_file = \"{}\"\n",
        file.display()
    );
    std::fs::write(&file, "not a url with a secret-part\n").unwrap();
    let err = Settings::from_toml_str(&toml).unwrap_err().to_string();
    assert!(
        err.contains("target 1 (discord): url is not an http(s) URL"),
        "{err}"
    );
    assert!(!err.contains("secret-part"), "{err}");

    std::fs::write(&file, " https://discord.test/api/webhooks/1/abc \n").unwrap();
    let s = Settings::from_toml_str(&toml).unwrap();
    std::fs::remove_file(&file).unwrap();
    let url = s.notify[0].url().unwrap();
    assert_eq!(
        url.expose_secret(),
        "https://discord.test/api/webhooks/1/abc"
    );
    assert!(!format!("{s:?}").contains("discord.test"));

    let s = Settings::from_toml_str(&toml).unwrap();
    let err = s.notify[0].url().unwrap_err().to_string();
    assert!(
        err.contains("notify.url_file") && err.contains("cannot read"),
        "{err}"
    );
}

/// `[bandwidth.meter]` parses into its kind with what that kind needs, the secret read.
#[test]
fn a_meter_parses_into_its_kind() {
    let toml = format!(
        "{MINIMAL}\n[bandwidth.meter]\nkind = \"snmp\"\ninterface = \"wan\"\nhost = \"192.0.2.1\"\n\
         community = \"c-secret\"\n"
    );
    let s = Settings::from_toml_str(&toml).unwrap();
    let m = s.bandwidth.meter.as_ref().unwrap();
    assert_eq!(m.kind(), MeterKind::Snmp);
    match &m.source {
        MeterSource::Snmp { host, community } => {
            assert_eq!(host, "192.0.2.1");
            assert_eq!(community.get().unwrap().expose_secret(), "c-secret");
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{s:?}").contains("c-secret"));

    let toml =
        format!("{MINIMAL}\n[bandwidth.meter]\nkind = \"interface\"\ninterface = \"eth0\"\n");
    let s = Settings::from_toml_str(&toml).unwrap();
    assert!(matches!(
        s.bandwidth.meter.as_ref().unwrap().source,
        MeterSource::Interface
    ));
}

/// The schedule is parsed at load; the capacity SQM reports later must still leave each entry
/// a budget, and the time zone is the one named.
#[test]
fn the_schedule_is_parsed_at_load_and_checked_against_the_sqm_capacity() {
    let toml = r#"
        [jellyfin]
        url = "http://127.0.0.1:8096"
        api_key = "k"
        [bandwidth]
        total_upload_mbps = "sqm"
        reserved_mbps = 5
        timezone = "Europe/Berlin"
        [bandwidth.meter]
        kind = "interface"
        interface = "eth0"
        [[bandwidth.schedule]]
        from = "08:00"
        to = "18:00"
        reserved_mbps = 30
    "#;
    let mut s = Settings::from_toml_str(toml).unwrap();
    assert_eq!(s.bandwidth.windows.len(), 1);
    assert_eq!(s.bandwidth.windows[0].reserved_mbps, Some(30.0));
    assert_eq!(s.timezone().iana_name(), Some("Europe/Berlin"));
    let err = s
        .set_sqm_capacity(20.0, "queue eth0".into())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("entry 1") && err.contains("leaves nothing"),
        "{err}"
    );
    s.set_sqm_capacity(50.0, "queue eth0".into()).unwrap();
    assert_eq!(s.bandwidth.total_upload_mbps, 50.0);
}

/// `[[notify]]` parses into its service with what that service needs: ntfy's login, Apprise's
/// stored configuration, a default name.
#[test]
fn a_notify_target_parses_into_its_service() {
    let toml = format!(
        "{MINIMAL}\n[[notify]]\nkind = \"ntfy\"\nurl = \"https://ntfy.test\"\ntopic = \"t-secret\"\n\
         username = \"me\"\npassword = \"p-secret\"\n\
         [[notify]]\nkind = \"apprise\"\nurl = \"http://apprise.test\"\nkey = \"home\"\n\
         events = [\"started\"]\n"
    );
    let s = Settings::from_toml_str(&toml).unwrap();
    let [ntfy, apprise] = &s.notify[..] else {
        panic!("{:?}", s.notify)
    };
    assert_eq!(
        (ntfy.display_name(), ntfy.kind()),
        ("ntfy", NotifyKind::Ntfy)
    );
    match &ntfy.service {
        NotifyService::Ntfy {
            topic,
            auth: NtfyAuth::Basic { username, password },
            ..
        } => {
            assert_eq!(topic.get().unwrap().expose_secret(), "t-secret");
            assert_eq!(username, "me");
            assert_eq!(password.get().unwrap().expose_secret(), "p-secret");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &apprise.service,
        NotifyService::Apprise { to: AppriseTo::Key(k), .. } if k == "home"
    ));
    assert!(apprise.wants(EventKind::Started) && !apprise.wants(EventKind::Overload));
    let dbg = format!("{s:?}");
    assert!(
        !dbg.contains("t-secret") && !dbg.contains("p-secret"),
        "{dbg}"
    );
}
