//! The meters: each reads the WAN's upload byte counter. `interface` reads the kernel's
//! counter when jellydemon runs on the gateway; `openwrt` asks rpcd over HTTP; `snmp` asks an
//! SNMP agent (`src/adapters/budget/snmp.rs`).
//!
//! OpenWrt (rpcd's JSON-RPC 2.0 at `POST /ubus`): `session login` with the null session id
//! (32 zeros), then `network.interface.<wan> status` for its `l3_device` (else `device`),
//! then `network.device status {"name": dev}` for `statistics.tx_bytes`. An expired session
//! (`{"error":{"code":-32002}}`) logs in again; a login answered `result: [6]` is a wrong
//! user name or password, said as such. When `l3_device` changes (a PPPoE redial), the counter
//! is a new one: the reading says so, and the estimator starts again from it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::config::{ConfigError, MeterSettings, MeterSource};

pub use super::estimate::Counter;

/// A meter.
#[derive(Debug)]
pub enum Meter {
    /// `/sys/class/net/<device>/statistics/tx_bytes`.
    Interface(Interface),
    /// OpenWrt's rpcd.
    Openwrt(Openwrt),
    /// An SNMP agent.
    Snmp(super::snmp::Snmp),
}

impl Meter {
    /// The meter `[bandwidth.meter]` describes.
    pub fn new(m: &MeterSettings) -> Result<Meter, ConfigError> {
        Ok(match &m.source {
            MeterSource::Interface => {
                Meter::Interface(Interface::at(Path::new("/sys/class/net"), &m.interface))
            }
            MeterSource::Openwrt {
                url,
                username,
                password,
            } => Meter::Openwrt(Openwrt::new(
                url,
                username,
                password.get()?.clone(),
                &m.interface,
                m.timeout,
            )?),
            MeterSource::Snmp { host, community } => Meter::Snmp(super::snmp::Snmp::new(
                host,
                community.get()?.clone(),
                &m.interface,
                m.timeout,
            )),
        })
    }

    /// Read the counter.
    pub async fn read(&mut self) -> Result<Counter, String> {
        match self {
            Meter::Interface(m) => m.read().await,
            Meter::Openwrt(m) => m.read().await,
            Meter::Snmp(m) => m.read().await,
        }
    }

    /// What is read, for logs and `check`: "interface eth0", "openwrt wan (pppoe-wan) at …".
    pub fn describe(&self) -> String {
        match self {
            Meter::Interface(m) => format!("interface {}", m.device),
            Meter::Openwrt(m) => match &m.device {
                Some(d) => format!("openwrt {} ({d}) at {}", m.interface, m.url),
                None => format!("openwrt {} at {}", m.interface, m.url),
            },
            Meter::Snmp(m) => match m.index() {
                Some(i) => format!(
                    "snmp {} (ifIndex {i}{}) at {}",
                    m.interface(),
                    if m.only_32_bit() { ", 32-bit" } else { "" },
                    m.host()
                ),
                None => format!("snmp {} at {}", m.interface(), m.host()),
            },
        }
    }
}

/// The kernel's counter of a network device.
#[derive(Debug)]
pub struct Interface {
    device: String,
    path: PathBuf,
}

impl Interface {
    /// The counter of `device` under `root` (`/sys/class/net`, or a test's directory).
    pub fn at(root: &Path, device: &str) -> Interface {
        Interface {
            device: device.to_string(),
            path: root.join(device).join("statistics").join("tx_bytes"),
        }
    }

    /// The network device.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Read it.
    pub async fn read(&mut self) -> Result<Counter, String> {
        let text = tokio::fs::read_to_string(&self.path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "no network device {:?} on this machine ({} is missing)",
                    self.device,
                    self.path.display()
                )
            } else {
                format!("cannot read {}: {e}", self.path.display())
            }
        })?;
        let bytes = text
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("{} does not hold a byte count", self.path.display()))?;
        Ok(Counter {
            bytes,
            wraps_at: None,
            fresh: false,
        })
    }
}

/// rpcd's "wrong user name or password" (`UBUS_STATUS_PERMISSION_DENIED`).
const UBUS_PERMISSION_DENIED: i64 = 6;
/// JSON-RPC error of an expired or unknown session.
const RPC_ACCESS_DENIED: i64 = -32002;
/// The session id for `session login`.
const NULL_SESSION: &str = "00000000000000000000000000000000";

/// OpenWrt's rpcd.
pub struct Openwrt {
    http: reqwest::Client,
    url: String,
    username: String,
    password: SecretString,
    interface: String,
    session: Option<SecretString>,
    device: Option<String>,
}

impl std::fmt::Debug for Openwrt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Openwrt")
            .field("url", &self.url)
            .field("interface", &self.interface)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// What a ubus call answered.
enum Answer {
    Ok(Value),
    /// `result: [code]` with a non-zero code.
    Status(i64),
    /// The session expired.
    Expired,
}

