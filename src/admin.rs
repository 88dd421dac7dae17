//! The admin HTTP server: `/metrics` in the Prometheus text format, `/healthz` and `/readyz`.
//! It serves nothing else.
//!
//! - `/healthz` answers 200 while every destination's loop has turned within the last
//!   [`STALL_AFTER`]; a loop turns at least once per commit interval, so a failure means the
//!   process is wedged and a restart can help.
//! - `/readyz` answers 200 once every destination's consumer has joined its group (received
//!   an assignment, even an empty one), while no destination's queue refuses requests as a
//!   whole and none has failed every request for `admin.unready_after_failing_ms`. A slow queue, or one
//!   that throttles now and then, keeps it ready: restarting would not help that.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// A loop silent for longer than this is considered stalled.
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// Liveness and readiness of one destination, updated by its loop.
#[derive(Debug, Default)]
pub struct DestinationHealth {
    last_turn_ms: AtomicU64,
    joined: AtomicBool,
    refused: AtomicBool,
    /// When the current run of failed requests began; 0 while requests succeed.
    failing_since_ms: AtomicU64,
}

impl DestinationHealth {
    pub fn turned(&self) {
        self.last_turn_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn set_joined(&self) {
        self.joined.store(true, Ordering::Relaxed);
    }

    pub fn set_refused(&self, refused: bool) {
        self.refused.store(refused, Ordering::Relaxed);
    }

    /// A request reached SQS and was answered.
    pub fn request_succeeded(&self) {
        self.failing_since_ms.store(0, Ordering::Relaxed);
    }

    /// A request failed as a whole.
    pub fn request_failed(&self) {
        let _ = self.failing_since_ms.compare_exchange(
            0,
            now_ms(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn failing_for_ms(&self, now: u64) -> u64 {
        let since = self.failing_since_ms.load(Ordering::Relaxed);
        if since == 0 {
            0
        } else {
            now.saturating_sub(since)
        }
    }
}

/// The health of every destination, by name.
#[derive(Debug, Default)]
pub struct Health {
    destinations: Mutex<BTreeMap<String, Arc<DestinationHealth>>>,
    unready_after_failing_ms: AtomicU64,
}

impl Health {
    pub fn global() -> Arc<Health> {
        static GLOBAL: OnceLock<Arc<Health>> = OnceLock::new();
        Arc::clone(GLOBAL.get_or_init(Arc::default))
    }

    /// How long every request of a destination may fail before it counts as not ready.
    pub fn set_unready_after_failing(&self, after: Duration) {
        self.unready_after_failing_ms
            .store(after.as_millis() as u64, Ordering::Relaxed);
    }

    /// The health record of `destination`, created on first use.
    pub fn destination(&self, destination: &str) -> Arc<DestinationHealth> {
        let mut map = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
        let health = map.entry(destination.to_owned()).or_insert_with(|| {
            let health = DestinationHealth::default();
            health.turned();
            Arc::new(health)
        });
        Arc::clone(health)
    }

    /// `Ok` with a summary, or `Err` naming what is wrong.
    fn live(&self) -> Result<String, String> {
        let map = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let stalled: Vec<&str> = map
            .iter()
            .filter(|(_, h)| {
                now.saturating_sub(h.last_turn_ms.load(Ordering::Relaxed))
                    > STALL_AFTER.as_millis() as u64
            })
            .map(|(name, _)| name.as_str())
            .collect();
        if stalled.is_empty() {
            Ok("ok\n".into())
        } else {
            Err(format!("stalled: {}\n", stalled.join(",")))
        }
    }

    fn ready(&self) -> Result<String, String> {
        let map = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
        if map.is_empty() {
            return Err("no destination started yet\n".into());
        }
        let mut problems = Vec::new();
        let now = now_ms();
        let limit = self.unready_after_failing_ms.load(Ordering::Relaxed);
        for (name, h) in map.iter() {
            if !h.joined.load(Ordering::Relaxed) {
                problems.push(format!("{name}: not in its consumer group yet"));
            }
            if h.refused.load(Ordering::Relaxed) {
                problems.push(format!("{name}: the queue refuses requests"));
            } else if h.failing_for_ms(now) > limit {
                problems.push(format!("{name}: every request failed for over {limit} ms"));
            }
        }
        if problems.is_empty() {
            Ok("ready\n".into())
        } else {
            Err(problems.join("\n") + "\n")
        }
    }
}

/// Binds the admin address; failing here stops the bridge before it reads anything.
pub async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(listen).await?;
    let local: SocketAddr = listener.local_addr()?;
    info!(address = %local, "admin server listening");
    Ok(listener)
}

/// Serves the admin endpoints until shutdown.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait() => return,
        };
        let (stream, _) = match accepted {
            Ok(connection) => connection,
            Err(error) => {
                debug!(%error, "admin accept failed");
                continue;
            }
        };
        let health = Arc::clone(&health);
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(&request, &health, &metrics);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%error, "admin connection ended with an error");
            }
        });
    }
}

fn respond(
    request: &Request<Incoming>,
    health: &Health,
    metrics: &Metrics,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics.render());
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => verdict(health.live()),
        "/readyz" => verdict(health.ready()),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn verdict(result: Result<String, String>) -> Response<Full<Bytes>> {
    match result {
        Ok(body) => text(StatusCode::OK, body),
        Err(body) => text(StatusCode::SERVICE_UNAVAILABLE, body),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
