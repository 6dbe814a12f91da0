//! The SNMP meter (v2c): the WAN's `ifHCOutOctets` (`1.3.6.1.2.1.31.1.1.1.10.<ifIndex>`, a
//! Counter64), the ifIndex found by walking `ifName` (1.3.6.1.2.1.31.1.1.1.1) for the configured
//! name at the start and again after any failure (ifIndex can move when the router reboots).
//! Only when the agent has no 64-bit counter for the interface does it read the 32-bit
//! `ifOutOctets` (`1.3.6.1.2.1.2.2.1.16.<ifIndex>`), which wraps (at 1 Gbps, every 34 s: poll
//! well within that). Every request runs under the timeout; the community is a secret.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use snmp2::{AsyncSession, Oid, Value};

use super::estimate::Counter;

/// `ifName`.
const IF_NAME: &[u64] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1];
/// `ifHCOutOctets`.
const IF_HC_OUT_OCTETS: &[u64] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10];
/// `ifOutOctets`.
const IF_OUT_OCTETS: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 16];
/// At most this many interfaces are walked.
const MAX_INTERFACES: usize = 4096;

/// An SNMP agent's counter of one interface.
pub struct Snmp {
    host: String,
    community: SecretString,
    interface: String,
    timeout: Duration,
    session: Option<AsyncSession>,
    /// The interface's ifIndex, once found.
    index: Option<u64>,
    /// The agent has no 64-bit counter for it: read the 32-bit one.
    only_32: bool,
    next_request_id: i32,
}

impl std::fmt::Debug for Snmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snmp")
            .field("host", &self.host)
            .field("interface", &self.interface)
            .field("index", &self.index)
            .field("only_32", &self.only_32)
            .finish_non_exhaustive()
    }
}

fn oid(arcs: &[u64]) -> Oid<'static> {
    Oid::from(arcs).expect("a valid OID")
}

fn with_index(base: &[u64], index: u64) -> Oid<'static> {
    let mut arcs = base.to_vec();
    arcs.push(index);
    oid(&arcs)
}

