use super::*;

fn answers(webhooks: bool) -> Answers {
    Answers {
        url: "http://jelly\"fin:8096/jf".into(),
        server: "Home 10.10.7".into(),
        key: SecretString::from("k".to_string()),
        upload_mbps: 42.5,
        webhooks,
        listen: ([0, 0, 0, 0], 8098).into(),
        state_file: Some("/srv/jd/state.json".into()),
        torrent: webhooks.then(|| Torrent {
            kind: crate::config::DownloaderKind::Qbittorrent,
            url: "http://127.0.0.1:8080".into(),
            username: Some("admin".into()),
            password: Some(SecretString::from("pw".to_string())),
        }),
        plex: webhooks.then(|| {
            (
                "http://127.0.0.1:32400".to_string(),
                SecretString::from("plex-tok".to_string()),
            )
        }),
        member: webhooks.then(|| Member {
            kind: crate::config::ServerKind::Emby,
            url: "http://127.0.0.1:8096/emby".into(),
            server: "Emby Server 4.8.11.0".into(),
            key: SecretString::from("emby-k".to_string()),
        }),
    }
}

#[test]
fn the_written_configuration_loads_and_says_what_was_answered() {
    for webhooks in [true, false] {
        let text = render(&answers(webhooks));
        let s =
            crate::config::Settings::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(s.jellyfin.url, "http://jelly\"fin:8096/jf");
        assert_eq!(s.bandwidth.total_upload_mbps, 42.5);
        assert_eq!(s.bandwidth.reserved_mbps, 4.3);
        assert_eq!(s.state.file, PathBuf::from("/srv/jd/state.json"));
        assert!(s.daemon.webhook_token_file.is_some(), "always a secret");
        assert!(!text.contains("\"k\""), "no secret in the file");
        assert_eq!(s.downloader.len(), usize::from(webhooks), "{text}");
        assert!(!text.contains("\"pw\""), "no secret in the file");
        assert_eq!(s.server.len(), 2 * usize::from(webhooks), "{text}");
        assert!(!text.contains("plex-tok"), "no secret in the file");
        assert!(!text.contains("emby-k"), "no secret in the file");
        if let [p, e] = s.server.as_slice() {
            assert_eq!(p.url, "http://127.0.0.1:32400");
            // From token_file (not written here, so unreadable), never inline.
            let from = p.token().unwrap_err().to_string();
            assert!(from.contains("server.token_file"), "{from}");
            assert!(p.manages_wan_total());
            assert_eq!(e.kind(), crate::config::ServerKind::Emby);
            assert_eq!(e.url, "http://127.0.0.1:8096/emby");
            let from = e.api_key().unwrap_err().to_string();
            assert!(from.contains("server.api_key_file"), "{from}");
        }
        if let Some(d) = s.downloader.first() {
            assert_eq!(d.username.as_deref(), Some("admin"));
            assert!(d.password_file.is_some());
        }
    }
}

#[test]
fn the_listen_address_follows_where_jellyfin_is() {
    let lo: SocketAddr = ([127, 0, 0, 1], 8098).into();
    let all: SocketAddr = ([0, 0, 0, 0], 8098).into();
    assert_eq!(default_listen("http://127.0.0.1:8096", true), lo);
    assert_eq!(default_listen("http://localhost:8096", true), lo);
    assert_eq!(default_listen("http://[::1]:8096", true), lo);
    assert_eq!(default_listen("http://jellyfin:8096", true), all);
    assert_eq!(default_listen("http://jellyfin:8096", false), lo);
}

#[test]
fn answers_come_as_lines_with_defaults_and_end_of_input_is_no_answer() {
    let mut p = Prompt::lines("\n  40 \n".as_bytes(), Vec::new());
    assert_eq!(p.ask("q", Some("d")).as_deref(), Some("d"));
    assert_eq!(p.ask("q", None).as_deref(), Some("40"));
    assert_eq!(p.ask("q", None), None);
    assert_eq!(String::from_utf8(p.out).unwrap(), "q [d]: q: q: ");
}
