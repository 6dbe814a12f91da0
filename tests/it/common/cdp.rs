//! Just enough of the Chrome DevTools protocol to drive a headless Chromium through a page:
//! open a tab, evaluate JavaScript in it, wait until an expression holds.
//!
//! Chromium listens on a port it picks itself (`--remote-debugging-port=0`) and writes it,
//! with the browser's WebSocket path, to `DevToolsActivePort` in its profile folder; nothing
//! is bound by guesswork. Commands are JSON messages with an `id`; the answer carries the
//! same `id`, events (no `id`) are skipped.

use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a page gets to reach a state before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

pub struct Browser {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
}

/// One tab, attached with its own DevTools session.
pub struct Tab {
    session: String,
}

impl Browser {
    /// Start headless Chromium with an empty profile and connect to it.
    pub async fn launch(exe: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = tokio::process::Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("run chromium");
        let file = profile.path().join("DevToolsActivePort");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let endpoint = loop {
            // Written once whole: both lines are there or the file is not.
            if let Some((port, path)) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|text| {
                    Some(text.split_once('\n')?).map(|(a, b)| (a.to_string(), b.trim().to_string()))
                })
                .filter(|(_, path)| !path.is_empty())
            {
                break format!("ws://127.0.0.1:{port}{path}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromium wrote no DevTools port"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .expect("connect to chromium's DevTools");
        Browser {
            ws,
            next_id: 0,
            _child: child,
            _profile: profile,
        }
    }

    /// Send one command (to the browser, or to a tab's session) and return its result; a
    /// protocol error is returned as `Err` with Chromium's message.
    async fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .expect("send to chromium");
        let answer = tokio::time::timeout(PATIENCE, async {
            loop {
                let frame = self.ws.next().await.expect("chromium went away");
                let Message::Text(text) = frame.expect("read from chromium") else {
                    continue;
                };
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if value["id"] == id {
                    return value;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
        match answer.get("error") {
            Some(error) => Err(error.to_string()),
            None => Ok(answer["result"].clone()),
        }
    }

    /// Open `url` in a new tab.
    pub async fn open(&mut self, url: &str) -> Tab {
        let target = self
            .call(None, "Target.createTarget", json!({"url": url}))
            .await
            .unwrap();
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await
            .unwrap();
        Tab {
            session: attached["sessionId"].as_str().unwrap().to_string(),
        }
    }

    /// Evaluate `expression` in the tab (awaiting a promise) and return its value; an
    /// exception, or a page between two documents, is an `Err`.
    pub async fn eval(&mut self, tab: &Tab, expression: &str) -> Result<Value, String> {
        let result = self
            .call(
                Some(&tab.session),
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(exception.to_string());
        }
        Ok(result["result"]["value"].clone())
    }

    /// Wait until `expression` is `true` in the tab; on time out, fail showing `show`'s value.
    pub async fn wait_until(&mut self, tab: &Tab, what: &str, expression: &str, show: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while tokio::time::Instant::now() < deadline {
            if self.eval(tab, expression).await == Ok(json!(true)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seen = self.eval(tab, show).await;
        panic!("the page never showed {what}: {seen:?}");
    }
}
