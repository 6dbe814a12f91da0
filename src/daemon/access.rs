//! Who may do what over HTTP.
//!
//! * `/hook` takes the webhook secret (`X-Jellydemon-Token` or `Authorization: Bearer`).
//! * The status page, `/api/*` and `/metrics` show user names, addresses and what people watch:
//!   when `daemon.listen` is not loopback they take the status secret (`daemon.status_token`,
//!   else the webhook secret) as `Authorization: Bearer`, or a session cookie that the page's
//!   sign-in form sets (`HttpOnly; SameSite=Strict`, random, kept in memory until restart),
//!   unless `daemon.public_status` says otherwise.
//! * Those pages answer only under an allowed `Host`: an IP address, `localhost`, this
//!   machine's name or `daemon.allowed_hosts`. A DNS-rebinding page names its own host.
//! * Failed authentications are logged at warn with the peer's address, at most once a minute,
//!   with how many there were. Sign-in attempts are rate-limited per address
//!   ([`SIGN_IN_BURST`] at once, then one every [`SIGN_IN_EVERY`]), so the secret cannot be
//!   guessed at the speed of the network.
//! * The sign-in form and sign-out take only same-origin posts (a page elsewhere cannot sign
//!   a browser in or out); the cookie is `Secure` when the page was reached over HTTPS (the
//!   request says so, or the proxy in front does with `X-Forwarded-Proto`).
//!
//! Secrets are compared in constant time and never logged.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use axum::http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::time::Instant;
use tracing::warn;

use crate::config::{ConfigError, Settings};
use crate::ids::ClientAddr;
use crate::sync::lock;

/// The session cookie's name.
pub const COOKIE: &str = "jellydemon_session";

/// Sign-in sessions kept (the oldest is forgotten beyond).
const SESSIONS: usize = 64;

/// How long a session cookie lasts in the browser.
const SESSION_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// At most one log line about failed authentications per this period.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Sign-in attempts one address may make at once.
pub const SIGN_IN_BURST: u32 = 5;

/// Then one attempt per this period.
pub const SIGN_IN_EVERY: Duration = Duration::from_secs(6);

/// Addresses remembered by the sign-in limiter before the idle ones are dropped.
const SIGN_IN_PEERS: usize = 4096;

type PeerLimiter = governor::RateLimiter<
    IpAddr,
    governor::state::keyed::DefaultKeyedStateStore<IpAddr>,
    governor::clock::DefaultClock,
>;

/// The access rules of one daemon.
pub struct Access {
    status_token: Option<SecretString>,
    protected: bool,
    hosts: Vec<String>,
    sessions: Mutex<VecDeque<String>>,
    failures: Mutex<Failures>,
    sign_ins: PeerLimiter,
}

#[derive(Default)]
struct Failures {
    unlogged: u64,
    last_logged: Option<Instant>,
}

impl Access {
    pub fn new(settings: &Settings) -> Result<Access, ConfigError> {
        let d = &settings.daemon;
        let mut hosts: Vec<String> = d
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        hosts.push("localhost".into());
        if let Some(name) = machine_name() {
            hosts.push(format!("{name}.local"));
            hosts.push(name);
        }
        Ok(Access {
            status_token: d.status_token()?.cloned(),
            protected: d.status_protected(),
            hosts,
            sessions: Mutex::new(VecDeque::new()),
            failures: Mutex::new(Failures::default()),
            sign_ins: governor::RateLimiter::keyed(
                governor::Quota::with_period(SIGN_IN_EVERY)
                    .expect("a period")
                    .allow_burst(std::num::NonZeroU32::new(SIGN_IN_BURST).expect("> 0")),
            ),
        })
    }

    /// The `Host` header names an allowed host (or there is none).
    pub fn host_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get("host").and_then(|h| h.to_str().ok()) else {
            return headers.get("host").is_none();
        };
        let name = strip_port(host.trim());
        if name.parse::<IpAddr>().is_ok() {
            return true;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.contains(&name)
    }

    /// Whether this request may read the status page, `/api/*` and `/metrics`.
    pub fn may_read(&self, headers: &HeaderMap) -> bool {
        if !self.protected {
            return true;
        }
        let Some(secret) = &self.status_token else {
            return false;
        };
        bearer(headers).is_some_and(|t| same(t, secret.expose_secret())) || self.signed_in(headers)
    }

