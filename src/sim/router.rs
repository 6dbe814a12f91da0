//! A fake OpenWrt router: rpcd's JSON-RPC 2.0 at `POST /ubus`, the calls the `openwrt` meter
//! makes (`src/adapters/budget/meter.rs`). Its WAN counter grows in real time at a rate the caller sets;
//! it can expire the session, redial (a new device whose counter starts at 0), stop answering,
//! and shape the upload with SQM (`uci get` of the `sqm` config). For the tests and the demo.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::sync::lock;

/// The fake router; clones share it.
#[derive(Clone)]
pub struct FakeRouter {
    inner: Arc<Inner>,
}

struct Inner {
    username: String,
    password: String,
    /// The valid session, if any.
    session: Mutex<Option<String>>,
    logins: AtomicU64,
    /// Counter readings answered.
    readings: AtomicU64,
    /// The WAN's layer-3 device ("pppoe-wan"; a redial makes it another).
    l3_device: Mutex<String>,
    /// bits/s sent on the WAN now.
    rate_bps: AtomicU64,
    /// The counter in bytes, and when it was last brought up to date.
    counter: Mutex<(f64, Instant)>,
    /// Answer HTTP 500 to everything.
    down: AtomicBool,
    /// The enabled SQM queue's upload rate on the WAN device, kbit/s (`/etc/config/sqm`).
    sqm_upload_kbit: Mutex<Option<u64>>,
}

impl FakeRouter {
    /// A router whose rpcd login is `username` / `password`, its WAN `wan` on `pppoe-wan`.
    pub fn new(username: &str, password: &str) -> FakeRouter {
        FakeRouter {
            inner: Arc::new(Inner {
                username: username.into(),
                password: password.into(),
                session: Mutex::new(None),
                logins: AtomicU64::new(0),
                readings: AtomicU64::new(0),
                l3_device: Mutex::new("pppoe-wan".into()),
                rate_bps: AtomicU64::new(0),
                counter: Mutex::new((1e9, Instant::now())),
                down: AtomicBool::new(false),
                sqm_upload_kbit: Mutex::new(None),
            }),
        }
    }

    /// Serve on an ephemeral loopback port until `stop`; returns the `/ubus` URL.
    pub async fn spawn(&self, stop: CancellationToken) -> std::io::Result<String> {
        let app = axum::Router::new()
            .route("/ubus", axum::routing::post(ubus))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/ubus", listener.local_addr()?);
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        Ok(url)
    }

    /// What the WAN sends from now on, bits/s.
    pub fn set_rate(&self, bps: u64) {
        self.advance();
        self.inner.rate_bps.store(bps, Ordering::SeqCst);
    }

    /// Stop answering (HTTP 500), or answer again.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// The session expires: the next call gets -32002.
    pub fn expire_session(&self) {
        *lock(&self.inner.session) = Some("expired-elsewhere".into());
    }

    /// A PPPoE redial: a new device whose counter starts at 0.
    pub fn redial(&self, device: &str) {
        *lock(&self.inner.l3_device) = device.into();
        *lock(&self.inner.counter) = (0.0, Instant::now());
    }

    /// SQM shapes the WAN's upload to this many kbit/s from now on (`None`: no sqm config).
    pub fn set_sqm(&self, upload_kbit: Option<u64>) {
        *lock(&self.inner.sqm_upload_kbit) = upload_kbit;
    }

    /// Logins so far.
    pub fn logins(&self) -> u64 {
        self.inner.logins.load(Ordering::SeqCst)
    }

    fn read_counter(&self) -> u64 {
        self.inner.readings.fetch_add(1, Ordering::SeqCst);
        self.advance()
    }

    /// Counter readings answered so far (each meter reading is one).
    pub fn readings(&self) -> u64 {
        self.inner.readings.load(Ordering::SeqCst)
    }

    fn advance(&self) -> u64 {
        let mut c = lock(&self.inner.counter);
        let now = Instant::now();
        let rate = self.inner.rate_bps.load(Ordering::SeqCst) as f64;
        c.0 += rate / 8.0 * now.duration_since(c.1).as_secs_f64();
        c.1 = now;
        c.0 as u64
    }
}

async fn ubus(State(r): State<FakeRouter>, Json(body): Json<Value>) -> Response {
    if r.inner.down.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let p = &body["params"];
    let (session, object, method, args) = (
        p[0].as_str().unwrap_or(""),
        p[1].as_str().unwrap_or(""),
        p[2].as_str().unwrap_or(""),
        &p[3],
    );
    let reply = |result: Value| Json(json!({"jsonrpc": "2.0", "id": body["id"], "result": result}));
    if (object, method) == ("session", "login") {
        if session != "00000000000000000000000000000000"
            || args["username"] != r.inner.username.as_str()
            || args["password"] != r.inner.password.as_str()
        {
            // UBUS_STATUS_PERMISSION_DENIED
            return reply(json!([6])).into_response();
        }
        let n = r.inner.logins.fetch_add(1, Ordering::SeqCst) + 1;
        let id = format!("{n:032x}");
        *lock(&r.inner.session) = Some(id.clone());
        return reply(json!([0, {"ubus_rpc_session": id, "timeout": 300}])).into_response();
    }
    if lock(&r.inner.session).as_deref() != Some(session) {
        return Json(json!({"jsonrpc": "2.0", "id": body["id"],
                           "error": {"code": -32002, "message": "Access denied"}}))
        .into_response();
    }
    let dev = lock(&r.inner.l3_device).clone();
    match (object, method) {
        ("network.interface.wan", "status") => {
            reply(json!([0, {"up": true, "l3_device": dev, "device": "eth1"}])).into_response()
        }
        ("network.device", "status") if args["name"] == dev.as_str() => reply(json!([0, {
            "up": true, "statistics": {"tx_bytes": r.read_counter(), "rx_bytes": 5}
        }]))
        .into_response(),
        ("uci", "get") if args["config"] == "sqm" => match *lock(&r.inner.sqm_upload_kbit) {
            Some(kbit) => reply(json!([0, {"values": {
                "eth1": {".anonymous": false, ".type": "queue", ".name": "eth1",
                         "enabled": "1", "interface": dev, "download": "250000",
                         "upload": kbit.to_string(), "qdisc": "cake"},
                "guest": {".anonymous": false, ".type": "queue", ".name": "guest",
                          "enabled": "0", "interface": "br-guest", "upload": "5000"}
            }}]))
            .into_response(),
            None => reply(json!([4])).into_response(),
        },
        // UBUS_STATUS_NOT_FOUND
        _ => reply(json!([4])).into_response(),
    }
}
