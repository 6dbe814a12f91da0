//! The HTTP listener: accepting connections so that no client can exhaust the daemon or hold
//! up its shutdown.
//!
//! * hyper's HTTP/1 server with a header-read timeout (`daemon.http_header_timeout`), which
//!   hyper also starts while a kept-alive connection waits for its next request: a client that
//!   trickles headers or idles is closed;
//! * a timeout on every request, body included (`daemon.http_request_timeout`, 408: set in
//!   `http.rs`'s router, so the answer carries the security headers);
//! * at most `daemon.http_max_connections` connections, and never more than the open-file
//!   limit leaves after what the daemon needs itself ([`crate::fds::connection_cap`]): at the limit the
//!   oldest connection with no request in progress (idle, or still sending headers) is closed
//!   to make room, else the oldest still sending a request body, so a flood of idle or
//!   trickling connections cannot lock out `/hook` or `/healthz`; when every connection is
//!   busy answering, a new one is closed at once. File descriptors stay clear of the limit,
//!   so the ledger, the Jellyfin client and the restore keep working;
//! * on shutdown, accepting stops, open connections are asked to finish and get at most
//!   `daemon.http_drain`, then are dropped.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::sync::lock;

/// How the listener treats connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub drain: Duration,
}

/// An open connection, as the accept loop tracks it.
struct Tracked {
    /// Requests being answered on it now.
    in_flight: Arc<AtomicUsize>,
    /// Its request's body is still arriving: a client that trickles a body holds a request in
    /// flight without costing it anything, so it is closed to make room like an idle one.
    receiving: Arc<AtomicBool>,
    /// Cancelled to close it.
    close: CancellationToken,
}

/// The open connections, oldest first (ids only grow).
#[derive(Default)]
struct Connections {
    open: Mutex<BTreeMap<u64, Tracked>>,
}

impl Connections {
    fn len(&self) -> usize {
        lock(&self.open).len()
    }

    /// Close the oldest connection with no request in progress, else the oldest still
    /// receiving a request body. False when every connection is busy answering.
    fn evict_oldest_idle(&self) -> bool {
        let mut open = lock(&self.open);
        let oldest = open
            .iter()
            .find(|(_, t)| t.in_flight.load(Ordering::SeqCst) == 0)
            .or_else(|| {
                open.iter()
                    .find(|(_, t)| t.receiving.load(Ordering::SeqCst))
            })
            .map(|(id, _)| *id);
        match oldest.and_then(|id| open.remove(&id)) {
            Some(t) => {
                t.close.cancel();
                true
            }
            None => false,
        }
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request body that says when it has all arrived (see [`Tracked::receiving`]).
struct Watched {
    inner: Incoming,
    receiving: Arc<AtomicBool>,
}

impl hyper::body::Body for Watched {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None | Some(Err(_))))
            || self.inner.is_end_stream()
        {
            self.receiving.store(false, Ordering::SeqCst);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serve `app` on `listener` until `shutdown` is cancelled, then drain for at most
/// `limits.drain`. Returns when every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let connections = Arc::new(Connections::default());
    let draining = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut next_id: u64 = 0;
    let mut accept_errors: u64 = 0;
    loop {
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: wait a
                    // moment rather than spin.
                    accept_errors += 1;
                    if accept_errors.is_power_of_two() {
                        warn!(errors = accept_errors, "cannot accept a connection: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if connections.len() >= limits.max_connections && !connections.evict_oldest_idle() {
            debug!("every connection is busy; closing a new one");
            continue;
        }
        next_id += 1;
        let id = next_id;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let receiving = Arc::new(AtomicBool::new(false));
        let close = CancellationToken::new();
        lock(&connections.open).insert(
            id,
            Tracked {
                in_flight: in_flight.clone(),
                receiving: receiving.clone(),
                close: close.clone(),
            },
        );
        let app = app.clone();
        let connections = connections.clone();
        let draining = draining.clone();
        tasks.spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                let guard = InFlight::enter(&in_flight);
                req.extensions_mut().insert(ConnectInfo(peer));
                receiving.store(
                    !hyper::body::Body::is_end_stream(req.body()),
                    Ordering::SeqCst,
                );
                let receiving = receiving.clone();
                let req = req.map(|inner| axum::body::Body::new(Watched { inner, receiving }));
                let call = app.clone().oneshot(req);
                async move {
                    let response = call.await;
                    drop(guard);
                    Ok::<_, Infallible>(response.unwrap_or_else(|e| match e {}))
                }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = close.cancelled() => {}
                _ = draining.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            lock(&connections.open).remove(&id);
        });
    }
    drop(listener);
    draining.cancel();
    if tokio::time::timeout(limits.drain, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        debug!(
            left = tasks.len(),
            "drain over; dropping the connections still open"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    Ok(())
}