    /// Whether this request may change what the daemon does (the control API): the status
    /// secret always, on loopback too, as `Authorization: Bearer` or a signed-in session;
    /// and never from another site: a session (which a browser sends by itself) counts only
    /// with this site's `Origin`. `Ok` says how it came ("page" or "api"); `Err` is the
    /// status code and why.
    pub fn may_control(&self, headers: &HeaderMap) -> Result<&'static str, (u16, &'static str)> {
        let Some(secret) = &self.status_token else {
            return Err((
                403,
                "control needs a secret: set daemon.status_token (or daemon.webhook_token)",
            ));
        };
        if !same_origin(headers) {
            return Err((
                403,
                "changes are made from this page, not from another site",
            ));
        }
        if bearer(headers).is_some_and(|t| same(t, secret.expose_secret())) {
            return Ok("api");
        }
        match (self.signed_in(headers), headers.contains_key("origin")) {
            (true, true) => Ok("page"),
            (true, false) => Err((403, "a change from the page carries its Origin")),
            (false, _) => Err((
                401,
                "this needs the status secret: Authorization: Bearer <daemon.status_token>, or sign in on the page",
            )),
        }
    }

    /// A status secret is configured (control is possible).
    pub fn has_secret(&self) -> bool {
        self.status_token.is_some()
    }

    /// Whether the request carries a signed-in session.
    pub fn signed_in(&self, headers: &HeaderMap) -> bool {
        cookie(headers, COOKIE).is_some_and(|session| {
            lock(&self.sessions)
                .iter()
                .any(|known| same(session, known))
        })
    }

    /// Whether `peer` may try to sign in now; `Err` with how long it must wait.
    pub fn may_try_sign_in(&self, peer: Option<SocketAddr>) -> Result<(), Duration> {
        let ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip());
        if self.sign_ins.len() > SIGN_IN_PEERS {
            self.sign_ins.retain_recent();
        }
        self.sign_ins.check_key(&ip).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))
        })
    }

    /// Check a secret typed into the sign-in form; on success, the `Set-Cookie` value of a new
    /// session (`Secure` when the page is served over HTTPS).
    pub fn sign_in(&self, presented: &str, secure: bool) -> Option<String> {
        let secret = self.status_token.as_ref()?;
        if !same(presented.trim(), secret.expose_secret()) {
            return None;
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).ok()?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut sessions = lock(&self.sessions);
        if sessions.len() == SESSIONS {
            sessions.pop_front();
        }
        sessions.push_back(id.clone());
        Some(format!(
            "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
            SESSION_MAX_AGE.as_secs(),
            if secure { "; Secure" } else { "" }
        ))
    }

    /// Forget the session the request's cookie names (if any), and the `Set-Cookie` value
    /// that removes it from the browser.
    pub fn sign_out(&self, headers: &HeaderMap, secure: bool) -> String {
        if let Some(session) = cookie(headers, COOKIE) {
            lock(&self.sessions).retain(|known| !same(session, known));
        }
        format!(
            "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
            if secure { "; Secure" } else { "" }
        )
    }

    /// Note a failed authentication; logs at most once a minute, with the count since.
    pub fn failed(&self, what: &'static str, peer: Option<SocketAddr>) {
        let mut f = lock(&self.failures);
        f.unlogged += 1;
        let now = Instant::now();
        if f.last_logged.is_none_or(|t| now - t >= FAILURE_LOG_EVERY) {
            warn!(
                failures = f.unlogged,
                last_peer = %peer.map_or_else(|| "?".to_string(), |p| ClientAddr::new(p.ip()).to_string()),
                what,
                "wrong or missing secret (counted since the last such line)"
            );
            f.unlogged = 0;
            f.last_logged = Some(now);
        }
    }
}

/// The request reached this page over HTTPS: a proxy in front says so with
/// `X-Forwarded-Proto: https` (or `Forwarded: proto=https`), or the browser's `Origin` is
/// an `https://` one.
pub fn over_https(headers: &HeaderMap) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    header("x-forwarded-proto").is_some_and(|p| p.split(',').next().map(str::trim) == Some("https"))
        || header("forwarded").is_some_and(|f| f.contains("proto=https"))
        || header("origin").is_some_and(|o| o.starts_with("https://"))
}

/// A form post from this site: no `Origin` (not a browser), or one whose host is the
/// request's `Host`; and not marked cross-site by the browser (`Sec-Fetch-Site`).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if get("sec-fetch-site").is_some_and(|s| s.eq_ignore_ascii_case("cross-site")) {
        return false;
    }
    let Some(origin) = get("origin") else {
        return true;
    };
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    get("host").is_some_and(|host| origin_host.eq_ignore_ascii_case(host.trim()))
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(char::is_whitespace)?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The webhook secret as the plugin sends it: `X-Jellydemon-Token`, or `Authorization:
/// Bearer`.
pub fn webhook_secret_matches(headers: &HeaderMap, secret: &SecretString) -> bool {
    headers
        .get("x-jellydemon-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .or_else(|| bearer(headers))
        .is_some_and(|p| same(p, secret.expose_secret()))
}

/// The secret in a query string's `token` (a Plex webhook, which cannot send a header).
pub fn query_secret_matches(query: Option<&str>, secret: &SecretString) -> bool {
    query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "token" && same(v.trim(), secret.expose_secret()))
    })
}

