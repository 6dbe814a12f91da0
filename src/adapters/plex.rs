//! A Plex Media Server on the same upload (`[[server]] kind = "plex"`): what it streams outside
//! the house, read from `GET /status/sessions` (facts and sources in
//! `docs/media-servers.md`).
//!
//! * `X-Plex-Token` goes in a header, never in the URL; `Accept: application/json`, since
//!   Plex answers XML otherwise.
//! * A session is remote when its `Session.location` is not `lan` (`wan`, `cellular`); what
//!   it carries is `Session.bandwidth`, the kbit/s Plex's streaming brain reserved for it.
//! * Answers are capped at [`MAX_ANSWER`] bytes; a redirect is never followed (it would take
//!   the token elsewhere).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::{ConfigError, ServerSettings};

/// The most of an answer read.
pub const MAX_ANSWER: usize = 4 << 20;

/// One stream Plex sends outside the house.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RemoteStream {
    /// The Plex account's name.
    pub user: String,
    /// The player's name (`Player.title`), or its product.
    pub player: String,
    /// `playing`, `paused` or `buffering`.
    pub state: String,
    /// What Plex reserved for it, bits/s.
    pub bandwidth_bps: u64,
}

/// A Plex Media Server.
pub struct Plex {
    http: reqwest::Client,
    url: String,
    token: SecretString,
}

impl std::fmt::Debug for Plex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plex")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Plex {
    /// The server a `[[server]]` entry describes (its token read at load).
    pub fn new(s: &ServerSettings) -> Result<Plex, ConfigError> {
        let http = reqwest::Client::builder()
            .timeout(s.timeout)
            .connect_timeout(s.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| crate::config::invalid("server.url", e.to_string()))?;
        Ok(Plex {
            http,
            url: s.url.trim_end_matches('/').to_string(),
            token: s.token()?.clone(),
        })
    }

    /// Where it is.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What it streams outside the house now.
    pub async fn remote_streams(&self) -> Result<Vec<RemoteStream>, String> {
        let body = self.get("/status/sessions").await?;
        remote_streams(&body).map_err(|e| format!("Plex at {}: {e}", self.url))
    }

    /// Its `WanTotalMaxUploadRate` ("External network total upload limit", kbit/s) as bits/s;
    /// `None`: no limit (0).
    pub async fn wan_total_limit(&self) -> Result<Option<u64>, String> {
        let body = self.get("/:/prefs").await?;
        setting(&body, WAN_TOTAL)
            .map(|kbps| (kbps > 0).then(|| kbps as u64 * 1000))
            .map_err(|e| format!("Plex at {}: {e}", self.url))
    }

    /// Its `WanTotalMaxUploadRate` as Plex holds it, kbit/s (0: no limit).
    pub async fn wan_total_kbps(&self) -> Result<i64, String> {
        let body = self.get("/:/prefs").await?;
        setting(&body, WAN_TOTAL).map_err(|e| format!("Plex at {}: {e}", self.url))
    }

    /// Set its `WanTotalMaxUploadRate`, kbit/s (0: no limit): `PUT /:/prefs?<id>=<value>`.
    pub async fn set_wan_total_kbps(&self, kbps: i64) -> Result<(), String> {
        self.send(
            reqwest::Method::PUT,
            &format!("/:/prefs?{WAN_TOTAL}={}", kbps.max(0)),
        )
        .await
        .map(drop)
    }

    /// `GET path`'s body, at most [`MAX_ANSWER`] bytes.
    async fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        self.send(reqwest::Method::GET, path).await
    }

    /// `method path`'s body, at most [`MAX_ANSWER`] bytes.
    async fn send(&self, method: reqwest::Method, path: &str) -> Result<Vec<u8>, String> {
        let url = format!("{}{path}", self.url);
        let mut resp = self
            .http
            .request(method, &url)
            .header("X-Plex-Token", self.token.expose_secret())
            .header("X-Plex-Client-Identifier", "jellydemon")
            .header("X-Plex-Product", "jellydemon")
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                format!(
                    "Plex at {}: {}",
                    self.url,
                    crate::escape::request_error(&e, "server.timeout")
                )
            })?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(format!(
                "Plex at {} refused the token (server.token_file): use the server owner's \
                 X-Plex-Token",
                self.url
            ));
        }
        if !status.is_success() {
            return Err(format!(
                "Plex at {} answered {path} with HTTP {status}",
                self.url
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("Plex at {}: {e}", self.url))?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(format!(
                    "Plex at {}: an answer over {MAX_ANSWER} bytes",
                    self.url
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The preference that caps what Plex sends outside the house in total, kbit/s (0: none).
pub const WAN_TOTAL: &str = "WanTotalMaxUploadRate";

/// `bps` as Plex's WAN total: whole kbit/s, at least 1 (0 would mean no limit).
pub fn wan_total_kbps(bps: u64) -> i64 {
    (bps / 1000).clamp(1, i32::MAX as u64) as i64
}

#[derive(Deserialize)]
struct Prefs {
    #[serde(rename = "MediaContainer")]
    container: PrefsContainer,
}

#[derive(Deserialize)]
struct PrefsContainer {
    #[serde(rename = "Setting", default)]
    settings: Vec<Setting>,
}

#[derive(Deserialize)]
struct Setting {
    id: String,
    value: Option<serde_json::Value>,
}

/// The integer value of the preference `id` in a `/:/prefs` answer (JSON).
pub fn setting(body: &[u8], id: &str) -> Result<i64, String> {
    let prefs: Prefs = serde_json::from_slice(body)
        .map_err(|e| format!("an answer that is not Plex's preferences ({e})"))?;
    let s = prefs
        .container
        .settings
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| format!("no preference {id} (is this a Plex Media Server?)"))?;
    match s.value {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(t)) => t.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("{id} is not a number"))
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "MediaContainer")]
    container: Container,
}

