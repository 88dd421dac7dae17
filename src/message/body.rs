//! Message bodies. SQS takes a body as text, and refuses characters outside
//! `#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF`; a value that is not such text is
//! sent base64-encoded, and the message says so in an attribute.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use bytestring::ByteString;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::record::Record;

/// The attribute that marks a base64-encoded body; its value is `base64`.
pub const ENCODING_ATTRIBUTE: &str = "body-encoding";

/// A body and whether it had to be base64-encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body {
    /// Shares the record's bytes when the value is sent as it is.
    pub text: ByteString,
    pub base64: bool,
}

/// The value as it is when SQS accepts it as text, base64 otherwise. `value` is not empty.
pub fn raw_body(value: &Bytes) -> Body {
    match ByteString::try_from(value.clone()) {
        Ok(text) if is_sqs_text(&text) => Body {
            text,
            base64: false,
        },
        _ => Body {
            text: BASE64.encode(value).into(),
            base64: true,
        },
    }
}

/// A JSON envelope around the record. Always SQS text: JSON escapes control characters, and
/// a value that would bring in a refused character is carried as base64.
pub fn envelope_body(record: &Record) -> Body {
    let key = record.key.as_deref().map(EncodedBytes::of);
    let value = record.value.as_deref().map(EnvelopeValue::of);
    let headers = record
        .headers
        .iter()
        .map(|h| EnvelopeHeader {
            name: &h.name,
            value: h.value.as_deref().map(EncodedBytes::of),
        })
        .collect();
    let envelope = Envelope {
        topic: &record.topic,
        partition: record.partition,
        offset: record.offset,
        timestamp_ms: record.timestamp_ms,
        key,
        headers,
        value,
    };
    let text = serde_json::to_string(&envelope).expect("an envelope always serializes");
    if is_sqs_text(&text) {
        Body {
            text: text.into(),
            base64: false,
        }
    } else {
        // Only a header name can still hold U+FFFE or U+FFFF here.
        Body {
            text: BASE64.encode(text).into(),
            base64: true,
        }
    }
}

/// True when every character of `text` is one SQS accepts in a body.
pub fn is_sqs_text(text: &str) -> bool {
    // Valid UTF-8 holds no surrogates, so only the C0 controls and U+FFFE/U+FFFF remain.
    // Bytes from 0x20 to 0xEE cannot start either; checking that without branches lets the
    // compiler use vector instructions, and most texts need nothing more.
    let bytes = text.as_bytes();
    let plain = bytes
        .iter()
        .fold(true, |plain, &b| plain & (0x20..0xef).contains(&b));
    plain
        || bytes.iter().enumerate().all(|(i, &b)| match b {
            b'\t' | b'\n' | b'\r' => true,
            0..0x20 => false,
            // U+FFFE and U+FFFF are EF BF BE and EF BF BF, and nothing else encodes so.
            0xef => !matches!(bytes.get(i + 1..i + 3), Some([0xbf, 0xbe | 0xbf])),
            _ => true,
        })
}

#[derive(Serialize)]
struct Envelope<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<EncodedBytes<'a>>,
    headers: Vec<EnvelopeHeader<'a>>,
    value: Option<EnvelopeValue<'a>>,
}

#[derive(Serialize)]
struct EnvelopeHeader<'a> {
    name: &'a str,
    value: Option<EncodedBytes<'a>>,
}

/// Text as a JSON string, anything else as `{"base64": "..."}`.
#[derive(Serialize)]
#[serde(untagged)]
enum EncodedBytes<'a> {
    Text(&'a str),
    Base64 { base64: String },
}

impl<'a> EncodedBytes<'a> {
    fn of(bytes: &'a [u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) if is_sqs_text(text) => Self::Text(text),
            _ => Self::Base64 {
                base64: BASE64.encode(bytes),
            },
        }
    }
}

/// A JSON value is embedded as JSON, so that consumers need not parse it twice.
#[derive(Serialize)]
#[serde(untagged)]
enum EnvelopeValue<'a> {
    Json(&'a RawValue),
    Other(EncodedBytes<'a>),
}

impl<'a> EnvelopeValue<'a> {
    fn of(bytes: &'a [u8]) -> Self {
        let json = std::str::from_utf8(bytes)
            .ok()
            .filter(|text| is_sqs_text(text))
            .and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
        match json {
            Some(raw) => Self::Json(raw),
            None => Self::Other(EncodedBytes::of(bytes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::record::Header;

    #[test]
    fn text_is_kept_as_it_is() {
        let body = raw_body(&Bytes::from("{\"t\": 21.5, \"unit\": \"°C\"}\n"));
        assert_eq!(
            body,
            Body {
                text: "{\"t\": 21.5, \"unit\": \"°C\"}\n".into(),
                base64: false
            }
        );
    }

    #[test]
    fn refused_bytes_become_base64() {
        for value in [&b"a\x01b"[..], b"\xff\xfe", "x\u{ffff}".as_bytes(), b"\x00"] {
            let body = raw_body(&Bytes::copy_from_slice(value));
            assert!(body.base64, "{value:?}");
            assert_eq!(BASE64.decode(&body.text).unwrap(), value);
        }
    }

    #[test]
    fn envelope_carries_the_coordinates_and_embeds_json() {
        let record = Record {
            topic: Arc::from("records"),
            partition: 3,
            offset: 42,
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(Bytes::from_static(b"dev-1")),
            value: Some(Bytes::from_static(b"{\"id\":\"r1\"}")),
            headers: vec![Header {
                name: "bin".into(),
                value: Some(Bytes::from_static(b"\x01")),
            }],
        };
        let body = envelope_body(&record);
        let parsed: serde_json::Value = serde_json::from_str(&body.text).unwrap();
        assert_eq!(parsed["partition"], 3);
        assert_eq!(parsed["offset"], 42);
        assert_eq!(parsed["key"], "dev-1");
        assert_eq!(parsed["value"]["id"], "r1");
        assert_eq!(parsed["headers"][0]["value"]["base64"], "AQ==");
        assert!(is_sqs_text(&body.text));
    }

    #[test]
    fn envelope_of_a_tombstone_has_a_null_value() {
        let record = Record {
            topic: Arc::from("t"),
            partition: 0,
            offset: 1,
            timestamp_ms: None,
            key: None,
            value: None,
            headers: vec![],
        };
        let parsed: serde_json::Value = serde_json::from_str(&envelope_body(&record).text).unwrap();
        assert!(parsed["value"].is_null());
    }

    proptest! {
        #[test]
        fn every_raw_body_is_sqs_text(value in proptest::collection::vec(any::<u8>(), 1..200)) {
            let body = raw_body(&Bytes::copy_from_slice(&value));
            prop_assert!(is_sqs_text(&body.text));
            let back = if body.base64 {
                BASE64.decode(&body.text).unwrap()
            } else {
                body.text.into_bytes().to_vec()
            };
            prop_assert_eq!(back, value);
        }

        /// The byte scan says what SQS's character ranges say, for any text.
        #[test]
        fn sqs_text_is_sqs_character_ranges(text in any::<String>(), special in 0usize..8) {
            // Random strings seldom hold the characters at the edges of the ranges.
            const EDGES: [char; 8] = [
                '\u{fffe}', '\u{ffff}', '\u{fffd}', '\u{ef}', '\u{1}', '\t', '\u{7f}', '\u{10ffff}',
            ];
            let mut text = text;
            text.push(EDGES[special]);
            let allowed = text.chars().all(|c| {
                matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
                    || c >= '\u{10000}'
            });
            prop_assert_eq!(is_sqs_text(&text), allowed, "{:?}", text);
        }
    }
}
