//! One target: the request a notice becomes for each kind (pure, so its shape is tested), and
//! sending it. Secrets (URLs of Discord and webhooks, topics, tokens, passwords, headers)
//! stay in `SecretString`s and are never logged; a target is named by its `name`.
//!
//! * ntfy: `POST {url}/` with JSON `topic`, `title`, `message`, `priority` (1-5), `tags`
//!   (the JSON form carries any title, non-ASCII included); an access token as
//!   `Authorization: Bearer`, or basic auth.
//! * Gotify: `POST {url}/message`, `X-Gotify-Key: <app token>`, JSON `title`, `message`,
//!   `priority` (0-10).
//! * Discord: `POST {webhook url}` with one embed (`title` <= 256, `description` <= 4,096,
//!   `color`, `fields` of values <= 1,024 characters); success is 204, and a 429 carries
//!   `retry_after` (seconds) to wait before trying again.
//! * Apprise: `POST {url}/notify/` with `urls`, `title`, `body`, `type`
//!   (`info|success|warning|failure`), or `POST {url}/notify/{key}` for a stored
//!   configuration.
//! * webhook: `POST {url}` with JSON `{event, severity, title, message, time, data}` and the
//!   configured headers.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::conditions::{Notice, Severity};
use crate::config::{AppriseTo, ConfigError, NotifyKind, NotifyService, NotifyTarget, NtfyAuth};

/// A target with its secrets read.
pub struct Resolved {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: NotifyKind,
    url: SecretString,
    topic: Option<SecretString>,
    token: Option<SecretString>,
    basic: Option<(String, SecretString)>,
    key: Option<String>,
    urls: Vec<SecretString>,
    headers: Vec<(String, SecretString)>,
    /// Upper bound for one request.
    pub timeout: Duration,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Resolved {
    /// The target with its secrets (their files were read at load).
    pub fn new(t: &NotifyTarget) -> Result<Resolved, ConfigError> {
        let mut r = Resolved {
            name: t.name.clone(),
            kind: t.kind(),
            url: t.url()?.clone(),
            topic: None,
            token: None,
            basic: None,
            key: None,
            urls: Vec::new(),
            headers: Vec::new(),
            timeout: t.timeout,
        };
        match &t.service {
            NotifyService::Ntfy { topic, auth, .. } => {
                r.topic = Some(topic.get()?.clone());
                match auth {
                    NtfyAuth::Anonymous => {}
                    NtfyAuth::Token(token) => r.token = Some(token.get()?.clone()),
                    NtfyAuth::Basic { username, password } => {
                        r.basic = Some((username.clone(), password.get()?.clone()));
                    }
                }
            }
            NotifyService::Gotify { token, .. } => r.token = Some(token.get()?.clone()),
            NotifyService::Discord { .. } => {}
            NotifyService::Apprise { to, .. } => match to {
                AppriseTo::Key(key) => r.key = Some(key.clone()),
                AppriseTo::Urls(urls) => r.urls = urls.clone(),
            },
            NotifyService::Webhook { headers, .. } => {
                r.headers = headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
            }
        }
        Ok(r)
    }
}

/// A request to send.
pub struct Request {
    /// Where (a secret for Discord and webhooks).
    pub url: SecretString,
    /// Headers (values may be secrets).
    pub headers: Vec<(String, SecretString)>,
    /// The JSON body.
    pub body: Value,
}

/// At most `n` characters, with an ellipsis when cut.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn join(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path)
}

