//! A fault-injecting SQS endpoint for tests and benchmarks. It speaks the JSON protocol as
//! aws-sdk-sqs sends it, enforces SQS's limits (ten entries, 1 MiB per request, id and body
//! character rules, attribute rules, FIFO group and deduplication ids) and FIFO deduplication,
//! and on request throttles (at random, or above a request quota as SQS does), fails
//! requests, fails chosen entries inside a 200, adds delay and drops connections. Actions
//! other than `SendMessage` and `SendMessageBatch` are answered with `AccessDenied` and
//! recorded, as a least-privilege policy would.
//!
//! It keeps what it accepted in memory, per queue, for the tests to read (a benchmark tells
//! it to keep only counts); queues are created on first use. Out of process (`sqs-stub`
//! binary), `/_stub/stats`, `/_stub/faults` and `/_stub/messages` expose the same over HTTP.
//! It speaks plain HTTP, or HTTPS with a given certificate ([`SqsStub::start_tls`]).

mod faults;
mod limits;
mod queue;
mod quota;
mod server;
mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

pub use faults::Faults;
pub use queue::StoredMessage;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::shutdown::Shutdown;

/// Counters of what the stub was asked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Requests received, answered or not.
    pub requests: u64,
    /// Requests by action, including refused ones.
    pub actions: std::collections::BTreeMap<String, u64>,
    /// Entries of `SendMessageBatch` and messages of `SendMessage` received.
    pub entries: u64,
    pub accepted: u64,
    /// Accepted entries that FIFO deduplication dropped.
    pub deduplicated: u64,
    pub failed_entries: u64,
    pub refused_requests: u64,
    /// Bytes of message bodies and attributes received.
    pub payload_bytes: u64,
    /// Requests as SQS bills them: every 64 KiB of a request counts as one.
    pub billed_requests: u64,
    /// The access key ids requests were signed with.
    pub access_keys: std::collections::BTreeSet<String>,
    /// TLS handshakes that did not complete, as when the client refused the certificate.
    pub tls_handshakes_failed: u64,
    /// Requests throttled for the request quota.
    pub over_quota: u64,
    /// The most SQS requests in progress at once, delay included.
    pub peak_concurrent_requests: u64,
}

#[derive(Default)]
struct State {
    queues: std::collections::HashMap<String, queue::QueueState>,
    faults: Faults,
    quota: quota::RequestQuota,
    /// SQS requests in progress now.
    concurrent_requests: u64,
    stats: Stats,
    /// Keep no messages, only count and deduplicate them.
    discard_messages: bool,
}

/// A running stub.
pub struct SqsStub {
    address: SocketAddr,
    scheme: &'static str,
    state: Arc<Mutex<State>>,
    shutdown: Shutdown,
}

impl SqsStub {
    /// Starts a stub on `listen` (`127.0.0.1:0` picks a free port) with `faults`.
    pub async fn start(listen: &str, faults: Faults) -> std::io::Result<Self> {
        Self::start_with(listen, faults, None).await
    }

    /// Starts a stub that speaks HTTPS, presenting the PEM chain in `certificate_file` (leaf
    /// first) with the key in `key_file`.
    pub async fn start_tls(
        listen: &str,
        faults: Faults,
        certificate_file: &Path,
        key_file: &Path,
    ) -> std::io::Result<Self> {
        let acceptor = tls::acceptor(certificate_file, key_file)?;
        Self::start_with(listen, faults, Some(acceptor)).await
    }

    async fn start_with(
        listen: &str,
        faults: Faults,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            faults,
            ..State::default()
        }));
        let shutdown = Shutdown::new();
        let scheme = if tls.is_some() { "https" } else { "http" };
        tokio::spawn(server::serve(
            listener,
            tls,
            Arc::clone(&state),
            shutdown.clone(),
        ));
        Ok(Self {
            address,
            scheme,
            state,
            shutdown,
        })
    }

    /// The endpoint URL to configure, `http://127.0.0.1:PORT` (`https` with TLS).
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.address)
    }

    /// A queue URL on this endpoint; FIFO when `name` ends in `.fifo`.
    pub fn queue_url(&self, name: &str) -> String {
        format!("{}/000000000000/{name}", self.endpoint())
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Changes the faults in place.
    pub fn update_faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.lock().faults);
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// Stops keeping the messages it accepts; counting, FIFO deduplication and `depth` go on.
    /// A benchmark sends millions, which would otherwise fill the stub's memory and cost it
    /// the CPU that the bridge it measures shares.
    pub fn discard_messages(&self) {
        self.lock().discard_messages = true;
    }

    /// The messages a queue holds, in the order it accepted them (none once
    /// [`Self::discard_messages`] was called).
    pub fn messages(&self, queue: &str) -> Vec<StoredMessage> {
        self.lock()
            .queues
            .get(queue)
            .map(|q| q.messages.clone())
            .unwrap_or_default()
    }

    /// How many messages a queue took, duplicates not counted.
    pub fn depth(&self, queue: &str) -> usize {
        self.lock().queues.get(queue).map_or(0, |q| q.depth)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for SqsStub {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}
