//! Reading values out of a record (its key, a header, or a value inside its JSON payload)
//! and the destination filter built on them. The payload is parsed at most once per record,
//! and only when a JSON pointer asks for it.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::OnceLock;

use crate::config::{FilterConfig, ValueSource};
use crate::record::Record;

/// A record's value, parsed as JSON on first use.
pub struct Payload<'a> {
    value: Option<&'a [u8]>,
    parsed: OnceLock<Option<serde_json::Value>>,
}

impl<'a> Payload<'a> {
    pub fn of(record: &'a Record) -> Self {
        Self {
            value: record.value.as_deref(),
            parsed: OnceLock::new(),
        }
    }

    /// The value at `pointer` as text: strings as they are, numbers and booleans as JSON,
    /// objects and arrays as compact JSON. `None` when the payload is not JSON, the pointer
    /// does not resolve, or the value is null.
    pub fn pointer(&self, pointer: &str) -> Option<Cow<'_, str>> {
        let parsed = self
            .parsed
            .get_or_init(|| self.value.and_then(|v| serde_json::from_slice(v).ok()))
            .as_ref()?;
        match parsed.pointer(pointer)? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(Cow::Borrowed(s)),
            other => Some(Cow::Owned(other.to_string())),
        }
    }
}

/// The bytes `source` names in `record`, if present and not empty.
pub fn read_source<'a>(
    source: &ValueSource,
    record: &'a Record,
    payload: &'a Payload<'_>,
) -> Option<Cow<'a, [u8]>> {
    let found: Option<Cow<'a, [u8]>> = match source {
        ValueSource::Key => record.key.as_deref().map(Cow::Borrowed),
        ValueSource::Header(name) => record
            .header(name)
            .and_then(|h| h.value.as_deref())
            .map(Cow::Borrowed),
        ValueSource::JsonPointer(pointer) => {
            payload.pointer(pointer.as_str()).map(|text| match text {
                Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            })
        }
    };
    found.filter(|bytes| !bytes.is_empty())
}

/// Describes a source for error messages: `key`, `header "x"`, `JSON pointer "/id"`.
pub fn describe_source(source: &ValueSource) -> String {
    match source {
        ValueSource::Key => "the record key".to_owned(),
        ValueSource::Header(name) => format!("header {name:?}"),
        ValueSource::JsonPointer(pointer) => format!("JSON pointer {:?}", pointer.as_str()),
    }
}

/// Which records a destination takes.
pub struct RecordFilter {
    source: ValueSource,
    accepted: HashSet<Box<[u8]>>,
}

impl RecordFilter {
    pub fn new(config: &FilterConfig) -> Self {
        let accepted = config.equals.iter().map(|v| v.as_bytes().into()).collect();
        Self {
            source: config.source.clone(),
            accepted,
        }
    }

    /// True when the record's value at the filter's source is one of the accepted values.
    pub fn selects(&self, record: &Record, payload: &Payload<'_>) -> bool {
        read_source(&self.source, record, payload).is_some_and(|v| self.accepted.contains(&*v))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::config::values::JsonPointer;
    use crate::record::Header;

    fn record(value: &str) -> Record {
        Record {
            topic: Arc::from("t"),
            partition: 0,
            offset: 0,
            timestamp_ms: None,
            key: Some(Bytes::from_static(b"dev-1")),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![Header {
                name: "tenant".into(),
                value: Some(Bytes::from_static(b"acme")),
            }],
        }
    }

    fn pointer(p: &str) -> ValueSource {
        ValueSource::JsonPointer(JsonPointer::try_from(p.to_owned()).unwrap())
    }

    #[test]
    fn pointer_reads_strings_numbers_and_misses() {
        let r = record(r#"{"id":"abc","n":7,"nested":{"a":[1]},"nothing":null}"#);
        let p = Payload::of(&r);
        assert_eq!(p.pointer("/id").as_deref(), Some("abc"));
        assert_eq!(p.pointer("/n").as_deref(), Some("7"));
        assert_eq!(p.pointer("/nested").as_deref(), Some(r#"{"a":[1]}"#));
        assert_eq!(p.pointer("/nothing"), None);
        assert_eq!(p.pointer("/absent"), None);
    }

    #[test]
    fn pointer_into_a_non_json_value_is_none() {
        let r = record("not json");
        assert_eq!(Payload::of(&r).pointer("/id"), None);
    }

    #[test]
    fn filter_selects_by_key_header_or_pointer() {
        let r = record(r#"{"creatorId":"ops@customer-a.example"}"#);
        let p = Payload::of(&r);
        let by = |source: ValueSource, value: &str| {
            RecordFilter::new(&FilterConfig {
                source,
                equals: vec![value.to_owned()],
            })
            .selects(&r, &p)
        };
        assert!(by(ValueSource::Key, "dev-1"));
        assert!(!by(ValueSource::Key, "dev-2"));
        assert!(by(ValueSource::Header("tenant".into()), "acme"));
        assert!(!by(ValueSource::Header("absent".into()), "acme"));
        assert!(by(pointer("/creatorId"), "ops@customer-a.example"));
        assert!(!by(pointer("/creatorId"), "ops@customer-b.example"));
    }
}