#[derive(Deserialize)]
struct Container {
    #[serde(rename = "Metadata", default)]
    metadata: Vec<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(rename = "Session")]
    session: Option<SessionElement>,
    #[serde(rename = "User")]
    user: Option<UserElement>,
    #[serde(rename = "Player")]
    player: Option<PlayerElement>,
}

#[derive(Deserialize)]
struct SessionElement {
    location: Option<String>,
    bandwidth: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct UserElement {
    title: Option<String>,
}

#[derive(Deserialize)]
struct PlayerElement {
    title: Option<String>,
    product: Option<String>,
    state: Option<String>,
}

/// The remote streams of a `/status/sessions` answer (JSON). A session without a `Session`
/// element, or with `location = "lan"`, plays inside the house and is left out; one whose
/// location is unknown counts as remote (what it carries may be on the upload).
pub fn remote_streams(body: &[u8]) -> Result<Vec<RemoteStream>, String> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| format!("an answer that is not Plex's session list ({e})"))?;
    Ok(answer
        .container
        .metadata
        .into_iter()
        .filter_map(|m| {
            let session = m.session?;
            if session.location.as_deref() == Some("lan") {
                return None;
            }
            // Plex writes numbers as numbers in JSON, but some versions quote them.
            let kbps = match &session.bandwidth {
                Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
                Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(0),
                _ => 0,
            };
            let player = m.player.unwrap_or(PlayerElement {
                title: None,
                product: None,
                state: None,
            });
            Some(RemoteStream {
                user: m.user.and_then(|u| u.title).unwrap_or_default(),
                player: player.title.or(player.product).unwrap_or_default(),
                state: player.state.unwrap_or_default(),
                bandwidth_bps: kbps.saturating_mul(1000),
            })
        })
        .collect())
}

/// What the remote streams carry together, bits/s.
pub fn remote_bps(streams: &[RemoteStream]) -> u64 {
    streams.iter().map(|s| s.bandwidth_bps).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sessions_outside_the_house_count_at_the_bandwidth_plex_reserved() {
        let body = br#"{"MediaContainer":{"size":3,"Metadata":[
            {"title":"A","User":{"id":"1","title":"ann"},
             "Player":{"title":"Living Room","state":"playing","local":false},
             "Session":{"id":"s1","bandwidth":20500,"location":"wan"}},
            {"title":"B","User":{"id":"2","title":"bob"},
             "Player":{"product":"Plex for Android","state":"paused","local":false},
             "Session":{"id":"s2","bandwidth":"4000","location":"cellular"}},
            {"title":"C","User":{"id":"3","title":"cat"},
             "Player":{"title":"TV","state":"playing","local":true},
             "Session":{"id":"s3","bandwidth":80000,"location":"lan"}}
        ]}}"#;
        let streams = remote_streams(body).unwrap();
        assert_eq!(
            streams,
            vec![
                RemoteStream {
                    user: "ann".into(),
                    player: "Living Room".into(),
                    state: "playing".into(),
                    bandwidth_bps: 20_500_000,
                },
                RemoteStream {
                    user: "bob".into(),
                    player: "Plex for Android".into(),
                    state: "paused".into(),
                    bandwidth_bps: 4_000_000,
                },
            ]
        );
        assert_eq!(remote_bps(&streams), 24_500_000);
    }

    #[test]
    fn the_wan_total_is_read_from_the_preferences() {
        let body = br#"{"MediaContainer":{"size":2,"Setting":[
            {"id":"FriendlyName","type":"text","value":"home"},
            {"id":"WanTotalMaxUploadRate","type":"int","default":0,"value":40000}]}}"#;
        assert_eq!(setting(body, WAN_TOTAL), Ok(40_000));
        let quoted =
            br#"{"MediaContainer":{"Setting":[{"id":"WanTotalMaxUploadRate","value":"0"}]}}"#;
        assert_eq!(setting(quoted, WAN_TOTAL), Ok(0));
        let e = setting(br#"{"MediaContainer":{"Setting":[]}}"#, WAN_TOTAL).unwrap_err();
        assert!(e.contains("no preference WanTotalMaxUploadRate"), "{e}");
    }

    #[test]
    fn an_idle_server_streams_nothing_and_garbage_is_an_error() {
        assert_eq!(
            remote_streams(br#"{"MediaContainer":{"size":0}}"#).unwrap(),
            vec![]
        );
        let e = remote_streams(b"<MediaContainer size=\"0\"/>").unwrap_err();
        assert!(e.contains("not Plex's session list"), "{e}");
    }
}
