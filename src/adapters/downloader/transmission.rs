//! Transmission's RPC: JSON `{"method", "arguments"}` posted to `/transmission/rpc`.
//!
//! * Every request carries `X-Transmission-Session-Id`; a 409 answer hands out the current one
//!   in the same header, and the request is sent once more with it (Transmission's CSRF
//!   defence; the id changes when the daemon restarts).
//! * Basic authentication when `username` is set; 401 is a wrong user name or password,
//!   never retried before the backoff.
//! * `session-get` of `speed-limit-up`, `speed-limit-up-enabled`, `alt-speed-enabled`,
//!   `alt-speed-up` and `units` (the limits are in `units.speed-bytes`: 1000-byte kB/s);
//!   `session-set` of the same; `session-stats` for `uploadSpeed` (bytes/s).

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{DownloaderError, Field, Login, Mode, Reading, TRANSMISSION_SPEED_BYTES};
use crate::config::DownloaderKind;

/// The normal upload limit, kB/s.
pub const SPEED_LIMIT_UP: Field = "speed-limit-up";
/// Whether the normal upload limit applies (0 or 1).
pub const SPEED_LIMIT_UP_ENABLED: Field = "speed-limit-up-enabled";
/// The alternative upload limit, kB/s.
pub const ALT_SPEED_UP: Field = "alt-speed-up";

const SESSION_HEADER: &str = "X-Transmission-Session-Id";

/// A Transmission daemon.
pub struct Transmission {
    http: reqwest::Client,
    url: String,
    login: Login,
    session: Option<String>,
}

impl std::fmt::Debug for Transmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transmission")
            .field("url", &self.url)
            .field("username", &self.login.username)
            .finish_non_exhaustive()
    }
}

impl Transmission {
    /// The daemon at `url` (its server, or the RPC endpoint itself when the path ends in
    /// `/rpc`).
    pub fn new(http: reqwest::Client, url: &str, login: Login) -> Transmission {
        let url = url.trim_end_matches('/');
        let url = if url.ends_with("/rpc") {
            url.to_string()
        } else {
            format!("{url}/transmission/rpc")
        };
        Transmission {
            http,
            url,
            login,
            session: None,
        }
    }

