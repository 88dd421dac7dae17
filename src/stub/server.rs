//! The stub's HTTP side: SQS's JSON protocol on `/`, and the control endpoints under
//! `/_stub/`.

// A refusal is a whole HTTP reply, carried in `Err` to be sent as it is; one per request,
// so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::faults::RequestFault;
use super::limits::{BatchRequest, Entry, Refusal, check_batch, check_entry};
use super::queue::{Admission, StoredMessage};
use super::{Faults, State};
use crate::message::ids::push_hex;
use crate::shutdown::Shutdown;

type Shared = Arc<Mutex<State>>;
type Reply = Response<Full<Bytes>>;

/// Returned instead of a reply to drop the connection, as a reset would.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

pub(super) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Shared,
    shutdown: Shutdown,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let state = Arc::clone(&state);
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return serve_connection(stream, state).await;
            };
            match tls.accept(stream).await {
                Ok(stream) => serve_connection(stream, state).await,
                // A client that refuses the certificate ends the handshake: counted, so that
                // a test can tell a refusal from a request that never came.
                Err(_) => lock(&state).stats.tls_handshakes_failed += 1,
            }
        });
    }
}

async fn serve_connection<S>(stream: S, state: Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| handle(request, Arc::clone(&state)));
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle(request: Request<Incoming>, state: Shared) -> Result<Reply, DropConnection> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let method = request.method().clone();
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let access_key = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .and_then(|v| v.split('/').next())
        .map(str::to_owned);
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(DropConnection),
    };
    if let Some(control) = path.strip_prefix("/_stub/") {
        return Ok(control_endpoint(&method, control, &query, &body, &state));
    }

    let action = target
        .strip_prefix("AmazonSQS.")
        .unwrap_or(&target)
        .to_owned();
    let (fault, delay, lose_reply) = {
        let mut state = lock(&state);
        state.concurrent_requests += 1;
        state.stats.peak_concurrent_requests = state
            .stats
            .peak_concurrent_requests
            .max(state.concurrent_requests);
        state.stats.requests += 1;
        state.stats.access_keys.extend(access_key);
        *state.stats.actions.entry(action.clone()).or_default() += 1;
        let delay = state.faults.delay();
        let mut fault = state.faults.next_request(&mut || rand::random::<f64>());
        if let Some(per_second) = state.faults.request_quota_per_second {
            if fault == RequestFault::None && !state.quota.admit(per_second, Instant::now()) {
                state.stats.over_quota += 1;
                fault = RequestFault::Throttle;
            }
        }
        let lose_reply = rand::random::<f64>() < state.faults.lose_reply_rate;
        (fault, delay, lose_reply)
    };
    let _in_progress = InProgress(Arc::clone(&state));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let refused = |status, code, query_code, message: &str| {
        lock(&state).stats.refused_requests += 1;
        error(status, code, query_code, message)
    };
    match fault {
        RequestFault::Reset => return Err(DropConnection),
        RequestFault::Throttle => {
            return Ok(refused(
                StatusCode::BAD_REQUEST,
                "RequestThrottled",
                "RequestThrottled",
                "rate exceeded",
            ));
        }
        RequestFault::ServerError => {
            return Ok(refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "InternalFailure",
                "injected failure",
            ));
        }
        RequestFault::None => {}
    }
    let reply = match action.as_str() {
        "SendMessageBatch" => send_batch(&body, &state).unwrap_or_else(|refusal| refusal),
        "SendMessage" => send_one(&body, &state).unwrap_or_else(|refusal| refusal),
        _ => refused(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "AccessDenied",
            &format!(
                "this principal may only call SendMessage and SendMessageBatch, not {action:?}"
            ),
        ),
    };
    if lose_reply {
        Err(DropConnection)
    } else {
        Ok(reply)
    }
}

/// Ends an SQS request's count in progress (begun when it was counted), however it ends.
struct InProgress(Shared);

impl Drop for InProgress {
    fn drop(&mut self) {
        lock(&self.0).concurrent_requests -= 1;
    }
}

/// The reply to a request that was read; `Err` holds a refusal of the whole request.
type Answer = Result<Reply, Reply>;

fn send_batch(body: &[u8], state: &Shared) -> Answer {
    let request: BatchRequest = parse(body)?;
    // The checks that need no state run before the lock is taken, as do the digests and
    // the reply below: a benchmark's stub shares the cores with the bridge it measures.
    let batch_refusal = check_batch(&request).err();
    let fifo = fifo_url(&request.queue_url);
    let checked: Vec<_> = request
        .entries
        .iter()
        .map(|e| check_entry(e, fifo))
        .collect();
    let fates = {
        let (mut state, queue) = open_queue(state, &request.queue_url)?;
        state.stats.entries += request.entries.len() as u64;
        bill(&mut state, request.entries.iter().map(Entry::size).sum());
        if let Some(refusal) = batch_refusal {
            state.stats.refused_requests += 1;
            return Err(refusal_reply(&refusal));
        }
        let fates: Vec<_> = request
            .entries
            .iter()
            .zip(checked)
            .map(
                |(entry, checked)| match entry_fate(&state.faults, entry, checked) {
                    Ok(()) => Ok(accept(&mut state, &queue, fifo, entry)),
                    Err(refused) => {
                        state.stats.failed_entries += 1;
                        Err(refused)
                    }
                },
            )
            .collect();
        fates
    };
    let mut reply = BatchReply::default();
    for (entry, fate) in request.entries.iter().zip(fates) {
        match fate {
            Ok(admission) => {
                let sent = Sent::of(Some(&entry.id), entry, admission, fifo);
                reply.successful.push(sent);
            }
            Err((refusal, sender_fault)) => reply.failed.push(EntryFailure {
                id: &entry.id,
                sender_fault,
                code: refusal.code,
                message: refusal.message,
            }),
        }
    }
    Ok(json_reply(StatusCode::OK, &reply))
}

