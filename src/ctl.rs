//! The command line's side of the control API: `jellydemon pause`, `resume`, `pin`,
//! `exempt`, `weight`, `clear`, `reserve` and `overrides` ask the running daemon at
//! `daemon.listen` (or `--address`) with the status secret, as `POST /api/control` and
//! `GET /api/state` (`src/daemon/http.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::Value;

use crate::config::Settings;
use crate::core::control::Action;

/// How long the daemon has to answer (it plans again before it does).
const TIMEOUT: Duration = Duration::from_secs(15);

/// Why the daemon did not do it.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// No answer.
    #[error("the daemon at {addr} does not answer ({why}): is it running? (--address says where)")]
    Unreachable {
        /// Where it was asked.
        addr: SocketAddr,
        /// What failed.
        why: String,
    },
    /// It answered with an error.
    #[error("the daemon refused: {0}")]
    Refused(String),
    /// The configuration does not say how to reach it.
    #[error("{0}")]
    Setup(String),
}

/// Where and how to ask the daemon.
pub struct Target {
    addr: SocketAddr,
    token: Option<secrecy::SecretString>,
    http: reqwest::Client,
}

impl Target {
    /// The daemon of `settings` (`daemon.listen`, or `address`), with its status secret.
    pub fn new(settings: &Settings, address: Option<SocketAddr>) -> Result<Target, CtlError> {
        let addr = crate::healthcheck::address(address.unwrap_or(settings.daemon.listen));
        if addr.port() == 0 {
            return Err(CtlError::Setup(
                "daemon.listen has port 0: pass --address to say where the daemon listens".into(),
            ));
        }
        let token = settings
            .daemon
            .status_token()
            .map_err(|e| CtlError::Setup(e.to_string()))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(TIMEOUT)
            .user_agent(concat!("jellydemon/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CtlError::Setup(e.to_string()))?;
        Ok(Target {
            addr,
            token: token.cloned(),
            http,
        })
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t.expose_secret()),
            None => req,
        }
    }

    /// Send an action; the daemon's answer (`done`, `overrides`).
    pub async fn send(&self, action: &Action) -> Result<Value, CtlError> {
        let req = self
            .http
            .post(format!("http://{}/api/control", self.addr))
            .json(action);
        self.answer(self.authorized(req)).await
    }

    /// The daemon's `/api/state`.
    pub async fn state(&self) -> Result<Value, CtlError> {
        let req = self.http.get(format!("http://{}/api/state", self.addr));
        self.answer(self.authorized(req)).await
    }

    async fn answer(&self, req: reqwest::RequestBuilder) -> Result<Value, CtlError> {
        let unreachable = |e: reqwest::Error| CtlError::Unreachable {
            addr: self.addr,
            why: crate::escape::request_error(&e, "15 s"),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let why = body
            .get("error")
            .and_then(Value::as_str)
            .map(|t| crate::escape::escape_controls(t).into_owned())
            .unwrap_or_else(|| status.to_string());
        Err(CtlError::Refused(why))
    }
}

/// The overrides of a daemon's answer, one line each ("pinned at 10 Mbps: alice, by cli,
/// until 14:05:00"), or "no override".
pub fn render_overrides(answer: &Value) -> String {
    let list = answer
        .get("overrides")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        return "no override: every user follows the rule\n".into();
    }
    let mut out = String::new();
    for o in list {
        let text = |k: &str| {
            o.get(k)
                .and_then(Value::as_str)
                .map(|t| crate::escape::escape_controls(t).into_owned())
        };
        let what = text("what").unwrap_or_default();
        let user = text("user").map(|u| format!(": {u}")).unwrap_or_default();
        let by = text("by").unwrap_or_default();
        let until = o
            .get("until_unix")
            .and_then(Value::as_u64)
            .map(|t| format!(", until {}", local_time(t)))
            .unwrap_or_else(|| ", until cleared".into());
        out.push_str(&format!("{what}{user} (by {by}{until})\n"));
    }
    out
}

/// Unix seconds as the local date and time.
fn local_time(unix: u64) -> String {
    jiff::Timestamp::from_second(unix as i64)
        .map(|t| {
            jiff::tz::TimeZone::system()
                .to_datetime(t)
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| unix.to_string())
}