/// Constant-time equality.
fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A cookie's value from the `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// `host:port`, `[v6]:port` or `[v6]` to the host alone.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// This machine's host name, lowercase, from the kernel.
fn machine_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(daemon: &str) -> Settings {
        Settings::from_toml_str(&format!(
            "[jellyfin]\nurl = \"http://127.0.0.1:8096\"\napi_key = \"k\"\n[bandwidth]\n\
             total_upload_mbps = 100\n[daemon]\n{daemon}\n"
        ))
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    const PUBLIC: &str = "listen = \"0.0.0.0:8098\"\nwebhook_token = \"hook-secret-0123456789\"\nstatus_token = \"status-secret-0123456789\"\nallowed_hosts = [\"Media.Example.org\"]";

    #[test]
    fn off_loopback_the_status_needs_the_status_secret() {
        let a = Access::new(&settings(PUBLIC)).unwrap();
        assert!(!a.may_read(&headers(&[])));
        assert!(a.may_read(&headers(&[(
            "authorization",
            "Bearer status-secret-0123456789"
        )])));
        assert!(a.may_read(&headers(&[(
            "authorization",
            "BEARER status-secret-0123456789"
        )])));
        assert!(!a.may_read(&headers(&[(
            "authorization",
            "Bearer hook-secret-0123456789"
        )])));
        // On loopback, or when asked to, no secret.
        let a = Access::new(&settings("")).unwrap();
        assert!(a.may_read(&headers(&[])));
        let a = Access::new(&settings(&format!("{PUBLIC}\npublic_status = true"))).unwrap();
        assert!(a.may_read(&headers(&[])));
    }

    #[test]
    fn signing_in_sets_a_session_cookie() {
        let a = Access::new(&settings(PUBLIC)).unwrap();
        assert_eq!(a.sign_in("wrong", false), None);
        let set = a.sign_in(" status-secret-0123456789\n", false).unwrap();
        assert!(set.contains("HttpOnly; SameSite=Strict"), "{set}");
        let id = set.split(';').next().unwrap();
        assert!(a.may_read(&headers(&[("cookie", &format!("theme=dark; {id}"))])));
        assert!(!a.may_read(&headers(&[("cookie", "jellydemon_session=00")])));
    }

    #[test]
    fn hosts_are_ip_literals_local_names_or_configured() {
        let a = Access::new(&settings(PUBLIC)).unwrap();
        for ok in [
            "192.168.1.20:8098",
            "[::1]:8098",
            "[fe80::1]",
            "localhost:8098",
            "media.example.org",
            "MEDIA.example.org.:443",
        ] {
            assert!(a.host_allowed(&headers(&[("host", ok)])), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:8098",
            "localhost.attacker.example",
        ] {
            assert!(!a.host_allowed(&headers(&[("host", bad)])), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_authentications_are_logged_once_a_minute_with_a_count() {
        use std::sync::Arc;
        use tracing_subscriber::layer::SubscriberExt;
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || Capture(sink.clone())),
        );
        let _guard = tracing::subscriber::set_default(subscriber);
        let a = Access::new(&settings(PUBLIC)).unwrap();
        let peer: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        for _ in 0..5 {
            a.failed("webhook", Some(peer));
        }
        assert_eq!(lock(&lines).len(), 1);
        assert!(lock(&lines)[0].contains("failures=1"), "{:?}", lock(&lines));
        assert!(
            lock(&lines)[0].contains("198.51.100.7"),
            "{:?}",
            lock(&lines)
        );
        tokio::time::advance(FAILURE_LOG_EVERY).await;
        a.failed("webhook", Some(peer));
        assert_eq!(lock(&lines).len(), 2);
        assert!(lock(&lines)[1].contains("failures=5"), "{:?}", lock(&lines));
    }

    struct Capture(std::sync::Arc<Mutex<Vec<String>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).push(String::from_utf8_lossy(b).into_owned());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_webhook_secret_comes_in_either_header_and_any_scheme_case() {
        let t = SecretString::from("0123456789abcdef".to_string());
        assert!(!webhook_secret_matches(&headers(&[]), &t));
        assert!(webhook_secret_matches(
            &headers(&[("x-jellydemon-token", "0123456789abcdef")]),
            &t
        ));
        for scheme in ["Bearer", "bearer", "BEARER"] {
            assert!(webhook_secret_matches(
                &headers(&[("authorization", &format!("{scheme} 0123456789abcdef"))]),
                &t
            ));
        }
        assert!(!webhook_secret_matches(
            &headers(&[("authorization", "Bearer 0123456789abcdeX")]),
            &t
        ));
        assert!(!webhook_secret_matches(
            &headers(&[("authorization", "Basic 0123456789abcdef")]),
            &t
        ));
    }
}