fn send_one(body: &[u8], state: &Shared) -> Answer {
    let entry: Entry = parse(body)?;
    let fifo = fifo_url(&entry.queue_url);
    let checked = check_entry(&entry, fifo);
    let fate = {
        let (mut state, queue) = open_queue(state, &entry.queue_url)?;
        state.stats.entries += 1;
        bill(&mut state, entry.size());
        match entry_fate(&state.faults, &entry, checked) {
            Ok(()) => Ok(accept(&mut state, &queue, fifo, &entry)),
            Err((refusal, _)) => {
                state.stats.refused_requests += 1;
                Err(refusal)
            }
        }
    };
    match fate {
        Ok(admission) => {
            let sent = Sent::of(None, &entry, admission, fifo);
            Ok(json_reply(StatusCode::OK, &sent))
        }
        Err(refusal) => Err(refusal_reply(&refusal)),
    }
}

/// `SendMessageBatch`'s answer.
#[derive(Default, Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchReply<'a> {
    successful: Vec<Sent<'a>>,
    failed: Vec<EntryFailure<'a>>,
}

/// An accepted message, as a batch entry (with its `Id`) or as `SendMessage`'s answer.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Sent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    message_id: String,
    #[serde(rename = "MD5OfMessageBody")]
    md5_of_message_body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_number: Option<String>,
}

impl<'a> Sent<'a> {
    fn of(id: Option<&'a str>, entry: &Entry, admission: Admission, fifo: bool) -> Self {
        Self {
            id,
            message_id: admission.message_id.to_string(),
            md5_of_message_body: hex(&Md5::digest(entry.message_body.as_bytes())),
            sequence_number: fifo.then(|| format!("{:020}", admission.sequence_number)),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EntryFailure<'a> {
    id: &'a str,
    sender_fault: bool,
    code: &'static str,
    message: String,
}

/// The request body as `T`, or SQS's answer to JSON it cannot read.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "InvalidParameterValue",
            &e.to_string(),
        )
    })
}

/// The locked state for a send to `queue_url`, with the queue's name; or the refusal of a
/// queue the faults say is missing or refusing.
fn open_queue<'a>(
    state: &'a Shared,
    queue_url: &str,
) -> Result<(MutexGuard<'a, State>, String), Reply> {
    let mut state = lock(state);
    let queue = queue_url.rsplit('/').next().unwrap_or_default().to_owned();
    if let Some(refusal) = queue_refusal(&state.faults, &queue) {
        state.stats.refused_requests += 1;
        return Err(refusal);
    }
    Ok((state, queue))
}

/// Whether an entry is taken, or refused (and whether as a sender fault).
fn entry_fate(
    faults: &Faults,
    entry: &Entry,
    checked: Result<(), Refusal>,
) -> Result<(), (Refusal, bool)> {
    checked.map_err(|refusal| (refusal, true))?;
    if let Some(marker) = &faults.refuse_bodies_containing {
        if entry.message_body.contains(marker.as_str()) {
            let message = "the message contains characters outside the allowed set".to_owned();
            return Err((
                Refusal {
                    code: "InvalidMessageContents",
                    query_code: "InvalidMessageContents",
                    message,
                },
                true,
            ));
        }
    }
    if rand::random::<f64>() < faults.entry_fail_rate {
        let message = "injected entry failure".to_owned();
        return Err((
            Refusal {
                code: "InternalError",
                query_code: "InternalError",
                message,
            },
            false,
        ));
    }
    Ok(())
}

/// Admits an entry to its queue, and keeps it unless the stub discards messages.
fn accept(state: &mut State, queue: &str, fifo: bool, entry: &Entry) -> Admission {
    let State {
        queues,
        stats,
        discard_messages,
        ..
    } = state;
    let queue_state = match queues.get_mut(queue) {
        Some(existing) => existing,
        None => queues.entry(queue.to_owned()).or_default(),
    };
    let deduplication_id = entry.message_deduplication_id.as_deref().filter(|_| fifo);
    let admission = queue_state.admit(deduplication_id);
    stats.accepted += 1;
    if admission.duplicate {
        stats.deduplicated += 1;
        return admission;
    }
    if !*discard_messages {
        queue_state.messages.push(stored(entry, admission));
    }
    admission
}

