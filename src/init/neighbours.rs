//! The questions about what else uses the link: a torrent client seeding beside Jellyfin, a
//! Plex server, another Jellyfin or Emby server. Each is read once to say whether it answers
//! (one login: qBittorrent bans an address after failed logins), and written all the same.

use std::io::{BufRead, Write};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::adapters::jellyfin::Client;

use super::{InitError, Member, Options, Prompt, Torrent, public_info, with_scheme};

/// Whether a torrent client seeds on the link, and how to reach it (from the flags or asked).
/// It is read once (one login: qBittorrent bans an address after failed logins); a client
/// that does not answer yet is said so, and written all the same.
pub(super) async fn torrent<R: BufRead, W: Write>(
    opts: &Options,
    prompt: &mut Prompt<R, W>,
) -> Result<Option<Torrent>, InitError> {
    use crate::config::DownloaderKind;
    let kind = loop {
        let Some(a) = prompt.flag_or_ask(
            &opts.torrent,
            "Does a torrent client seed on this link? none, qbittorrent or transmission",
            "none",
        ) else {
            return Ok(None);
        };
        match a.trim().to_ascii_lowercase().as_str() {
            "none" | "no" | "n" => return Ok(None),
            "qbittorrent" | "qbit" => break DownloaderKind::Qbittorrent,
            "transmission" => break DownloaderKind::Transmission,
            other if opts.torrent.is_some() => {
                return Err(InitError::Rejected(format!(
                    "--torrent {other:?}: none, qbittorrent or transmission"
                )));
            }
            _ => prompt.say("  answer none, qbittorrent or transmission"),
        }
    };
    let default_url = match kind {
        DownloaderKind::Qbittorrent => "http://127.0.0.1:8080",
        DownloaderKind::Transmission => "http://127.0.0.1:9091",
    };
    let url = match &opts.torrent_url {
        Some(u) => with_scheme(u),
        None => with_scheme(&prompt.ask("Its WebUI / RPC URL", Some(default_url)).ok_or(
            InitError::NoAnswer {
                question: "the torrent client's URL",
                flag: "--torrent-url",
            },
        )?),
    };
    let username = match &opts.torrent_username {
        Some(u) => u.clone(),
        None => prompt
            .ask(
                "Its user name (empty: no login, e.g. localhost bypass)",
                Some(""),
            )
            .ok_or(InitError::NoAnswer {
                question: "the torrent client's user name",
                flag: "--torrent-username",
            })?,
    };
    let username = Some(username.trim().to_string()).filter(|u| !u.is_empty());
    let password =
        match (&username, &opts.torrent_password_file) {
            (None, _) => None,
            (Some(_), Some(file)) => Some(SecretString::from(
                std::fs::read_to_string(file)
                    .map_err(|e| InitError::Io(format!("cannot read {}: {e}", file.display())))?
                    .trim()
                    .to_string(),
            )),
            (Some(_), None) => Some(prompt.ask_secret("Its password").ok_or(
                InitError::NoAnswer {
                    question: "the torrent client's password",
                    flag: "--torrent-password-file",
                },
            )?),
        };
    let t = Torrent {
        kind,
        url,
        username,
        password,
    };
    let settings = crate::config::DownloaderSettings::for_init(
        kind,
        &t.url,
        t.username.clone(),
        t.password.clone(),
    );
    match crate::adapters::downloader::Downloader::new(&settings) {
        Ok(mut client) => match client.read().await {
            Ok(r) => prompt.say(&format!(
                "  {} answers: upload limit {}",
                kind.as_str(),
                r.limit_bps
                    .map_or("unlimited".into(), crate::core::rate::fmt_mbps)
            )),
            Err(e) => prompt.say(&format!(
                "  cannot read it yet ({e}); it is written all the same: `jellydemon check` says \
                 what is wrong"
            )),
        },
        Err(e) => return Err(InitError::Rejected(e.to_string())),
    }
    Ok(Some(t))
}

