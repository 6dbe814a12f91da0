//! The Jellyfin HTTP client: the handful of endpoints jellydemon uses, with errors that say what
//! went wrong (method, path, status, a short excerpt of the body) and never carry the API key.
//!
//! Authentication is `Authorization: MediaBrowser Token="<key>"` and nothing else: the legacy
//! headers and `?api_key=` are refused by Jellyfin 12. The same client talks to Emby
//! ([`Flavor::Emby`]), whose API differs in the two ways `docs/media-servers.md` records:
//! the key goes in `X-Emby-Token`, and the users are listed by `GET /Users/Query`.
//! Several servers on one budget are one [`fleet::Fleet`].

pub mod dto;
pub mod fleet;

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use dto::*;

use crate::ids::{SessionId, UserId};

/// What kind of failure, so callers (and `check`) can say what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Nothing listens there, or the host cannot be reached.
    Connect,
    /// The host name does not resolve.
    Dns,
    /// The TLS handshake failed (self-signed or expired certificate, http vs https).
    Tls,
    /// No answer within the configured timeout.
    Timeout,
    /// 401: the API key was rejected.
    Unauthorized,
    /// 403: the key is valid but not an administrator's.
    Forbidden,
    /// 404: wrong URL or base path, or an unknown user.
    NotFound,
    /// Any other non-success status.
    Status(u16),
    /// A 2xx answer that is not the JSON we expect (not Jellyfin at this URL?).
    Decode,
    /// Anything else the HTTP stack reports.
    Other,
}

/// A failed request. The message never contains the API key: it is sent only in a header marked
/// sensitive, and URLs are built without it. User and session ids in the path are shown as
/// their aliases when anonymizing ([`crate::ids`]).
#[derive(Debug)]
pub struct JellyfinError {
    /// The request's method.
    pub method: Method,
    /// Its URL without credentials, or its path when no request was made (ids shown as
    /// aliases when anonymizing).
    pub path: String,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What went wrong, with an excerpt of the answer.
    pub detail: String,
}

impl std::error::Error for JellyfinError {}

impl std::fmt::Display for JellyfinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.method,
            shown_path(&self.path),
            self.detail
        )
    }
}

/// The path with the id after `/Users/` or `/Sessions/` replaced by its alias when
/// anonymizing.
fn shown_path(path: &str) -> String {
    let mut prev = "";
    path.split('/')
        .map(|seg| {
            let out = if prev.eq_ignore_ascii_case("users") && !seg.is_empty() {
                UserId::new(seg).to_string()
            } else if prev.eq_ignore_ascii_case("sessions") && !seg.is_empty() {
                SessionId::new(seg).to_string()
            } else {
                seg.to_string()
            };
            prev = seg;
            out
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl JellyfinError {
    /// Whether the request may have reached Jellyfin and be applied later though no answer
    /// came back (a timeout, a connection lost after sending). A status answer, or a
    /// connection that was never made, settles it.
    pub fn may_still_land(&self) -> bool {
        matches!(self.kind, ErrorKind::Timeout | ErrorKind::Other)
    }

    /// The HTTP status, when the server answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            ErrorKind::Unauthorized => Some(401),
            ErrorKind::Forbidden => Some(403),
            ErrorKind::NotFound => Some(404),
            ErrorKind::Status(s) => Some(s),
            _ => None,
        }
    }
}

/// Which server's dialect of the API a [`Client`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Jellyfin 10.9 and later.
    Jellyfin,
    /// Emby Server 4.8 (`docs/media-servers.md`).
    Emby,
}

/// How many users' policies an Emby client reads at once when `/Users/Query` leaves them out.
const POLICY_READS_AT_ONCE: usize = 4;

/// A cheap-to-clone handle (reqwest's client is an `Arc` inside).
#[derive(Clone)]
pub struct Client {
    flavor: Flavor,
    http: reqwest::Client,
    /// Base URL without a trailing slash, e.g. `https://media.example/jellyfin`.
    base: String,
    /// The same without a user name or password, for errors.
    shown_base: String,
    /// Each request's timeout.
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("api_key", &"[redacted]")
            .finish()
    }
}

const BODY_EXCERPT: usize = 200;

impl Client {
    /// Build a client for `base_url` (with an optional base path). Fails only when the key
    /// cannot be put in a header (control characters).
    pub fn new(
        base_url: &str,
        api_key: &SecretString,
        timeout: Duration,
    ) -> Result<Client, JellyfinError> {
        Client::with_flavor(Flavor::Jellyfin, base_url, api_key, timeout)
    }

