//! Who and where: the personal values jellydemon handles, each a type of its own.
//!
//! A user's id and name, a session id, a device id and label, a client's address: each is
//! normalized once, where it is parsed (a Jellyfin DTO, a webhook body, the configuration), and
//! formatting one (`Display`, `Debug`, so also `tracing` fields and `to_string()`) shows its
//! alias from the process-wide alias map (`anon`) when anonymization is on. Code that logs, reports or serves one
//! cannot forget to anonymize it, and no module but this one needs the alias map to do so.
//!
//! The real value is only reachable through `as_str()` (or [`ClientAddr::ip`]): for a request
//! path, the state file, a comparison or a metric that never leaves the process. None of these
//! types implements `Serialize`: a view that is served or printed holds their `to_string()`.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use crate::anon::{self, Anonymizer, Kind};
pub use crate::escape::escape_controls;

/// Jellyfin writes GUIDs as 32 lowercase hex digits; templates render them with dashes and
/// some clients with braces or upper case. Strip dashes and braces, lowercase and trim, so every
/// form compares equal.
pub fn normalize_guid(id: &str) -> String {
    // Jellyfin's own form (lowercase hex, no dashes) is what nearly every id already is.
    if id
        .bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        return id.to_string();
    }
    id.chars()
        .filter(|c| !matches!(c, '-' | '{' | '}'))
        .flat_map(char::to_lowercase)
        .collect::<String>()
        .trim()
        .to_string()
}

/// The order people read names in: as their lowercase forms compare (`str::to_lowercase`),
/// without allocating while both are ASCII (a plan sorts its users by name).
pub fn name_order(a: &str, b: &str) -> std::cmp::Ordering {
    for (&x, &y) in a.as_bytes().iter().zip(b.as_bytes()) {
        if !(x.is_ascii() && y.is_ascii()) {
            return a.to_lowercase().cmp(&b.to_lowercase());
        }
        let (x, y) = (x.to_ascii_lowercase(), y.to_ascii_lowercase());
        if x != y {
            return x.cmp(&y);
        }
    }
    // One is a prefix of the other, in ASCII: the longer one's rest lowercases to at least a
    // character, so the shorter comes first.
    a.len().cmp(&b.len())
}

/// The positions of `items` in the order of their names ([`name_order`], stable: a name twice
/// keeps its order). While every name is ASCII, each is sorted by the number its first 16
/// lowercase bytes make (a name compares by its bytes only where two of those numbers tie).
pub fn name_sort<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    let by_name = |a: usize, b: usize| name_order(name(&items[a]), name(&items[b]));
    if !items.iter().all(|t| name(t).is_ascii()) {
        order.sort_by(|&a, &b| by_name(a, b));
        return order;
    }
    let key = |n: &str| {
        let mut k = [0u8; 16];
        for (k, b) in k.iter_mut().zip(n.as_bytes()) {
            *k = b.to_ascii_lowercase();
        }
        u128::from_be_bytes(k)
    };
    let mut keyed: Vec<(u128, usize)> = order.iter().map(|&i| (key(name(&items[i])), i)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| by_name(a.1, b.1)));
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// `a.cmp(b)`, inlined for the 32 hex digits of a Jellyfin id: two big-endian 128-bit words
/// compare as their bytes do, without a call to `memcmp` (a plan sorts its users by id).
#[inline]
pub fn byte_order(a: &str, b: &str) -> std::cmp::Ordering {
    let words = |s: &[u8; 32]| {
        let (hi, lo) = s.split_at(16);
        (
            u128::from_be_bytes(hi.try_into().expect("16 bytes")),
            u128::from_be_bytes(lo.try_into().expect("16 bytes")),
        )
    };
    match (
        <&[u8; 32]>::try_from(a.as_bytes()),
        <&[u8; 32]>::try_from(b.as_bytes()),
    ) {
        (Ok(a), Ok(b)) => words(a).cmp(&words(b)),
        _ => a.cmp(b),
    }
}

/// Between the name of another server (`[[server]]`) and the id its user or session has
/// there: `den:3f…`. Jellyfin's and Emby's ids are hex digits (dashes and braces are
/// normalized away), so an id of the `[jellyfin]` server never holds it.
pub const MEMBER_SEPARATOR: char = ':';

/// Whether `id` (a user or session id) is another server's (`src/adapters/jellyfin/fleet.rs`).
pub fn is_member_id(id: &str) -> bool {
    id.contains(MEMBER_SEPARATOR)
}

