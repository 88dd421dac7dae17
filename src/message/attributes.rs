//! Kafka headers as SQS message attributes. SQS allows ten attributes per message, names of
//! up to 256 characters of `[A-Za-z0-9_.-]` that neither start with `AWS.` or `Amazon.` nor
//! hold `..`, and no empty values. A header that cannot become an attribute is left out of the
//! attributes (the record itself is still sent) and the reason is returned to be counted.

use bytes::Bytes;

use super::body::is_sqs_text;
use crate::record::Header;

/// SQS's limit of attributes per message.
pub const SQS_MAX_ATTRIBUTES: usize = 10;
const SQS_MAX_ATTRIBUTE_NAME: usize = 256;

/// A message attribute value: text when SQS accepts it as text, binary otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttributeValue {
    String(String),
    Binary(Bytes),
}

impl AttributeValue {
    /// The SQS data type, which counts toward the message size.
    pub fn data_type(&self) -> &'static str {
        match self {
            Self::String(_) => "String",
            Self::Binary(_) => "Binary",
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::String(s) => s.len(),
            Self::Binary(b) => b.len(),
        }
    }
}

/// One message attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: AttributeValue,
}

impl Attribute {
    /// Bytes this attribute adds to the message size: name, data type and value.
    pub fn size(&self) -> usize {
        self.name.len() + self.value.data_type().len() + self.value.len()
    }
}

/// Why a header was left out of the attributes; a bounded metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DroppedHeader {
    InvalidName,
    ReservedName,
    DuplicateName,
    EmptyValue,
    TooMany,
    MessageTooLarge,
}

impl DroppedHeader {
    pub fn as_label(self) -> &'static str {
        match self {
            Self::InvalidName => "invalid_name",
            Self::ReservedName => "reserved_name",
            Self::DuplicateName => "duplicate_name",
            Self::EmptyValue => "empty_value",
            Self::TooMany => "too_many",
            Self::MessageTooLarge => "message_too_large",
        }
    }
}

/// Attributes for `headers`, leaving room for `reserved` attributes of the bridge's own,
/// whose names are in `reserved_names`. Returns the attributes and the reasons for what was
/// left out.
pub fn headers_to_attributes(
    headers: &[Header],
    reserved: usize,
    reserved_names: &[&str],
) -> (Vec<Attribute>, Vec<DroppedHeader>) {
    let room = SQS_MAX_ATTRIBUTES.saturating_sub(reserved);
    let mut attributes: Vec<Attribute> = Vec::new();
    let mut dropped = Vec::new();
    for header in headers {
        let verdict = if !is_valid_attribute_name(&header.name) {
            Err(DroppedHeader::InvalidName)
        } else if reserved_names
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&header.name))
        {
            Err(DroppedHeader::ReservedName)
        } else if attributes.iter().any(|a| a.name == header.name) {
            Err(DroppedHeader::DuplicateName)
        } else if header.value.as_ref().is_none_or(Bytes::is_empty) {
            Err(DroppedHeader::EmptyValue)
        } else if attributes.len() == room {
            Err(DroppedHeader::TooMany)
        } else {
            Ok(())
        };
        match verdict {
            Ok(()) => {
                let value = header.value.clone().expect("checked above");
                attributes.push(Attribute {
                    name: header.name.clone(),
                    value: attribute_value(value),
                });
            }
            Err(reason) => dropped.push(reason),
        }
    }
    (attributes, dropped)
}

fn attribute_value(value: Bytes) -> AttributeValue {
    match std::str::from_utf8(&value) {
        Ok(text) if is_sqs_text(text) => AttributeValue::String(text.to_owned()),
        _ => AttributeValue::Binary(value),
    }
}

/// SQS's rules for attribute names.
pub fn is_valid_attribute_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.is_empty()
        && name.len() <= SQS_MAX_ATTRIBUTE_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &[u8]) -> Header {
        Header {
            name: name.to_owned(),
            value: Some(Bytes::copy_from_slice(value)),
        }
    }

    #[test]
    fn text_and_binary_headers_become_attributes() {
        let (attrs, dropped) = headers_to_attributes(
            &[header("source", b"gateway-7"), header("sig", b"\x00\xff")],
            0,
            &[],
        );
        assert!(dropped.is_empty());
        assert_eq!(attrs[0].value, AttributeValue::String("gateway-7".into()));
        assert_eq!(
            attrs[1].value,
            AttributeValue::Binary(Bytes::from_static(b"\x00\xff"))
        );
        assert_eq!(
            attrs[0].size(),
            "source".len() + "String".len() + "gateway-7".len()
        );
    }

    #[test]
    fn what_sqs_refuses_is_dropped_with_a_reason() {
        let headers = [
            header("AWS.trace", b"x"),
            header("has space", b"x"),
            header("a..b", b"x"),
            header("ok", b""),
            Header {
                name: "null".into(),
                value: None,
            },
            header("dup", b"1"),
            header("dup", b"2"),
            header("Body-Encoding", b"x"),
        ];
        let (attrs, dropped) = headers_to_attributes(&headers, 1, &["body-encoding"]);
        assert_eq!(attrs.len(), 1);
        assert_eq!(
            dropped,
            vec![
                DroppedHeader::InvalidName,
                DroppedHeader::InvalidName,
                DroppedHeader::InvalidName,
                DroppedHeader::EmptyValue,
                DroppedHeader::EmptyValue,
                DroppedHeader::DuplicateName,
                DroppedHeader::ReservedName,
            ]
        );
    }

    #[test]
    fn at_most_ten_attributes_counting_the_reserved_ones() {
        let headers: Vec<Header> = (0..12).map(|i| header(&format!("h{i}"), b"v")).collect();
        let (attrs, dropped) = headers_to_attributes(&headers, 1, &[]);
        assert_eq!(attrs.len(), 9);
        assert_eq!(dropped, vec![DroppedHeader::TooMany; 3]);
    }
}
