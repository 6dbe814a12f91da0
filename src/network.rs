//! Who streams from outside: parsing `RemoteEndPoint` and classifying it against the internal
//! ranges. Pure functions, no I/O.
//!
//! Jellyfin normally reports a bare IP (`203.0.113.7`, `2001:db8::1`), but older servers, proxies
//! and third-party fixtures show `1.2.3.4:5678`, `[2001:db8::1]:8920`, `::ffff:1.2.3.4` or a
//! zone id (`fe80::1%eth0`). All of these must give the same answer for the same client, and an
//! endpoint that cannot be parsed is reported as such rather than guessed to be local or remote.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::ids::{ClientAddr, Endpoint};

/// Why an endpoint could not be turned into an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Jellyfin reported no endpoint.
    #[error("no RemoteEndPoint reported")]
    Missing,
    /// The raw text formats as its alias when anonymizing.
    #[error("\"{0}\" is not an IP address")]
    Unparseable(Endpoint),
}

/// Parse any of the `RemoteEndPoint` forms listed in the module doc. IPv4-mapped IPv6 addresses
/// come back as IPv4, so `::ffff:10.0.0.1` and `10.0.0.1` classify alike.
///
/// ```
/// use jellydemon::network::parse_endpoint;
/// let ip = parse_endpoint("203.0.113.7").unwrap();
/// assert_eq!(parse_endpoint("[::ffff:203.0.113.7]:443").unwrap(), ip);
/// assert!(parse_endpoint("example.com").is_err());
/// ```
pub fn parse_endpoint(raw: &str) -> Result<IpAddr, EndpointError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(EndpointError::Missing);
    }
    // Jellyfin nearly always reports a bare address; the other forms never parse as one.
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(ip.to_canonical());
    }
    let bad = || EndpointError::Unparseable(Endpoint::new(raw));
    let host = if let Some(rest) = s.strip_prefix('[') {
        // "[v6]" or "[v6]:port"
        let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
        if !(after.is_empty() || valid_port_suffix(after)) {
            return Err(bad());
        }
        inside
    } else if s.matches(':').count() == 1 {
        // "v4:port" (a bare IPv6 address has at least two colons)
        let (host, port) = s.split_once(':').ok_or_else(bad)?;
        if !valid_port_suffix(&format!(":{port}")) {
            return Err(bad());
        }
        host
    } else {
        s
    };
    // Drop a zone id ("fe80::1%eth0"): it names an interface, not a different host.
    let host = host.split_once('%').map_or(host, |(h, _)| h);
    let ip: IpAddr = host.parse().map_err(|_| bad())?;
    Ok(ip.to_canonical())
}

fn valid_port_suffix(s: &str) -> bool {
    s.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.parse::<u16>().is_ok())
}

/// Parse a CIDR (`192.168.0.0/16`, `fd00::/8`) or a single address (taken as /32 or /128).
/// Host bits are cleared, so `192.168.1.7/24` means `192.168.1.0/24`.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err("not a CIDR (expected e.g. 192.168.0.0/16 or fd00::/8)".to_string())
}

/// The ranges Jellyfin treats as its LAN when `LocalNetworkSubnets` is empty: RFC 1918,
/// loopback, IPv6 link-local and unique-local.
pub fn jellyfin_default_ranges() -> Vec<IpNet> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "::1/128",
        "fe80::/10",
        "fc00::/7",
    ]
    .iter()
    .map(|s| s.parse().expect("static CIDR"))
    .collect()
}

/// Where a session's client is, as far as jellydemon is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Inside the internal ranges.
    Local(ClientAddr),
    /// Outside them: the user's limit applies.
    Remote(ClientAddr),
    /// The endpoint is missing or unparseable: the session is left alone and reported.
    Unknown(EndpointError),
}

impl Location {
    /// The session's client is outside the internal ranges.
    pub fn is_remote(&self) -> bool {
        matches!(self, Location::Remote(_))
    }
    /// The client's address, when it could be parsed.
    pub fn ip(&self) -> Option<ClientAddr> {
        match self {
            Location::Local(ip) | Location::Remote(ip) => Some(*ip),
            Location::Unknown(_) => None,
        }
    }
}

/// True when `ip` lies in any of `ranges`. The address is canonicalised first, and an IPv4
/// address also matches a range written as IPv4-mapped IPv6.
pub fn is_internal(ip: IpAddr, ranges: &[IpNet]) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => ranges.iter().any(|net| match net {
            IpNet::V4(n) => n.contains(&v4),
            IpNet::V6(n) => n.contains(&v4.to_ipv6_mapped()),
        }),
        IpAddr::V6(v6) => ranges
            .iter()
            .any(|net| matches!(net, IpNet::V6(n) if n.contains(&v6))),
    }
}

/// Classify a `RemoteEndPoint` (absent or present) against the internal ranges.
pub fn classify(endpoint: Option<&str>, ranges: &[IpNet]) -> Location {
    match endpoint.map(parse_endpoint) {
        None => Location::Unknown(EndpointError::Missing),
        Some(Err(e)) => Location::Unknown(e),
        Some(Ok(ip)) if is_internal(ip, ranges) => Location::Local(ClientAddr::new(ip)),
        Some(Ok(ip)) => Location::Remote(ClientAddr::new(ip)),
    }
}