impl Snmp {
    /// The agent at `host` (`host` or `host:port`, 161 by default).
    pub fn new(host: &str, community: SecretString, interface: &str, timeout: Duration) -> Snmp {
        let host = if host.parse::<std::net::SocketAddr>().is_ok()
            || host
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok())
        {
            host.to_string()
        } else if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:161") // a bare IPv6 address
        } else {
            format!("{host}:161")
        };
        Snmp {
            host,
            community,
            interface: interface.to_string(),
            timeout,
            session: None,
            index: None,
            only_32: false,
            next_request_id: 1,
        }
    }

    /// Where the agent is, for messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The interface's name (`ifName`).
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The ifIndex in use, once found.
    pub fn index(&self) -> Option<u64> {
        self.index
    }

    /// Whether the 32-bit counter is read (the agent has no 64-bit one).
    pub fn only_32_bit(&self) -> bool {
        self.only_32
    }

    /// Read the counter; on any failure the session and the ifIndex are found again next time.
    pub async fn read(&mut self) -> Result<Counter, String> {
        let r = self.try_read().await;
        if r.is_err() {
            self.session = None;
            self.index = None;
        }
        r
    }

    async fn try_read(&mut self) -> Result<Counter, String> {
        let fresh = self.index.is_none();
        if self.session.is_none() {
            let s = tokio::time::timeout(
                self.timeout,
                AsyncSession::new_v2c(
                    self.host.as_str(),
                    self.community.expose_secret().as_bytes(),
                    self.next_request_id,
                ),
            )
            .await
            .map_err(|_| format!("SNMP agent {}: cannot resolve in time", self.host))?
            .map_err(|e| format!("SNMP agent {}: {e}", self.host))?;
            self.session = Some(s);
        }
        let index = match self.index {
            Some(i) => i,
            None => {
                let i = self.find_index().await?;
                self.index = Some(i);
                i
            }
        };
        if !self.only_32 {
            match self.get(&with_index(IF_HC_OUT_OCTETS, index)).await? {
                Got::Counter64(v) => {
                    return Ok(Counter {
                        bytes: v,
                        wraps_at: None,
                        fresh,
                    });
                }
                Got::Missing => self.only_32 = true,
                Got::Counter32(_) => {
                    return Err(format!(
                        "ifHCOutOctets.{index} is a Counter32, not a Counter64"
                    ));
                }
                Got::Other(what) => {
                    return Err(format!("ifHCOutOctets.{index} is {what}, not a Counter64"));
                }
            }
        }
        match self.get(&with_index(IF_OUT_OCTETS, index)).await? {
            Got::Counter32(v) => Ok(Counter {
                bytes: u64::from(v),
                wraps_at: Some(1 << 32),
                fresh,
            }),
            Got::Missing => Err(format!(
                "SNMP agent {} has neither ifHCOutOctets nor ifOutOctets for {:?}",
                self.host, self.interface
            )),
            Got::Counter64(_) | Got::Other(_) => {
                Err(format!("ifOutOctets.{index} is not a Counter32"))
            }
        }
    }

    /// Walk `ifName` for the configured name.
    async fn find_index(&mut self) -> Result<u64, String> {
        let base = oid(IF_NAME);
        let mut at = base.clone();
        let mut seen = Vec::new();
        for _ in 0..MAX_INTERFACES {
            let (next, value) = self.getnext(&at).await?;
            let Some(arcs) = next.iter().map(|i| i.collect::<Vec<u64>>()) else {
                break;
            };
            if !arcs.starts_with(IF_NAME) || arcs.len() != IF_NAME.len() + 1 {
                break; // past the column
            }
            let index = arcs[IF_NAME.len()];
            if let Some(name) = value {
                if name == self.interface {
                    return Ok(index);
                }
                seen.push(name);
            }
            at = next;
        }
        Err(if seen.is_empty() {
            format!(
                "SNMP agent {} lists no ifName (IF-MIB ifXTable): is the community allowed to \
                 read it?",
                self.host
            )
        } else {
            format!(
                "SNMP agent {} has no interface named {:?} (it has {})",
                self.host,
                self.interface,
                seen.join(", ")
            )
        })
    }

    fn session(&mut self) -> Result<&mut AsyncSession, String> {
        self.next_request_id = self.next_request_id.wrapping_add(1);
        self.session
            .as_mut()
            .ok_or_else(|| "no SNMP session".to_string())
    }

    async fn get(&mut self, oid: &Oid<'_>) -> Result<Got, String> {
        let (host, timeout) = (self.host.clone(), self.timeout);
        let s = self.session()?;
        let pdu = answer(&host, tokio::time::timeout(timeout, s.get(oid)).await)?;
        let mut varbinds = pdu.varbinds;
        Ok(match varbinds.next() {
            Some((_, Value::Counter64(v))) => Got::Counter64(v),
            Some((_, Value::Counter32(v))) => Got::Counter32(v),
            Some((_, Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView)) | None => {
                Got::Missing
            }
            Some((_, other)) => Got::Other(format!("{other:?}")),
        })
    }

    /// The next OID after `oid` and, when it is a text, its value.
    async fn getnext(&mut self, oid: &Oid<'_>) -> Result<(Oid<'static>, Option<String>), String> {
        let (host, timeout) = (self.host.clone(), self.timeout);
        let s = self.session()?;
        let pdu = answer(&host, tokio::time::timeout(timeout, s.getnext(oid)).await)?;
        let mut varbinds = pdu.varbinds;
        match varbinds.next() {
            Some((next, value)) => {
                let text = match value {
                    Value::OctetString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                    _ => None,
                };
                Ok((next.to_owned(), text))
            }
            None => Err(format!("SNMP agent {host}: an empty answer")),
        }
    }
}

/// The agent's answer to one request made under the timeout, or what went wrong in words.
fn answer<'a>(
    host: &str,
    r: Result<Result<snmp2::Pdu<'a>, snmp2::Error>, tokio::time::error::Elapsed>,
) -> Result<snmp2::Pdu<'a>, String> {
    let pdu = r
        .map_err(|_| format!("SNMP agent {host}: no answer within bandwidth.meter.timeout"))?
        .map_err(|e| snmp_error(host, &e))?;
    if pdu.error_status != 0 {
        return Err(format!(
            "SNMP agent {host}: error status {}",
            pdu.error_status
        ));
    }
    Ok(pdu)
}

/// An error of the SNMP library, in words.
fn snmp_error(host: &str, e: &snmp2::Error) -> String {
    match e {
        snmp2::Error::Send | snmp2::Error::Receive => {
            format!("SNMP agent {host}: no answer (nothing listens there, or the port is closed)")
        }
        other => format!("SNMP agent {host}: a malformed answer ({other:?})"),
    }
}

/// What a GET found.
enum Got {
    Counter64(u64),
    Counter32(u32),
    /// No such object or instance.
    Missing,
    Other(String),
}
