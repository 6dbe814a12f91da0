//! `jellydemon healthcheck`: ask a running daemon whether it is healthy, for a container's
//! `HEALTHCHECK` (a `FROM scratch` image has no shell and no curl).
//!
//! It asks `GET /healthz` on the daemon's own address; an unspecified listen address
//! (`0.0.0.0`, `::`) is asked on the loopback address of its family. Healthy means a 200: the
//! engine runs and a poll of Jellyfin succeeded within `daemon.unhealthy_after`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Where to ask a daemon that listens on `listen`.
pub fn address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Ask the daemon at `addr`. `Ok` with the answer when healthy, `Err` with what was wrong.
pub async fn probe(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let url = format!("http://{addr}/healthz");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("no answer from {url}: {e}"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{url} answered {status}: {body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_address_is_asked_on_loopback() {
        let a: SocketAddr = "0.0.0.0:8098".parse().unwrap();
        assert_eq!(address(a), "127.0.0.1:8098".parse().unwrap());
        let a: SocketAddr = "[::]:8098".parse().unwrap();
        assert_eq!(address(a), "[::1]:8098".parse().unwrap());
        let a: SocketAddr = "192.168.1.5:9000".parse().unwrap();
        assert_eq!(address(a), a);
    }
}
