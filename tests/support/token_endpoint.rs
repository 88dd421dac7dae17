//! An OAuth 2.0 token endpoint for the client-credentials grant, enough for librdkafka's
//! OIDC login: it hands out one fixed token to one client and refuses everyone else.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;

pub struct TokenEndpoint {
    pub url: String,
    granted: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

impl TokenEndpoint {
    /// Serves `token` to requests authenticated as `client_id` with `secret` (HTTP Basic, as
    /// RFC 6749 section 2.3.1 has it), on a free loopback port, until the process ends.
    pub fn start(client_id: &str, secret: &str, token: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/oauth2/token", listener.local_addr().unwrap());
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
        let expected = format!("basic {credentials}");
        let granted = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (granted_count, refused_count) = (Arc::clone(&granted), Arc::clone(&refused));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let authorised = answer(stream, &expected, &token);
                let counter = if authorised {
                    &granted_count
                } else {
                    &refused_count
                };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self {
            url,
            granted,
            refused,
        }
    }

    pub fn granted(&self) -> usize {
        self.granted.load(Ordering::SeqCst)
    }

    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

/// Reads one request and answers it; returns whether the client was the expected one.
fn answer(stream: TcpStream, expected_authorization: &str, token: &str) -> bool {
    let mut reader = BufReader::new(stream);
    let mut authorised = false;
    let mut length = 0;
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
        let lower = line.trim_end().to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("authorization:") {
            // Compared lowercased, so the base64 is matched without regard to case; enough
            // to tell the right secret from a planted wrong one.
            authorised = value.trim() == expected_authorization.to_ascii_lowercase();
        }
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        line.clear();
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);

    let (status, reply) = if authorised {
        let reply = serde_json::json!({
            "access_token": token, "token_type": "Bearer", "expires_in": 3600,
        });
        ("200 OK", reply)
    } else {
        (
            "401 Unauthorized",
            serde_json::json!({ "error": "invalid_client" }),
        )
    };
    let reply = reply.to_string();
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = reader.get_mut().write_all(response.as_bytes());
    authorised
}