/// The request `n` becomes for target `t` at `time`.
pub fn request(t: &Resolved, n: &Notice, time: SystemTime) -> Request {
    let base = t.url.expose_secret();
    let title = if n.cleared {
        format!("✓ {}", n.title)
    } else {
        n.title.clone()
    };
    let secret = |s: String| SecretString::from(s);
    match t.kind {
        NotifyKind::Ntfy => {
            let mut headers = Vec::new();
            if let Some(token) = &t.token {
                headers.push((
                    "Authorization".into(),
                    secret(format!("Bearer {}", token.expose_secret())),
                ));
            } else if let Some((user, pass)) = &t.basic {
                let raw = format!("{user}:{}", pass.expose_secret());
                headers.push((
                    "Authorization".into(),
                    secret(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(raw)
                    )),
                ));
            }
            let (priority, tags) = match n.severity {
                Severity::Failure => (5, "rotating_light"),
                Severity::Warning => (4, "warning"),
                Severity::Success => (3, "white_check_mark"),
                Severity::Info => (3, "information_source"),
            };
            Request {
                url: secret(join(base, "")),
                headers,
                body: json!({
                    "topic": t.topic.as_ref().map(|s| s.expose_secret().to_string()).unwrap_or_default(),
                    "title": title,
                    "message": n.message,
                    "priority": priority,
                    "tags": [tags, "jellydemon"],
                }),
            }
        }
        NotifyKind::Gotify => Request {
            url: secret(join(base, "message")),
            headers: t
                .token
                .iter()
                .map(|k| ("X-Gotify-Key".to_string(), k.clone()))
                .collect(),
            body: json!({
                "title": title,
                "message": n.message,
                "priority": match n.severity {
                    Severity::Failure => 9,
                    Severity::Warning => 7,
                    Severity::Success | Severity::Info => 4,
                },
            }),
        },
        NotifyKind::Discord => Request {
            url: t.url.clone(),
            headers: Vec::new(),
            body: json!({
                // Names in the text are shown as written, never as links or mentions.
                "allowed_mentions": {"parse": []},
                "embeds": [{
                    "title": cut(&markdown_escaped(&title), 256),
                    "description": cut(&markdown_escaped(&n.message), 4096),
                    "color": match n.severity {
                        Severity::Failure => 0xF2_5F5C,
                        Severity::Warning => 0xF5_B93D,
                        Severity::Success => 0x38_C98B,
                        Severity::Info => 0x4A_A8FF,
                    },
                    "fields": [{"name": "event", "value": cut(n.event.as_str(), 1024), "inline": true}],
                    "footer": {"text": "jellydemon"},
                }],
            }),
        },
        NotifyKind::Apprise => {
            let (url, mut body) = match &t.key {
                Some(key) => (join(base, &format!("notify/{key}")), json!({})),
                None => (
                    join(base, "notify/"),
                    json!({"urls": t.urls.iter().map(|u| u.expose_secret().to_string()).collect::<Vec<_>>().join(",")}),
                ),
            };
            body["title"] = json!(title);
            body["body"] = json!(n.message);
            body["type"] = json!(n.severity.as_str());
            Request {
                url: secret(url),
                headers: Vec::new(),
                body,
            }
        }
        NotifyKind::Webhook => Request {
            url: t.url.clone(),
            headers: t.headers.clone(),
            body: json!({
                "event": n.event.as_str(),
                "severity": n.severity.as_str(),
                "title": title,
                "message": n.message,
                "cleared": n.cleared,
                "time": humantime::format_rfc3339_seconds(time).to_string(),
                "data": n.data,
            }),
        },
    }
}

/// How one try ended.
#[derive(Debug, PartialEq)]
pub enum Sent {
    /// 2xx.
    Ok(u16),
    /// 429 with a wait in seconds (Discord's `retry_after`, or `Retry-After`).
    RetryAfter(Duration),
    /// Anything else: what to log (no secret in it).
    Failed(String),
}

/// One try of `r` with `http`.
pub async fn send(http: &reqwest::Client, r: &Request, timeout: Duration) -> Sent {
    let mut req = http
        .post(r.url.expose_secret())
        .timeout(timeout)
        .json(&r.body);
    for (k, v) in &r.headers {
        req = req.header(k.as_str(), v.expose_secret());
    }
    let resp = match req.send().await {
        Ok(resp) => resp,
        // reqwest's errors name the URL: say only what happened.
        Err(e) if e.is_timeout() => return Sent::Failed("no answer within the timeout".into()),
        Err(e) if e.is_connect() => return Sent::Failed("cannot connect".into()),
        Err(_) => return Sent::Failed("the request failed".into()),
    };
    let status = resp.status();
    if status.is_success() {
        return Sent::Ok(status.as_u16());
    }
    if status.as_u16() == 429 {
        let header = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<f64>().ok());
        let body: Option<Value> = resp.json().await.ok();
        let secs = body
            .as_ref()
            .and_then(|b| b.get("retry_after"))
            .and_then(Value::as_f64)
            .or(header)
            .unwrap_or(1.0);
        return Sent::RetryAfter(Duration::from_secs_f64(secs.clamp(0.0, 60.0)));
    }
    Sent::Failed(format!("HTTP {status}"))
}

