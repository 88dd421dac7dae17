//! How the bridge reaches Kafka (TLS, SASL) and each queue (AWS credentials), as written in
//! the configuration. Passwords are read from a file or an environment variable, never
//! written in the configuration itself.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize, Serializer};

use super::secret::{REDACTED, Secret, is_secret_property};

/// librdkafka's `security.protocol`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// librdkafka's `sasl.mechanisms`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// Tokens from an OpenID Connect provider (`[kafka.security.oidc]`), or as configured
    /// through `sasl.oauthbearer.*` properties.
    #[serde(rename = "OAUTHBEARER")]
    OauthBearer,
}

impl SaslMechanism {
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OauthBearer => "OAUTHBEARER",
        }
    }
}

/// `[kafka.security]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSecurity {
    #[serde(default)]
    pub protocol: SecurityProtocol,
    /// PEM bundle of the certificate authorities that signed the brokers' certificates;
    /// the system's when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for brokers that authenticate clients by TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// A file holding the password of an encrypted `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_password_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<SaslMechanism>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_username: Option<String>,
    /// A file holding the SASL password (a Kubernetes Secret mounted as a file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_password_file: Option<PathBuf>,
    /// The name of an environment variable holding the SASL password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_password_env: Option<String>,
    /// OAUTHBEARER tokens fetched from an OpenID Connect provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcConfig>,
    /// Read from the files and the environment while loading; never serialized.
    #[serde(skip)]
    pub resolved: ResolvedSecrets,
}

/// `[kafka.security.oidc]`: the client-credentials grant against an OpenID Connect token
/// endpoint. librdkafka fetches the token, and fetches a new one before it expires.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    pub token_endpoint_url: String,
    pub client_id: String,
    /// A file holding the client secret; or, instead, `client_secret_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// The name of an environment variable holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// The scope to ask for, when the provider has no default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The secrets named by [`KafkaSecurity`], once read.
#[derive(Clone, Debug, Default)]
pub struct ResolvedSecrets {
    pub sasl_password: Option<Secret>,
    pub key_password: Option<Secret>,
    pub oidc_client_secret: Option<Secret>,
}

/// `[kafka.properties]`: librdkafka properties passed through as written. Those whose names
/// say they hold a secret are shown redacted by `Debug` and by `check`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct KafkaProperties(BTreeMap<String, String>);

impl KafkaProperties {
    pub fn get(&self, name: &str) -> Option<&String> {
        self.0.get(name)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    fn redacted(&self) -> BTreeMap<&str, &str> {
        self.0
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if is_secret_property(k) {
                        REDACTED
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect()
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

impl Serialize for KafkaProperties {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.redacted().serialize(serializer)
    }
}

/// `[destinations.credentials]`: whose AWS credentials reach the queue. The default
/// provider chain (environment, profile, web identity, container, instance metadata) when
/// no `csv_file` is given.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// The access key CSV the IAM console offers for download; read again when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_file: Option<PathBuf>,
    /// A role to assume with the credentials above (or the default chain's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assume_role: Option<AssumeRoleConfig>,
}

/// `[destinations.credentials.assume_role]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AssumeRoleConfig {
    pub role_arn: String,
    /// The external id the customer's trust policy requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<Secret>,
    #[serde(default = "default_session_name")]
    pub session_name: String,
    /// 900 to 43200 seconds; credentials are refreshed before they expire.
    #[serde(default = "default_duration_s")]
    pub duration_s: u64,
    /// Another STS endpoint, such as LocalStack's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_endpoint_url: Option<String>,
}

fn default_session_name() -> String {
    "kafka-sqs-bridge".to_owned()
}

fn default_duration_s() -> u64 {
    3_600
}