/// Whether a Plex server streams on the link, and how to reach it (from the flags or asked).
/// Its sessions are read once; a server that does not answer yet is said so, and written all
/// the same.
pub(super) async fn plex<R: BufRead, W: Write>(
    opts: &Options,
    prompt: &mut Prompt<R, W>,
) -> Result<Option<(String, SecretString)>, InitError> {
    let Some(url) = prompt.flag_or_ask(
        &opts.plex_url,
        "Does a Plex server stream on this link too? Its URL (empty: none)",
        "",
    ) else {
        return Ok(None);
    };
    let url = url.trim();
    if url.is_empty() || url.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let url = with_scheme(url);
    let token = match &opts.plex_token_file {
        Some(file) => SecretString::from(
            std::fs::read_to_string(file)
                .map_err(|e| InitError::Io(format!("cannot read {}: {e}", file.display())))?
                .trim()
                .to_string(),
        ),
        None => prompt
            .ask_secret(
                "Its X-Plex-Token (the server owner's: Plex Web, an item's Get Info, View XML, \
                 X-Plex-Token in the address)",
            )
            .ok_or(InitError::NoAnswer {
                question: "the Plex server's token",
                flag: "--plex-token-file",
            })?,
    };
    if token.expose_secret().is_empty() {
        return Err(InitError::Rejected("the Plex token is empty".into()));
    }
    let settings = crate::config::ServerSettings::plex_for_init(&url, token.clone());
    match crate::adapters::plex::Plex::new(&settings) {
        Ok(p) => match p.remote_streams().await {
            Ok(streams) => prompt.say(&format!(
                "  plex answers: {} stream{} outside the house now",
                streams.len(),
                if streams.len() == 1 { "" } else { "s" }
            )),
            Err(e) => prompt.say(&format!(
                "  cannot read it yet ({e}); it is written all the same: `jellydemon check` says \
                 what is wrong"
            )),
        },
        Err(e) => return Err(InitError::Rejected(e.to_string())),
    }
    Ok(Some((url, token)))
}

/// Whether another Jellyfin or Emby server streams on the link (from the flags or asked):
/// which one it is comes from its `/System/Info/Public` (Emby's at `/emby` too), and its key
/// is tried once; one that does not answer yet is written all the same, one that refuses the
/// key is not.
pub(super) async fn member<R: BufRead, W: Write>(
    opts: &Options,
    prompt: &mut Prompt<R, W>,
) -> Result<Option<Member>, InitError> {
    use crate::adapters::jellyfin::Flavor;
    use crate::config::ServerKind;
    let Some(url) = prompt.flag_or_ask(
        &opts.server_url,
        "Does another Jellyfin or Emby server stream on this link too? Its URL (empty: none)",
        "",
    ) else {
        return Ok(None);
    };
    let url = url.trim().trim_end_matches('/');
    if url.is_empty() || url.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let url = with_scheme(url);
    // What answers there: Emby serves its API under /emby.
    let mut found = None;
    for candidate in [url.clone(), format!("{url}/emby")] {
        if let Ok(info) = public_info(&candidate).await {
            found = Some((candidate, info));
            break;
        }
    }
    let (url, kind, server) = match found {
        Some((url, info)) => {
            let emby = info
                .product_name
                .as_deref()
                .is_some_and(|p| p.to_ascii_lowercase().contains("emby"));
            let server = format!(
                "{} {}",
                info.product_name.as_deref().unwrap_or("Jellyfin Server"),
                info.version.as_deref().unwrap_or("(version unknown)")
            );
            let kind = if emby {
                ServerKind::Emby
            } else {
                ServerKind::Jellyfin
            };
            (url, kind, server)
        }
        None => {
            return Err(InitError::Rejected(format!(
                "{url} does not answer as Jellyfin or Emby (at its root or under /emby)"
            )));
        }
    };
    let key = match &opts.server_api_key_file {
        Some(file) => SecretString::from(
            std::fs::read_to_string(file)
                .map_err(|e| InitError::Io(format!("cannot read {}: {e}", file.display())))?
                .trim()
                .to_string(),
        ),
        None => prompt
            .ask_secret(&format!(
                "An administrator's API key of that {server} (its dashboard: API Keys)"
            ))
            .ok_or(InitError::NoAnswer {
                question: "the other server's API key",
                flag: "--server-api-key-file",
            })?,
    };
    if key.expose_secret().is_empty() {
        return Err(InitError::Rejected(
            "the other server's API key is empty".into(),
        ));
    }
    let flavor = match kind {
        ServerKind::Emby => Flavor::Emby,
        _ => Flavor::Jellyfin,
    };
    let client = Client::with_flavor(flavor, &url, &key, Duration::from_secs(5))
        .map_err(|e| InitError::Rejected(e.to_string()))?;
    match client.users().await {
        Ok(users) => prompt.say(&format!(
            "  {server} answers: {} user{}; their remote streams share the budget, named \
             user@{}",
            users.len(),
            if users.len() == 1 { "" } else { "s" },
            kind.as_str()
        )),
        Err(e) if matches!(e.status(), Some(401 | 403)) => {
            return Err(InitError::Rejected(format!(
                "{server} refuses that key ({e}): use an administrator's API key"
            )));
        }
        Err(e) => prompt.say(&format!(
            "  cannot read its users yet ({e}); it is written all the same: `jellydemon check` \
             says what is wrong"
        )),
    }
    Ok(Some(Member {
        kind,
        url,
        server,
        key,
    }))
}