/// The name of the server an id is prefixed with, if any.
pub fn member_of(id: &str) -> Option<&str> {
    id.split_once(MEMBER_SEPARATOR).map(|(name, _)| name)
}

/// Show a personal value of `kind`: its alias when anonymization is on, else itself with its
/// control and bidirectional-override characters escaped ([`escape_controls`]): a client
/// chooses its own device name, and a name that moves the cursor or reverses the text must
/// not forge lines in a terminal or a log.
fn show(f: &mut fmt::Formatter<'_>, kind: Kind, value: &str) -> fmt::Result {
    f.write_str(&escape_controls(&shown_by(
        anon::global().map(|a| &**a),
        kind,
        value,
    )))
}

/// What `anonymizer` (if any) shows for `value`.
fn shown_by<'a>(anonymizer: Option<&Anonymizer>, kind: Kind, value: &'a str) -> Cow<'a, str> {
    match anonymizer {
        Some(a) => Cow::Owned(a.alias(kind, value)),
        None => Cow::Borrowed(value),
    }
}

/// A personal text value: a newtype over a shared string that formats as its alias. Shared
/// (`Arc<str>`), because a plan copies ids and names into every view and decision: a copy is
/// a count, not an allocation.
macro_rules! personal_text {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $normalize:expr) => {
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Eq, Hash)]
        pub struct $name(Arc<str>);

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                byte_order(&self.0, &other.0)
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl $name {
            /// Normalize `raw` into one.
            pub fn new(raw: impl AsRef<str>) -> Self {
                let normalize: fn(&str) -> String = $normalize;
                $name(normalize(raw.as_ref()).into())
            }
            /// The real value, for a request, the state file or a comparison; never to show.
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// Nothing there (an empty field from Jellyfin or a template).
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                show(f, $kind, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "\"{self}\"")
            }
        }

        impl From<&str> for $name {
            fn from(raw: &str) -> Self {
                $name::new(raw)
            }
        }

        impl From<String> for $name {
            fn from(raw: String) -> Self {
                $name::new(raw)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == $name::new(other).0
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                *self == **other
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map($name::new)
            }
        }
    };
}

fn as_is(raw: &str) -> String {
    raw.to_string()
}

personal_text!(
    /// A Jellyfin user id, normalized (32 lowercase hex digits, no dashes).
    UserId,
    Kind::UserId,
    normalize_guid
);

impl UserId {
    /// Names no user: empty, or the all-zero id Jellyfin gives a session without a user.
    pub fn is_nil(&self) -> bool {
        self.0.bytes().all(|b| b == b'0')
    }
}

personal_text!(
    /// A Jellyfin user's name, as the server spells it.
    UserName,
    Kind::UserName,
    as_is
);

personal_text!(
    /// A Jellyfin session id, normalized like a GUID (Jellyfin's own are already 32 lowercase
    /// hex digits; a template may add dashes).
    SessionId,
    Kind::Session,
    normalize_guid
);

personal_text!(
    /// A Jellyfin device id (`DeviceId` of a session or a webhook).
    DeviceId,
    Kind::Device,
    as_is
);

personal_text!(
    /// What a person watches on, as shown to the admin: "client on device name", e.g.
    /// "Jellyfin Web on Alice's laptop".
    DeviceName,
    Kind::Device,
    as_is
);

personal_text!(
    /// An endpoint as Jellyfin reported it, before (or instead of) parsing it as an address.
    Endpoint,
    Kind::Ip,
    as_is
);

/// A client's IP address, canonical (an IPv4-mapped IPv6 address is the IPv4 address it
/// carries), formatted as its alias when anonymizing. Private addresses keep their prefix in
/// the alias (`192.168.xxx.1`) and loopback stays as it is, so the admin still sees which side
/// of the router a client is on.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientAddr(IpAddr);

impl ClientAddr {
    /// The canonical form of `ip`.
    pub fn new(ip: IpAddr) -> ClientAddr {
        ClientAddr(ip.to_canonical())
    }
    /// The real address, for classification and comparison; never to show.
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

impl From<IpAddr> for ClientAddr {
    fn from(ip: IpAddr) -> Self {
        ClientAddr::new(ip)
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show(f, Kind::Ip, &self.0.to_string())
    }
}

impl fmt::Debug for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_normalized_once_and_compare_in_any_spelling() {
        let id = UserId::new("{4F1C2D3E-0000-1111-2222-333344445555}");
        assert_eq!(id.as_str(), "4f1c2d3e000011112222333344445555");
        assert_eq!(id, "4f1c2d3e000011112222333344445555");
        assert_eq!(id, "4F1C2D3E-0000-1111-2222-333344445555");
        assert!(UserId::new("00000000-0000-0000-0000-000000000000").is_nil());
        assert!(UserId::new("").is_nil());
        assert!(!id.is_nil());
        assert_eq!(UserName::new(" Zoë ").as_str(), " Zoë ");
        let id: UserId = serde_json::from_str("\"AB-CD\"").unwrap();
        assert_eq!(id.as_str(), "abcd");
    }

