//! Values that must never be printed: passwords, secret keys, private keys, external ids.
//! `Debug`, `Display` and `Serialize` all show a placeholder; only [`Secret::expose`] gives
//! the value, at the one place that hands it to a client library.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// What a secret shows instead of its value.
pub const REDACTED: &str = "**REDACTED**";

#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for a client library and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// librdkafka properties whose values are secrets, by name.
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("password")
        || name.contains("secret")
        || name.contains("jaas")
        || name.ends_with(".pem")
        || name == "sasl.oauthbearer.config"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_its_value() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?} {secret} {secret:#?}").contains("hunter2"));
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"**REDACTED**\"");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn secret_properties_are_recognised() {
        for name in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.key.pem",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
        ] {
            assert!(is_secret_property(name), "{name}");
        }
        for name in ["sasl.username", "ssl.ca.location", "fetch.max.bytes"] {
            assert!(!is_secret_property(name), "{name}");
        }
    }
}