    /// A client for a server of `flavor`.
    pub fn with_flavor(
        flavor: Flavor,
        base_url: &str,
        api_key: &SecretString,
        timeout: Duration,
    ) -> Result<Client, JellyfinError> {
        let (header, value) = match flavor {
            Flavor::Jellyfin => (
                AUTHORIZATION,
                format!("MediaBrowser Token=\"{}\"", api_key.expose_secret()),
            ),
            Flavor::Emby => (
                reqwest::header::HeaderName::from_static("x-emby-token"),
                api_key.expose_secret().to_string(),
            ),
        };
        let mut auth = HeaderValue::from_str(&value).map_err(|_| JellyfinError {
            method: Method::GET,
            path: String::new(),
            kind: ErrorKind::Other,
            detail: "the API key contains characters that cannot be sent in a header".into(),
        })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(header, auth);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("jellydemon/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| JellyfinError {
                method: Method::GET,
                path: String::new(),
                kind: ErrorKind::Other,
                detail: format!("cannot build the HTTP client: {e}"),
            })?;
        let base = base_url.trim_end_matches('/').to_string();
        Ok(Client {
            flavor,
            http,
            shown_base: crate::redact::without_credentials(&base),
            base,
            timeout,
        })
    }

    /// Jellyfin or Emby.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The timeout of each request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The base URL without a user name or password, for logs and the page.
    pub fn shown_url(&self) -> &str {
        &self.shown_base
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, JellyfinError> {
        let url = format!("{}{}", self.base, path);
        let shown = format!("{}{}", self.shown_base, path);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(method.clone(), &shown, &e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        Err(status_error(method, &shown, status, &text))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, JellyfinError> {
        let resp = self.send(Method::GET, path, None).await?;
        let shown = format!("{}{}", self.shown_base, path);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(Method::GET, &shown, &e))?;
        serde_json::from_slice(&bytes).map_err(|e| JellyfinError {
            method: Method::GET,
            path: shown,
            kind: ErrorKind::Decode,
            detail: format!(
                "the answer is not the JSON Jellyfin sends ({e}); body starts with: {}",
                excerpt(&String::from_utf8_lossy(&bytes))
            ),
        })
    }

    /// `GET /System/Info/Public` (no authentication needed): reachability and version.
    pub async fn public_info(&self) -> Result<PublicSystemInfo, JellyfinError> {
        self.get("/System/Info/Public").await
    }

    /// `GET /System/Info`: proves the key is valid.
    pub async fn system_info(&self) -> Result<Value, JellyfinError> {
        self.get("/System/Info").await
    }

    /// `GET /Auth/Providers`: requires elevation, so it answers 403 to a non-admin token.
    pub async fn check_admin(&self) -> Result<(), JellyfinError> {
        self.get::<Value>("/Auth/Providers").await.map(|_| ())
    }

    /// `GET /System/Configuration`: the server-wide remote limit.
    pub async fn server_configuration(&self) -> Result<ServerConfiguration, JellyfinError> {
        self.get("/System/Configuration").await
    }

    /// `GET /System/Configuration/network`: Jellyfin's LAN ranges.
    pub async fn network_configuration(&self) -> Result<NetworkConfiguration, JellyfinError> {
        self.get("/System/Configuration/network").await
    }

    /// `GET /System/Configuration/encoding`: how the server transcodes.
    pub async fn encoding_configuration(&self) -> Result<EncodingOptions, JellyfinError> {
        self.get("/System/Configuration/encoding").await
    }

    /// `GET /Sessions`: every session, playing or not.
    pub async fn sessions(&self) -> Result<Vec<Session>, JellyfinError> {
        self.get("/Sessions").await
    }

    /// Every user with its whole policy: Jellyfin's `GET /Users`; Emby's `GET /Users/Query`
    /// (its spec has no `GET /Users`), each user whose policy the list leaves out read with
    /// `GET /Users/{id}`.
    pub async fn users(&self) -> Result<Vec<User>, JellyfinError> {
        if self.flavor == Flavor::Jellyfin {
            return self.get("/Users").await;
        }
        let listed: UserQueryResult = self.get("/Users/Query").await?;
        use futures_util::StreamExt;
        let reads = futures_util::stream::iter(listed.items)
            .map(|u| async move {
                if u.policy.is_some() {
                    Ok(u)
                } else {
                    self.user(&u.id).await
                }
            })
            .buffered(POLICY_READS_AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        reads.into_iter().collect()
    }

    /// `GET /Users/{id}`: one user with its whole policy.
    pub async fn user(&self, id: &UserId) -> Result<User, JellyfinError> {
        self.get(&format!("/Users/{}", id.as_str())).await
    }

    /// `POST /Users/{id}/Policy` with the whole policy (Jellyfin replaces it entirely).
    pub async fn post_policy(&self, id: &UserId, policy: &Value) -> Result<(), JellyfinError> {
        self.send(
            Method::POST,
            &format!("/Users/{}/Policy", id.as_str()),
            Some(policy),
        )
        .await
        .map(|_| ())
    }

    /// `POST /Sessions/{id}/Command` `SetMaxStreamingBitrate`: the client re-requests playback
    /// info, so its stream re-negotiates under the user's current limit.
    pub async fn set_max_streaming_bitrate(
        &self,
        session_id: &SessionId,
        bps: u64,
    ) -> Result<(), JellyfinError> {
        let body = serde_json::json!({
            "Name": "SetMaxStreamingBitrate",
            "Arguments": { "Bitrate": bps.to_string() }
        });
        self.send(
            Method::POST,
            &format!("/Sessions/{}/Command", session_id.as_str()),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    /// Read-modify-write of one user's `RemoteClientBitrateLimit`: `policy` is the object as
    /// read from `GET /Users/{id}`; only that one field is changed before posting it back.
    pub async fn write_remote_limit(&self, user: &User, limit: i64) -> Result<(), JellyfinError> {
        let policy =
            with_remote_limit(user.policy.as_ref(), limit).ok_or_else(|| JellyfinError {
                method: Method::POST,
                path: format!("/Users/{}/Policy", user.id.as_str()),
                kind: ErrorKind::Decode,
                detail: "the user has no policy object to modify; not writing a partial policy"
                    .into(),
            })?;
        self.post_policy(&user.id, &policy).await
    }
}

/// The policy with `RemoteClientBitrateLimit` set to `limit`, every other field kept as it was
/// (order included). `None` when there is no policy object.
pub fn with_remote_limit(policy: Option<&Value>, limit: i64) -> Option<Value> {
    let mut policy = policy?.clone();
    policy
        .as_object_mut()?
        .insert("RemoteClientBitrateLimit".into(), Value::from(limit));
    Some(policy)
}

fn excerpt(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    if trimmed.chars().count() > BODY_EXCERPT {
        let cut: String = trimmed.chars().take(BODY_EXCERPT).collect();
        format!("{cut}…")
    } else if trimmed.is_empty() {
        "(empty body)".to_string()
    } else {
        trimmed.to_string()
    }
}

fn status_error(method: Method, path: &str, status: StatusCode, body: &str) -> JellyfinError {
    let kind = match status.as_u16() {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        s => ErrorKind::Status(s),
    };
    JellyfinError {
        method,
        path: path.to_string(),
        kind,
        detail: format!("HTTP {status}: {}", excerpt(body)),
    }
}

/// Whether `e` is, or wraps, a rustls error. `io::Error` does not expose the error it wraps
/// through `source()`, and hyper nests them, so look inside each one.
fn is_rustls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.downcast_ref::<rustls::Error>().is_some() {
        return true;
    }
    e.downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .is_some_and(|inner| is_rustls_error(inner))
}

fn transport_error(method: Method, path: &str, e: &reqwest::Error) -> JellyfinError {
    // The innermost cause says the most ("Connection refused", "invalid peer certificate").
    let mut chain = Vec::new();
    let mut is_tls = false;
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        chain.push(s.to_string());
        is_tls |= is_rustls_error(s);
        src = s.source();
    }
    let all = chain.join(": ").to_lowercase();
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if is_tls || all.contains("certificate") || all.contains("tls handshake") {
        ErrorKind::Tls
    } else if all.contains("dns") || all.contains("failed to lookup") {
        ErrorKind::Dns
    } else if e.is_connect() {
        ErrorKind::Connect
    } else {
        ErrorKind::Other
    };
    let detail = match kind {
        ErrorKind::Timeout => "no answer within the timeout".to_string(),
        _ => chain.last().cloned().unwrap_or_else(|| e.to_string()),
    };
    JellyfinError {
        method,
        path: path.to_string(),
        kind,
        detail,
    }
}

#[cfg(test)]
mod tests;
