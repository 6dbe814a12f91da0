//! qBittorrent's WebUI API v2.
//!
//! * `POST /api/v2/auth/login` (form `username`, `password`) answers `Ok.` with a `SID`
//!   cookie, or `Fails.`; after a few failed logins qBittorrent bans the address (403 to
//!   everything), so a refused login is never retried here: the caller backs off. A request
//!   answered 403 while logged in means the session expired: one new login, then the request
//!   once more. With no username the WebUI is expected to bypass authentication for this
//!   address ("Bypass authentication for clients on localhost").
//! * `GET /api/v2/transfer/speedLimitsMode`: `1` while the alternative limits are in force;
//!   `GET /api/v2/app/preferences`: `up_limit`, `alt_up_limit` (bytes/s, 0 or -1 unlimited);
//!   `GET /api/v2/transfer/info`: `up_info_speed` (bytes/s).
//! * `POST /api/v2/app/setPreferences` (form `json`) sets exactly the setting named, whatever
//!   the mode has become meanwhile (`transfer/setUploadLimit` would set whichever limit is in
//!   force at the moment it arrives, which the ledger could then not tell from a hand change).
//!   qBittorrent keeps limits in whole KiB/s, so only multiples of 1024 are written.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{DownloaderError, Field, Login, Mode, Reading};
use crate::config::DownloaderKind;

/// The normal upload limit, bytes/s.
pub const UP_LIMIT: Field = "up_limit";
/// The alternative upload limit, bytes/s.
pub const ALT_UP_LIMIT: Field = "alt_up_limit";

/// A qBittorrent WebUI.
pub struct Qbittorrent {
    http: reqwest::Client,
    base: String,
    login: Login,
    sid: Option<SecretString>,
}

impl std::fmt::Debug for Qbittorrent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qbittorrent")
            .field("url", &self.base)
            .field("username", &self.login.username)
            .finish_non_exhaustive()
    }
}

impl Qbittorrent {
    /// The WebUI at `url`.
    pub fn new(http: reqwest::Client, url: &str, login: Login) -> Qbittorrent {
        Qbittorrent {
            http,
            base: url.trim_end_matches('/').to_string(),
            login,
            sid: None,
        }
    }