fn stored(entry: &Entry, admission: Admission) -> StoredMessage {
    StoredMessage {
        message_id: admission.message_id.to_string(),
        body: entry.message_body.clone(),
        group_id: entry.message_group_id.clone(),
        deduplication_id: entry.message_deduplication_id.clone(),
        attributes: entry
            .message_attributes
            .iter()
            .map(|(name, a)| {
                let value = a
                    .string_value
                    .clone()
                    .or_else(|| a.binary_value.clone())
                    .unwrap_or_default();
                (name.clone(), a.data_type.clone(), value)
            })
            .collect(),
        sequence_number: admission.sequence_number,
        accepted_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    }
}

/// SQS bills every 64 KiB of a request as one request.
fn bill(state: &mut State, payload: usize) {
    state.stats.payload_bytes += payload as u64;
    state.stats.billed_requests += payload.div_ceil(64 * 1024).max(1) as u64;
}

fn fifo_url(url: &str) -> bool {
    url.ends_with(".fifo")
}

fn queue_refusal(faults: &Faults, queue: &str) -> Option<Reply> {
    if faults
        .missing_queues_containing
        .as_deref()
        .is_some_and(|m| queue.contains(m))
    {
        let message = "The specified queue does not exist.";
        return Some(error(
            StatusCode::BAD_REQUEST,
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            message,
        ));
    }
    if faults.deny_sends {
        return Some(error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "AccessDenied",
            "access to the queue is denied",
        ));
    }
    None
}

fn control_endpoint(
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
    state: &Shared,
) -> Reply {
    match (method, path) {
        (&Method::GET, "stats") => ok(serde_json::to_value(&lock(state).stats).unwrap_or_default()),
        (&Method::GET, "faults") => {
            ok(serde_json::to_value(&lock(state).faults).unwrap_or_default())
        }
        (&Method::PUT | &Method::POST, "faults") => match serde_json::from_slice::<Faults>(body) {
            Ok(faults) => {
                lock(state).faults = faults;
                ok(json!({}))
            }
            Err(e) => plain(StatusCode::BAD_REQUEST, &format!("faults: {e}\n")),
        },
        (&Method::GET, "messages") => {
            let queue = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("queue="))
                .unwrap_or_default();
            let state = lock(state);
            let messages = state
                .queues
                .get(queue)
                .map(|q| q.messages.clone())
                .unwrap_or_default();
            ok(serde_json::to_value(messages).unwrap_or_default())
        }
        _ => plain(StatusCode::NOT_FOUND, "unknown control endpoint\n"),
    }
}

fn refusal_reply(refusal: &Refusal) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        refusal.code,
        refusal.query_code,
        &refusal.message,
    )
}

fn error(status: StatusCode, code: &str, query_code: &str, message: &str) -> Reply {
    let fault = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let body = json!({ "__type": format!("com.amazonaws.sqs#{code}"), "message": message });
    let mut reply = json_reply(status, &body);
    if let Ok(value) = format!("{query_code};{fault}").parse() {
        reply.headers_mut().insert("x-amzn-query-error", value);
    }
    reply
}

fn ok(body: Value) -> Reply {
    json_reply(StatusCode::OK, &body)
}

fn json_reply(status: StatusCode, body: &impl Serialize) -> Reply {
    let text = serde_json::to_vec(body).expect("replies serialize");
    let mut reply = Response::new(Full::new(Bytes::from(text)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    reply
}

fn plain(status: StatusCode, text: &str) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(text.to_owned())));
    *reply.status_mut() = status;
    reply
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    push_hex(&mut text, bytes);
    text
}

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(deduplication_id: &str) -> Entry {
        let json = format!(
            r#"{{"Id": "0", "MessageBody": "b", "MessageGroupId": "g",
                "MessageDeduplicationId": "{deduplication_id}"}}"#
        );
        serde_json::from_str(&json).unwrap()
    }

    fn accept_three(discard_messages: bool) -> State {
        let mut state = State {
            discard_messages,
            ..State::default()
        };
        for id in ["d1", "d2", "d1"] {
            accept(&mut state, "q.fifo", true, &entry(id));
        }
        state
    }

    #[test]
    fn discarding_keeps_counts_depth_and_deduplication_but_no_messages() {
        let state = accept_three(true);
        let queue = &state.queues["q.fifo"];
        assert_eq!(queue.depth, 2);
        assert!(queue.messages.is_empty());
        assert_eq!(state.stats.accepted, 3);
        assert_eq!(state.stats.deduplicated, 1);
    }

    #[test]
    fn kept_messages_carry_their_sequence_numbers_in_order() {
        let state = accept_three(false);
        let queue = &state.queues["q.fifo"];
        assert_eq!(queue.depth, 2);
        let kept: Vec<(Option<&str>, u64)> = queue
            .messages
            .iter()
            .map(|m| (m.deduplication_id.as_deref(), m.sequence_number))
            .collect();
        assert_eq!(kept, vec![(Some("d1"), 1), (Some("d2"), 2)]);
    }
}