    #[test]
    fn addresses_are_canonical() {
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(ClientAddr::new(mapped), ClientAddr::new(v4));
        assert_eq!(ClientAddr::new(mapped).ip(), v4);
    }

    #[test]
    fn with_an_anonymizer_each_kind_shows_its_alias() {
        let a = Anonymizer::in_memory();
        let id = UserId::new("4F1C2D3E-0000-1111-2222-333344445555");
        assert_eq!(shown_by(Some(&a), Kind::UserId, id.as_str()), "UserId-001");
        assert_eq!(shown_by(Some(&a), Kind::UserName, "Zoë"), "User-001");
        let lan = ClientAddr::new("::ffff:192.168.1.20".parse().unwrap());
        assert_eq!(
            shown_by(Some(&a), Kind::Ip, &lan.ip().to_string()),
            "192.168.xxx.1"
        );
        assert_eq!(shown_by(None, Kind::UserName, "Zoë"), "Zoë");
    }

    /// Without an installed anonymizer, a value shows as itself. (With the process-wide one
    /// installed, the leak test in `tests/it/anonymize.rs` runs a whole scenario.)
    #[test]
    fn without_anonymization_values_show_as_themselves() {
        if anon::global().is_some() {
            return;
        }
        assert_eq!(UserName::new("Zoë").to_string(), "Zoë");
        assert_eq!(format!("{:?}", UserName::new("Zoë")), "\"Zoë\"");
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(ClientAddr::new(ip).to_string(), "2001:db8::1");
    }

    proptest::proptest! {
        /// The same order as comparing the lowercase forms, for any names.
        #[test]
        fn names_order_as_their_lowercase_forms(
            prefix in "[a-zA-Z]{0,4}",
            a in "[a-zA-Z0-9 _.-]{0,12}|.{0,12}",
            b in "[a-zA-Z0-9 _.-]{0,12}|.{0,12}",
        ) {
            // Often with a common start, in either case.
            let (a, b) = (format!("{prefix}{a}"), format!("{}{b}", prefix.to_uppercase()));
            proptest::prop_assert_eq!(name_order(&a, &b), a.to_lowercase().cmp(&b.to_lowercase()));
            proptest::prop_assert_eq!(name_order(&b, &a), b.to_lowercase().cmp(&a.to_lowercase()));
        }

        /// The same order as a stable sort by [`name_order`], for names that share their start
        /// (in either case, past 16 bytes), ASCII or not.
        #[test]
        fn name_sort_is_a_stable_sort_by_name(
            start in "[a-zA-Z]{0,20}",
            rests in proptest::collection::vec("[a-zA-Z0-9 ]{0,3}|.{0,2}", 0..12),
            upper in proptest::collection::vec(proptest::bool::ANY, 12),
        ) {
            let names: Vec<String> = rests
                .iter()
                .zip(&upper)
                .map(|(r, &u)| if u { format!("{}{r}", start.to_uppercase()) } else { format!("{start}{r}") })
                .collect();
            let mut expected: Vec<usize> = (0..names.len()).collect();
            expected.sort_by(|&a, &b| name_order(&names[a], &names[b]));
            proptest::prop_assert_eq!(name_sort(&names, |n| n.as_str()), expected);
        }

        /// The same order as `str::cmp`: ids of 32 hex digits (often with a common start, so
        /// both words are compared), and any other texts.
        #[test]
        fn ids_order_as_their_bytes(
            start in "[0-9a-f]{0,32}",
            a in "[0-9a-f]{32}",
            b in "[0-9a-f]{32}",
            other in ".{0,40}",
        ) {
            let a = format!("{start}{}", &a[start.len()..]);
            let b = format!("{start}{}", &b[start.len()..]);
            for (x, y) in [(&a, &b), (&b, &a), (&a, &a), (&a, &other), (&other, &b)] {
                proptest::prop_assert_eq!(byte_order(x, y), x.cmp(y));
                proptest::prop_assert_eq!(UserId::new(x).cmp(&UserId::new(y)), UserId::new(x).as_str().cmp(UserId::new(y).as_str()));
            }
        }
    }
}