    /// Where it is.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: &reqwest::Error) -> DownloaderError {
        DownloaderError::Unreachable(format!("qBittorrent at {}: {}", self.base, super::cause(e)))
    }

    async fn log_in(&mut self) -> Result<(), DownloaderError> {
        let username = self.login.username.clone().unwrap_or_default();
        let password = self
            .login
            .password
            .as_ref()
            .map(|p| p.expose_secret().to_string())
            .unwrap_or_default();
        let resp = self
            .http
            .post(format!("{}/api/v2/auth/login", self.base))
            .form(&[
                ("username", username.as_str()),
                ("password", password.as_str()),
            ])
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let sid = resp
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| {
                c.split(';')
                    .next()
                    .and_then(|kv| kv.trim().strip_prefix("SID="))
                    .map(str::to_string)
            });
        let body = super::capped(resp).await.unwrap_or_default();
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(DownloaderError::LoginRefused(format!(
                "qBittorrent at {} refuses logins from this address: it is banned after too \
                 many failed logins (Tools -> Options -> Web UI -> ban duration), or restart \
                 qBittorrent",
                self.base
            )));
        }
        if !status.is_success() {
            return Err(DownloaderError::Protocol(format!(
                "qBittorrent at {} answered the login with HTTP {status}",
                self.base
            )));
        }
        match (body.trim(), sid) {
            ("Ok.", Some(sid)) => {
                self.sid = Some(SecretString::from(sid));
                Ok(())
            }
            ("Ok.", None) => Err(DownloaderError::Protocol(format!(
                "qBittorrent at {} accepted the login but set no SID cookie",
                self.base
            ))),
            ("Fails.", _) => Err(DownloaderError::LoginRefused(format!(
                "qBittorrent at {} refused the login of {username:?}: wrong user name or \
                 password (downloader.username, password_file); it is not tried again before \
                 the backoff, since qBittorrent bans an address after a few failed logins",
                self.base
            ))),
            _ => Err(DownloaderError::Protocol(format!(
                "qBittorrent at {} answered the login with something else than Ok. or Fails. \
                 (is this qBittorrent's WebUI?)",
                self.base
            ))),
        }
    }

    /// One request, logged in first when a username is set and no session is open, and once
    /// more after a new login when the session expired.
    async fn call(
        &mut self,
        path: &str,
        form: Option<&[(&str, String)]>,
    ) -> Result<String, DownloaderError> {
        for attempt in 0..2 {
            if self.sid.is_none() && self.login.username.is_some() {
                self.log_in().await?;
            }
            let url = format!("{}{path}", self.base);
            let mut req = match form {
                Some(f) => self.http.post(&url).form(f),
                None => self.http.get(&url),
            };
            if let Some(sid) = &self.sid {
                req = req.header(
                    reqwest::header::COOKIE,
                    format!("SID={}", sid.expose_secret()),
                );
            }
            let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
            let status = resp.status();
            if status == reqwest::StatusCode::FORBIDDEN {
                if attempt == 0 && self.sid.is_some() {
                    // The session expired (or qBittorrent restarted): log in once more.
                    self.sid = None;
                    continue;
                }
                return Err(DownloaderError::LoginRefused(
                    if self.login.username.is_none() {
                        format!(
                            "qBittorrent at {} asks for a login: set downloader.username and \
                         password_file, or let its WebUI bypass authentication for this address",
                            self.base
                        )
                    } else {
                        format!(
                            "qBittorrent at {} refuses {path} after a login (403 Forbidden)",
                            self.base
                        )
                    },
                ));
            }
            if !status.is_success() {
                return Err(DownloaderError::Protocol(format!(
                    "qBittorrent at {} answered {path} with HTTP {status}",
                    self.base
                )));
            }
            return super::capped(resp).await.map_err(|e| {
                DownloaderError::Protocol(format!("qBittorrent at {}, {path}: {e}", self.base))
            });
        }
        unreachable!("the loop returns")
    }

    fn garbage(&self, what: &str) -> DownloaderError {
        DownloaderError::Protocol(format!(
            "qBittorrent at {} answered {what} with something its API does not say (is this \
             qBittorrent 4.1 or later?)",
            self.base
        ))
    }

    /// Its limits, mode and upload rate.
    pub async fn read(&mut self) -> Result<Reading, DownloaderError> {
        let mode = match self
            .call("/api/v2/transfer/speedLimitsMode", None)
            .await?
            .trim()
        {
            "0" => Mode::Normal,
            "1" => Mode::Alternative,
            _ => return Err(self.garbage("speedLimitsMode")),
        };
        let prefs: Value = serde_json::from_str(&self.call("/api/v2/app/preferences", None).await?)
            .map_err(|_| self.garbage("app/preferences"))?;
        let mut values = Vec::new();
        for field in [UP_LIMIT, ALT_UP_LIMIT] {
            let v = prefs
                .get(field)
                .and_then(Value::as_i64)
                .ok_or_else(|| self.garbage("app/preferences"))?;
            values.push((field, v));
        }
        let info: Value = serde_json::from_str(&self.call("/api/v2/transfer/info", None).await?)
            .map_err(|_| self.garbage("transfer/info"))?;
        let rate = info
            .get("up_info_speed")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.garbage("transfer/info"))?;
        let biting = match mode {
            Mode::Normal => values[0].1,
            Mode::Alternative => values[1].1,
        };
        Ok(Reading {
            kind: DownloaderKind::Qbittorrent,
            values,
            mode,
            limit_bps: (biting > 0).then(|| biting as u64 * 8),
            rate_bps: rate.saturating_mul(8),
        })
    }

    /// Set these preferences in one request.
    pub async fn write(&mut self, values: &[(Field, i64)]) -> Result<(), DownloaderError> {
        let json: serde_json::Map<String, Value> = values
            .iter()
            .map(|(f, v)| (f.to_string(), Value::from(*v)))
            .collect();
        self.call(
            "/api/v2/app/setPreferences",
            Some(&[("json", Value::Object(json).to_string())]),
        )
        .await
        .map(drop)
    }

    /// `GET /api/v2/app/version`.
    pub async fn version(&mut self) -> Result<String, DownloaderError> {
        let v = self.call("/api/v2/app/version", None).await?;
        Ok(crate::escape::escape_controls(v.trim()).into_owned())
    }
}