/// `text` with Discord's markdown characters escaped, so a user or device name such as
/// `[free](https://evil.example)` or `**x**` shows as written, not as a link or in bold.
fn markdown_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '*'
                | '_'
                | '~'
                | '`'
                | '|'
                | '>'
                | '<'
                | '['
                | ']'
                | '('
                | ')'
                | '#'
                | '-'
                | '@'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EventKind;

    fn target(toml: &str) -> Resolved {
        let s = crate::config::Settings::from_toml_str(&format!(
            "[jellyfin]\nurl = \"http://h\"\napi_key = \"k\"\n[bandwidth]\ntotal_upload_mbps = 1\n\
             [[notify]]\n{toml}\n"
        ))
        .unwrap();
        Resolved::new(&s.notify[0]).unwrap()
    }

    fn notice() -> Notice {
        Notice {
            event: EventKind::Overload,
            severity: Severity::Warning,
            title: "Upload überlastet".into(),
            message: "x".repeat(5000),
            cleared: false,
            data: json!({"users": 3}),
        }
    }

    #[test]
    fn each_kind_has_its_shape() {
        let n = notice();
        let t = SystemTime::UNIX_EPOCH;
        let r = request(
            &target(
                "kind = \"ntfy\"\nurl = \"https://ntfy.sh\"\ntopic = \"secret-topic\"\ntoken = \"tk_1\"",
            ),
            &n,
            t,
        );
        assert_eq!(r.url.expose_secret(), "https://ntfy.sh/");
        assert_eq!(r.body["topic"], "secret-topic");
        assert_eq!(r.body["title"], "Upload überlastet");
        assert_eq!(r.body["priority"], 4);
        assert_eq!(r.headers[0].1.expose_secret(), "Bearer tk_1");
        let r = request(
            &target(
                "kind = \"ntfy\"\nurl = \"https://ntfy.example/\"\ntopic = \"t\"\nusername = \"u\"\npassword = \"p\"",
            ),
            &n,
            t,
        );
        assert_eq!(r.headers[0].1.expose_secret(), "Basic dTpw");

        let r = request(
            &target("kind = \"gotify\"\nurl = \"https://gotify.example\"\ntoken = \"AppTok\""),
            &n,
            t,
        );
        assert_eq!(r.url.expose_secret(), "https://gotify.example/message");
        assert_eq!(r.headers[0].0, "X-Gotify-Key");
        assert_eq!(r.body["priority"], 7);

        let r = request(
            &target("kind = \"discord\"\nurl = \"https://discord.com/api/webhooks/1/abc\""),
            &n,
            t,
        );
        let embed = &r.body["embeds"][0];
        assert_eq!(embed["description"].as_str().unwrap().chars().count(), 4096);
        assert_eq!(r.body["allowed_mentions"]["parse"], json!([]));
        assert_eq!(
            markdown_escaped("[free](https://evil.example) **x** @everyone"),
            "\\[free\\]\\(https://evil.example\\) \\*\\*x\\*\\* \\@everyone"
        );
        assert!(embed["fields"][0]["value"].as_str().unwrap().len() <= 1024);

        let r = request(
            &target(
                "kind = \"apprise\"\nurl = \"http://apprise:8000\"\nurls = [\"mailto://a\", \"tgram://b\"]",
            ),
            &n,
            t,
        );
        assert_eq!(r.url.expose_secret(), "http://apprise:8000/notify/");
        assert_eq!(r.body["urls"], "mailto://a,tgram://b");
        assert_eq!(r.body["type"], "warning");
        let r = request(
            &target("kind = \"apprise\"\nurl = \"http://apprise:8000/\"\nkey = \"home\""),
            &n,
            t,
        );
        assert_eq!(r.url.expose_secret(), "http://apprise:8000/notify/home");
        assert!(r.body.get("urls").is_none());

        let r = request(
            &target(
                "kind = \"webhook\"\nurl = \"https://ha.example/api/webhook/x\"\nheaders = { Authorization = \"Bearer ha\" }",
            ),
            &n,
            t,
        );
        assert_eq!(r.body["event"], "overload");
        assert_eq!(r.body["severity"], "warning");
        assert_eq!(r.body["time"], "1970-01-01T00:00:00Z");
        assert_eq!(r.body["data"]["users"], 3);
        assert_eq!(r.headers[0].1.expose_secret(), "Bearer ha");
    }

    #[test]
    fn debug_output_names_no_secret() {
        let t = target("kind = \"discord\"\nurl = \"https://discord.com/api/webhooks/1/s3cret\"");
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