    /// Where it is.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One RPC call; its `arguments`.
    async fn call(&mut self, method: &str, arguments: Value) -> Result<Value, DownloaderError> {
        let body = json!({ "method": method, "arguments": arguments });
        for attempt in 0..2 {
            let mut req = self.http.post(&self.url).json(&body);
            if let Some(id) = &self.session {
                req = req.header(SESSION_HEADER, id);
            }
            if let Some(user) = &self.login.username {
                req = req.basic_auth(
                    user,
                    self.login
                        .password
                        .as_ref()
                        .map(|p: &SecretString| p.expose_secret().to_string()),
                );
            }
            let resp = req.send().await.map_err(|e| {
                DownloaderError::Unreachable(format!(
                    "Transmission at {}: {}",
                    self.url,
                    super::cause(&e)
                ))
            })?;
            let status = resp.status();
            if status == reqwest::StatusCode::CONFLICT {
                let id = resp
                    .headers()
                    .get(SESSION_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                match id {
                    Some(id) if attempt == 0 => {
                        self.session = Some(id);
                        continue;
                    }
                    _ => {
                        return Err(DownloaderError::Protocol(format!(
                            "Transmission at {} keeps answering 409 without a usable session id",
                            self.url
                        )));
                    }
                }
            }
            if status == reqwest::StatusCode::UNAUTHORIZED {
                return Err(DownloaderError::LoginRefused(match &self.login.username {
                    Some(u) => format!(
                        "Transmission at {} refused the login of {u:?}: wrong user name or \
                         password (downloader.username, password_file)",
                        self.url
                    ),
                    None => format!(
                        "Transmission at {} asks for a login: set downloader.username and \
                         password_file",
                        self.url
                    ),
                }));
            }
            if status == reqwest::StatusCode::FORBIDDEN {
                return Err(DownloaderError::LoginRefused(format!(
                    "Transmission at {} refuses this address: add it to rpc-whitelist in its \
                     settings.json (or set rpc-whitelist-enabled to false), then restart it",
                    self.url
                )));
            }
            if !status.is_success() {
                return Err(DownloaderError::Protocol(format!(
                    "Transmission at {} answered {method} with HTTP {status}",
                    self.url
                )));
            }
            let text = super::capped(resp).await.map_err(|e| {
                DownloaderError::Protocol(format!("Transmission at {}: {e}", self.url))
            })?;
            let v: Value = serde_json::from_str(&text).map_err(|_| self.garbage(method))?;
            return match v.get("result").and_then(Value::as_str) {
                Some("success") => Ok(v.get("arguments").cloned().unwrap_or(Value::Null)),
                Some(other) => Err(DownloaderError::Protocol(format!(
                    "Transmission at {} refused {method}: {}",
                    self.url,
                    crate::escape::escape_controls(other)
                ))),
                None => Err(self.garbage(method)),
            };
        }
        unreachable!("the loop returns")
    }

    fn garbage(&self, what: &str) -> DownloaderError {
        DownloaderError::Protocol(format!(
            "Transmission at {} answered {what} with something its RPC does not say (is this \
             Transmission's RPC?)",
            self.url
        ))
    }

    /// Its limits, mode and upload rate.
    pub async fn read(&mut self) -> Result<Reading, DownloaderError> {
        let s = self
            .call(
                "session-get",
                json!({ "fields": [SPEED_LIMIT_UP, SPEED_LIMIT_UP_ENABLED, "alt-speed-enabled",
                                   ALT_SPEED_UP, "units"] }),
            )
            .await?;
        let int = |k: &str| s.get(k).and_then(Value::as_i64);
        let flag = |k: &str| s.get(k).and_then(Value::as_bool);
        let (Some(up), Some(enabled), Some(alt_on), Some(alt_up)) = (
            int(SPEED_LIMIT_UP),
            flag(SPEED_LIMIT_UP_ENABLED),
            flag("alt-speed-enabled"),
            int(ALT_SPEED_UP),
        ) else {
            return Err(self.garbage("session-get"));
        };
        // Transmission before 2.40 had no `units` and used KiB; every version since says 1000.
        if let Some(unit) = s.pointer("/units/speed-bytes").and_then(Value::as_i64)
            && unit != TRANSMISSION_SPEED_BYTES
        {
            return Err(DownloaderError::Protocol(format!(
                "Transmission at {} counts speeds in units of {unit} bytes; jellydemon knows \
                 only {TRANSMISSION_SPEED_BYTES}",
                self.url
            )));
        }
        let stats = self.call("session-stats", json!({})).await?;
        let rate = stats
            .get("uploadSpeed")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.garbage("session-stats"))?;
        let unit = TRANSMISSION_SPEED_BYTES as u64 * 8;
        let (mode, limit_bps) = if alt_on {
            (Mode::Alternative, Some(alt_up.max(0) as u64 * unit))
        } else if enabled {
            (Mode::Normal, Some(up.max(0) as u64 * unit))
        } else {
            (Mode::Normal, None)
        };
        Ok(Reading {
            kind: DownloaderKind::Transmission,
            values: vec![
                (SPEED_LIMIT_UP, up),
                (SPEED_LIMIT_UP_ENABLED, i64::from(enabled)),
                (ALT_SPEED_UP, alt_up),
            ],
            mode,
            limit_bps,
            rate_bps: rate.saturating_mul(8),
        })
    }

    /// Set these settings in one `session-set`.
    pub async fn write(&mut self, values: &[(Field, i64)]) -> Result<(), DownloaderError> {
        let args: serde_json::Map<String, Value> = values
            .iter()
            .map(|(f, v)| {
                let v = if *f == SPEED_LIMIT_UP_ENABLED {
                    Value::Bool(*v != 0)
                } else {
                    Value::from(*v)
                };
                (f.to_string(), v)
            })
            .collect();
        self.call("session-set", Value::Object(args))
            .await
            .map(drop)
    }

    /// `session-get` of `version`.
    pub async fn version(&mut self) -> Result<String, DownloaderError> {
        let s = self
            .call("session-get", json!({ "fields": ["version"] }))
            .await?;
        let v = s
            .get("version")
            .and_then(Value::as_str)
            .ok_or_else(|| self.garbage("session-get"))?;
        Ok(crate::escape::escape_controls(v).into_owned())
    }
}