/// A reverse proxy without `KnownProxies` makes every session appear to come from the proxy.
/// Returns the shared address when at least two sessions of at least two different devices all
/// report one and the same address.
pub fn proxy_suspect<A: Copy + PartialEq, D: PartialEq>(
    sessions: impl IntoIterator<Item = (A, D)>,
) -> Option<A> {
    let mut first: Option<(A, D)> = None;
    let mut other_device = false;
    for (ip, device) in sessions {
        match &first {
            None => first = Some((ip, device)),
            Some((f, _)) if *f != ip => return None,
            Some((_, d)) => other_device |= *d != device,
        }
    }
    match first {
        Some((ip, _)) if other_device => Some(ip),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ranges() -> Vec<IpNet> {
        jellyfin_default_ranges()
    }

    #[test]
    fn every_endpoint_form_parses_to_the_same_address() {
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        for form in [
            "203.0.113.7",
            " 203.0.113.7 ",
            "203.0.113.7:5678",
            "::ffff:203.0.113.7",
            "[::ffff:203.0.113.7]:443",
            "[203.0.113.7]",
            "::FFFF:203.0.113.7",
        ] {
            assert_eq!(parse_endpoint(form), Ok(v4), "{form}");
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        for form in [
            "2001:db8::1",
            "2001:0db8:0000:0000:0000:0000:0000:0001",
            "[2001:db8::1]",
            "[2001:db8::1]:8920",
        ] {
            assert_eq!(parse_endpoint(form), Ok(v6), "{form}");
        }
        assert_eq!(
            parse_endpoint("fe80::1%eth0"),
            Ok("fe80::1".parse().unwrap())
        );
    }

    #[test]
    fn garbage_is_reported_not_guessed() {
        for bad in [
            "example.com",
            "1.2.3.4:99999",
            "1.2.3.4:",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "300.1.1.1",
            "unknown",
        ] {
            assert!(
                matches!(parse_endpoint(bad), Err(EndpointError::Unparseable(_))),
                "{bad}"
            );
        }
        assert_eq!(parse_endpoint(""), Err(EndpointError::Missing));
        assert!(matches!(
            classify(None, &ranges()),
            Location::Unknown(EndpointError::Missing)
        ));
        assert!(matches!(
            classify(Some("nonsense"), &ranges()),
            Location::Unknown(EndpointError::Unparseable(_))
        ));
    }

    #[test]
    fn classification_against_default_ranges() {
        let r = ranges();
        for local in [
            "192.168.1.20",
            "10.1.2.3:4444",
            "::ffff:172.16.5.5",
            "127.0.0.1",
            "::1",
            "[::1]:8096",
            "fd12:3456::7",
            "fe80::abcd%2",
        ] {
            assert!(
                matches!(classify(Some(local), &r), Location::Local(_)),
                "{local}"
            );
        }
        for remote in [
            "203.0.113.7",
            "[2001:db8::9]:1234",
            "::ffff:198.51.100.1",
            "172.32.0.1",
        ] {
            assert!(classify(Some(remote), &r).is_remote(), "{remote}");
        }
    }

    #[test]
    fn mapped_v6_range_matches_plain_v4() {
        let r = vec![parse_cidr("::ffff:192.0.2.0/120").unwrap()];
        assert!(is_internal("192.0.2.9".parse().unwrap(), &r));
    }

    #[test]
    fn cidr_parsing_clears_host_bits_and_accepts_single_addresses() {
        assert_eq!(
            parse_cidr("192.168.1.7/24").unwrap().to_string(),
            "192.168.1.0/24"
        );
        assert_eq!(
            parse_cidr("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert!(parse_cidr("192.168.1.0/33").is_err());
        assert!(parse_cidr("lan").is_err());
    }

    #[test]
    fn proxy_is_suspected_only_for_one_shared_address_over_several_devices() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "203.0.113.1".parse().unwrap();
        assert_eq!(proxy_suspect([(lo, "tv"), (lo, "phone")]), Some(lo));
        assert_eq!(proxy_suspect([(lo, "tv"), (lo, "tv")]), None);
        assert_eq!(proxy_suspect([(lo, "tv"), (other, "phone")]), None);
        assert_eq!(proxy_suspect([(lo, "tv")]), None);
        assert_eq!(proxy_suspect(Vec::<(IpAddr, &str)>::new()), None);
    }

    proptest! {
        /// Any IPv4 address classifies identically in all its textual forms.
        #[test]
        fn v4_forms_agree(a in any::<[u8; 4]>(), port in 1u16..) {
            let ip = Ipv4Addr::from(a);
            let r = ranges();
            let plain = classify(Some(&ip.to_string()), &r);
            prop_assert_eq!(&classify(Some(&format!("{ip}:{port}")), &r), &plain);
            prop_assert_eq!(&classify(Some(&format!("::ffff:{ip}")), &r), &plain);
            prop_assert_eq!(&classify(Some(&format!("[::ffff:{ip}]:{port}")), &r), &plain);
        }

        /// Any IPv6 address classifies identically bare, bracketed and with a port.
        #[test]
        fn v6_forms_agree(a in any::<[u16; 8]>(), port in 1u16..) {
            let ip = Ipv6Addr::from(a);
            let r = ranges();
            let plain = classify(Some(&ip.to_string()), &r);
            prop_assert!(!matches!(plain, Location::Unknown(_)));
            prop_assert_eq!(&classify(Some(&format!("[{ip}]")), &r), &plain);
            prop_assert_eq!(&classify(Some(&format!("[{ip}]:{port}")), &r), &plain);
        }

        /// The parser never panics on arbitrary input.
        #[test]
        fn parser_never_panics(s in ".{0,64}") {
            let _ = parse_endpoint(&s);
        }
    }
}
