//! `MessageGroupId` and `MessageDeduplicationId` values. SQS takes 1 to 128 characters of
//! printable ASCII without the space; anything else (a 300-character key, a key with a space
//! or non-ASCII bytes) is replaced by a digest of its bytes, `sha256-` and 64 hex digits, so
//! that the same input always maps to the same id and distinct inputs stay distinct.

use sha2::{Digest, Sha256};

/// The longest group or deduplication id SQS accepts.
pub const SQS_MAX_ID_LEN: usize = 128;

/// `raw` as an id SQS accepts, or its digest.
pub fn sqs_id(raw: &[u8]) -> String {
    if is_valid_sqs_id(raw) {
        // Valid ids are ASCII, so this never replaces a byte.
        return String::from_utf8_lossy(raw).into_owned();
    }
    digest_id(raw)
}

/// `text` itself when SQS accepts it as an id, or its digest; [`sqs_id`] without a copy.
pub fn into_sqs_id(text: String) -> String {
    if is_valid_sqs_id(text.as_bytes()) {
        text
    } else {
        digest_id(text.as_bytes())
    }
}

/// Appends `value` in decimal.
pub fn push_decimal(text: &mut String, value: i64) {
    text.push_str(itoa::Buffer::new().format(value));
}

/// `sha256-<64 hex digits>` of `raw`.
pub fn digest_id(raw: &[u8]) -> String {
    let digest = Sha256::digest(raw);
    let mut id = String::with_capacity(7 + 64);
    id.push_str("sha256-");
    push_hex(&mut id, &digest);
    id
}

/// Appends `bytes` to `text` as lowercase hex digits.
pub fn push_hex(text: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
}

/// 1 to 128 characters, each alphanumeric or one of SQS's punctuation marks: that is every
/// printable ASCII character except the space.
pub fn is_valid_sqs_id(raw: &[u8]) -> bool {
    !raw.is_empty() && raw.len() <= SQS_MAX_ID_LEN && raw.iter().all(|b| (0x21..=0x7e).contains(b))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn hex_digits_are_lowercase_and_high_nibble_first() {
        let mut text = String::from("x");
        push_hex(&mut text, &[0x00, 0x0f, 0xa5, 0xff]);
        assert_eq!(text, "x000fa5ff");
    }

    #[test]
    fn decimals_match_the_formatter() {
        for value in [0, 7, 10, 99, 1_234_567, -1, -40, i64::MAX, i64::MIN] {
            let mut text = String::from("x");
            push_decimal(&mut text, value);
            assert_eq!(text, format!("x{value}"));
        }
    }

    #[test]
    fn an_owned_id_is_kept_or_digested_like_a_borrowed_one() {
        for raw in ["topic:0:12", "with space", &"t".repeat(129)] {
            assert_eq!(into_sqs_id(raw.to_owned()), sqs_id(raw.as_bytes()));
        }
    }

    #[test]
    fn valid_key_is_kept() {
        assert_eq!(
            sqs_id(b"70-B3-D5-32-6B-00-08-8E"),
            "70-B3-D5-32-6B-00-08-8E"
        );
        assert_eq!(
            sqs_id(b"a!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~z"),
            "a!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~z"
        );
    }

    #[test]
    fn long_key_becomes_a_stable_digest() {
        let key = "k".repeat(300);
        let id = sqs_id(key.as_bytes());
        assert_eq!(id.len(), 71);
        assert!(id.starts_with("sha256-"));
        assert_eq!(id, sqs_id(key.as_bytes()));
        assert_ne!(id, sqs_id("k".repeat(301).as_bytes()));
    }

    #[test]
    fn key_of_128_is_kept_and_129_is_digested() {
        assert_eq!(sqs_id("a".repeat(128).as_bytes()).len(), 128);
        assert!(sqs_id("a".repeat(129).as_bytes()).starts_with("sha256-"));
    }

    #[test]
    fn refused_characters_are_digested() {
        for key in [&b"with space"[..], "caf\u{e9}".as_bytes(), b"\x00\x01", b""] {
            assert!(sqs_id(key).starts_with("sha256-"), "{key:?}");
        }
    }

    proptest! {
        #[test]
        fn every_id_is_valid(raw in proptest::collection::vec(any::<u8>(), 0..400)) {
            prop_assert!(is_valid_sqs_id(sqs_id(&raw).as_bytes()));
        }
    }
}