impl Openwrt {
    /// rpcd at `url`, signing in as `username`.
    pub fn new(
        url: &str,
        username: &str,
        password: SecretString,
        interface: &str,
        timeout: Duration,
    ) -> Result<Openwrt, ConfigError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| crate::config::invalid("bandwidth.meter.url", e.to_string()))?;
        Ok(Openwrt {
            http,
            url: url.to_string(),
            username: username.to_string(),
            password,
            interface: interface.to_string(),
            session: None,
            device: None,
        })
    }

    async fn call(
        &self,
        session: &str,
        object: &str,
        method: &str,
        args: Value,
    ) -> Result<Answer, String> {
        let body = json!({
            "jsonrpc": "2.0", "id": 1, "method": "call",
            "params": [session, object, method, args],
        });
        let resp = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("rpcd at {}: {}", self.url, cause(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("rpcd at {} answered HTTP {status}", self.url));
        }
        let v: Value = resp
            .json()
            .await
            .map_err(|e| format!("rpcd at {} did not answer JSON-RPC: {e}", self.url))?;
        if let Some(code) = v.pointer("/error/code").and_then(Value::as_i64) {
            return if code == RPC_ACCESS_DENIED {
                Ok(Answer::Expired)
            } else {
                Err(format!(
                    "rpcd refused {object} {method}: {}",
                    v.pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("error")
                ))
            };
        }
        let result = v
            .get("result")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("rpcd's answer to {object} {method} has no result"))?;
        match result.first().and_then(Value::as_i64) {
            Some(0) => Ok(Answer::Ok(result.get(1).cloned().unwrap_or(Value::Null))),
            Some(code) => Ok(Answer::Status(code)),
            None => Err(format!("rpcd's answer to {object} {method} has no status")),
        }
    }

    async fn login(&mut self) -> Result<(), String> {
        let args = json!({
            "username": self.username,
            "password": self.password.expose_secret(),
        });
        match self.call(NULL_SESSION, "session", "login", args).await? {
            Answer::Ok(v) => {
                let id = v
                    .get("ubus_rpc_session")
                    .and_then(Value::as_str)
                    .ok_or("rpcd's login answer has no ubus_rpc_session")?;
                self.session = Some(SecretString::from(id.to_string()));
                Ok(())
            }
            Answer::Status(UBUS_PERMISSION_DENIED) | Answer::Expired => Err(format!(
                "rpcd refused the login of {:?}: wrong user name or password \
                 (bandwidth.meter.username, password), or no rpcd login stanza for it",
                self.username
            )),
            Answer::Status(code) => Err(format!("rpcd's login failed with ubus status {code}")),
        }
    }

    /// One call with the session, logging in first or again when needed.
    async fn session_call(
        &mut self,
        object: &str,
        method: &str,
        args: Value,
    ) -> Result<Value, String> {
        for attempt in 0..2 {
            if self.session.is_none() {
                self.login().await?;
            }
            let session = self
                .session
                .as_ref()
                .map(|s| s.expose_secret().to_string())
                .unwrap_or_default();
            match self.call(&session, object, method, args.clone()).await? {
                Answer::Ok(v) => return Ok(v),
                Answer::Expired if attempt == 0 => self.session = None,
                Answer::Expired => return Err("rpcd keeps refusing the new session".into()),
                Answer::Status(UBUS_PERMISSION_DENIED) => {
                    return Err(format!(
                        "rpcd denies {object} {method} to {:?}: its ACL must grant it (see \
                         README.md, \"A budget that follows the link\")",
                        self.username
                    ));
                }
                Answer::Status(code) => {
                    return Err(format!("{object} {method} failed with ubus status {code}"));
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Read the WAN device's `tx_bytes`.
    pub async fn read(&mut self) -> Result<Counter, String> {
        let object = format!("network.interface.{}", self.interface);
        let status = self.session_call(&object, "status", json!({})).await?;
        let device = ["l3_device", "device"]
            .iter()
            .find_map(|k| status.get(*k).and_then(Value::as_str))
            .ok_or_else(|| format!("interface {:?} has no device (is it up?)", self.interface))?
            .to_string();
        let dev = self
            .session_call("network.device", "status", json!({ "name": device }))
            .await?;
        let bytes = dev
            .pointer("/statistics/tx_bytes")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("device {device:?} reports no statistics.tx_bytes"))?;
        let fresh = self.device.as_deref() != Some(device.as_str());
        self.device = Some(device);
        Ok(Counter {
            bytes,
            wraps_at: None,
            fresh,
        })
    }
}

impl Openwrt {
    /// The WAN's layer-3 device and `uci get` of the `sqm` configuration: what
    /// [`super::sqm::pick`] chooses the queue from. rpcd's ACL must grant `uci get` and the
    /// `sqm` config (README.md, "A budget that follows the link").
    pub async fn sqm_config(&mut self) -> Result<(Option<String>, Value), String> {
        let object = format!("network.interface.{}", self.interface);
        let status = self.session_call(&object, "status", json!({})).await?;
        let device = ["l3_device", "device"]
            .iter()
            .find_map(|k| status.get(*k).and_then(Value::as_str))
            .map(str::to_string);
        let values = self
            .session_call("uci", "get", json!({ "config": "sqm" }))
            .await
            .map_err(|e| format!("cannot read the sqm configuration: {e}"))?;
        Ok((device, values))
    }
}

/// What went wrong with a request, in a few words.
fn cause(e: &reqwest::Error) -> String {
    crate::escape::request_error(e, "bandwidth.meter.timeout")
}
