use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;

use super::*;
use crate::config::values::{JsonPointer, QueueUrl};
use crate::config::{BatchConfig, DeliveryConfig};
use crate::record::Header;

fn destination(queue: &str, message: MessageConfig) -> DestinationConfig {
    DestinationConfig {
        name: "d".to_owned().try_into().unwrap(),
        queue_url: QueueUrl::try_from(format!("https://sqs.eu-west-1.amazonaws.com/1/{queue}"))
            .unwrap(),
        endpoint_url: None,
        ca_bundle_file: None,
        region: None,
        topics: None,
        filter: None,
        message,
        batch: BatchConfig::default(),
        delivery: DeliveryConfig::default(),
        credentials: Default::default(),
    }
}

fn record(key: Option<&[u8]>, value: Option<&[u8]>) -> Record {
    Record {
        topic: Arc::from("records"),
        partition: 4,
        offset: 1234,
        timestamp_ms: Some(1),
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers: vec![Header {
            name: "source".into(),
            value: Some(Bytes::from_static(b"gw")),
        }],
    }
}

fn send(mapper: &MessageMapper, record: &Record) -> OutgoingMessage {
    match mapper.map(record, &Payload::of(record)) {
        Ok(Mapping::Send { message, .. }) => message,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn fifo_defaults_key_as_group_and_coordinates_as_dedup_id() {
    let mapper = MessageMapper::new(&destination("q.fifo", MessageConfig::default()));
    let message = send(&mapper, &record(Some(b"dev-1"), Some(b"{\"t\":1}")));
    assert_eq!(message.group_id.as_deref(), Some("dev-1"));
    assert_eq!(message.deduplication_id.as_deref(), Some("records:4:1234"));
    assert_eq!(message.body, "{\"t\":1}");
    assert_eq!(message.attributes.len(), 1);
}

#[test]
fn keyless_record_groups_by_partition() {
    let mapper = MessageMapper::new(&destination("q.fifo", MessageConfig::default()));
    let a = send(&mapper, &record(None, Some(b"a")));
    let b = send(&mapper, &record(Some(b""), Some(b"b")));
    assert_eq!(a.group_id.as_deref(), Some("kafka-partition:records:4"));
    assert_eq!(a.group_id, b.group_id, "an empty key counts as no key");
}

#[test]
fn long_key_becomes_a_valid_group_id() {
    let mapper = MessageMapper::new(&destination("q.fifo", MessageConfig::default()));
    let key = "k".repeat(300);
    let message = send(&mapper, &record(Some(key.as_bytes()), Some(b"v")));
    let group = message.group_id.unwrap();
    assert!(ids::is_valid_sqs_id(group.as_bytes()));
    assert_eq!(group, ids::digest_id(key.as_bytes()));
}

#[test]
fn standard_queue_gets_no_ids_unless_asked() {
    let mapper = MessageMapper::new(&destination("plain", MessageConfig::default()));
    let message = send(&mapper, &record(Some(b"dev-1"), Some(b"v")));
    assert_eq!(message.group_id, None);
    assert_eq!(message.deduplication_id, None);

    let fair = MessageConfig {
        group_id: Some(GroupIdSource::Key),
        ..MessageConfig::default()
    };
    let message = send(
        &MessageMapper::new(&destination("plain", fair)),
        &record(Some(b"t1"), Some(b"v")),
    );
    assert_eq!(message.group_id.as_deref(), Some("t1"));
}

#[test]
fn refused_bytes_are_base64_with_the_marking_attribute() {
    let mapper = MessageMapper::new(&destination("q.fifo", MessageConfig::default()));
    let message = send(&mapper, &record(Some(b"k"), Some(b"\x00\x01raw")));
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&message.body)
            .unwrap(),
        b"\x00\x01raw"
    );
    let marker = &message.attributes[0];
    assert_eq!(marker.name, body::ENCODING_ATTRIBUTE);
    assert_eq!(marker.value, AttributeValue::String("base64".into()));
}

#[test]
fn tombstones_and_empty_values_are_skipped() {
    let mapper = MessageMapper::new(&destination("q.fifo", MessageConfig::default()));
    for value in [None, Some(&b""[..])] {
        let r = record(Some(b"k"), value);
        assert_eq!(
            mapper.map(&r, &Payload::of(&r)),
            Ok(Mapping::Skip(SkipReason::EmptyValue))
        );
    }
}

#[test]
fn tombstones_can_be_sent_in_an_envelope() {
    let config = MessageConfig {
        format: BodyFormat::Envelope,
        empty_values: EmptyValuePolicy::Send,
        ..MessageConfig::default()
    };
    let mapper = MessageMapper::new(&destination("q.fifo", config));
    let message = send(&mapper, &record(Some(b"k"), None));
    let parsed: serde_json::Value = serde_json::from_str(&message.body).unwrap();
    assert!(parsed["value"].is_null());
    assert_eq!(parsed["offset"], 1234);
}

#[test]
fn json_pointer_ids_and_their_absence() {
    let pointer = |p: &str| JsonPointer::try_from(p.to_owned()).unwrap();
    let config = MessageConfig {
        group_id: Some(GroupIdSource::JsonPointer(pointer(
            "/data/meta/iot/device_id",
        ))),
        deduplication_id: Some(DeduplicationIdSource::JsonPointer(pointer("/id"))),
        ..MessageConfig::default()
    };
    let mapper = MessageMapper::new(&destination("q.fifo", config));
    let value =
        br#"{"id":"6570a1c2e4b0f1a2b3c4d5e6","data":{"meta":{"iot":{"device_id":"58-A0-CB"}}}}"#;
    let message = send(&mapper, &record(None, Some(value)));
    assert_eq!(message.group_id.as_deref(), Some("58-A0-CB"));
    assert_eq!(
        message.deduplication_id.as_deref(),
        Some("6570a1c2e4b0f1a2b3c4d5e6")
    );

    let r = record(
        None,
        Some(br#"{"data":{"meta":{"iot":{"device_id":"x"}}}}"#),
    );
    let error = mapper.map(&r, &Payload::of(&r)).unwrap_err();
    assert_eq!(
        error,
        Unsendable::MissingDeduplicationId("JSON pointer \"/id\"".into())
    );
}

#[test]
fn oversized_record_is_unsendable_and_oversized_headers_are_dropped() {
    let mut d = destination("q.fifo", MessageConfig::default());
    d.batch.max_batch_bytes = 1_000u64.try_into().unwrap();
    let mapper = MessageMapper::new(&d);

    let big = vec![b'a'; 1_001];
    let r = record(Some(b"k"), Some(&big));
    assert!(matches!(
        mapper.map(&r, &Payload::of(&r)),
        Err(Unsendable::TooLarge {
            size: 1_015,
            limit: 1_000
        })
    ));

    let fits = vec![b'a'; 995];
    let r = record(Some(b"k"), Some(&fits));
    match mapper.map(&r, &Payload::of(&r)) {
        Ok(Mapping::Send {
            message,
            dropped_headers,
        }) => {
            assert!(message.attributes.is_empty());
            assert_eq!(dropped_headers, vec![DroppedHeader::MessageTooLarge]);
            assert!(message.size() <= 1_000);
        }
        other => panic!("{other:?}"),
    }
}
