//! The SDK client for one destination: its region, endpoint, trusted CAs and timeouts.
//! Retries are the bridge's own (see [`super::retry`]), so that only failed entries are
//! resent and every attempt is counted; the SDK's are turned off. So is its stalled-stream
//! check: a request body is at most 1 MiB already in memory, a reply a few KiB, and the
//! attempt timeout ends a stalled request anyway, while the check's throughput bookkeeping
//! cost about 4 % of the bridge's CPU in a backlog drain.

use std::path::PathBuf;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::{Region, SharedHttpClient, StalledStreamProtectionConfig};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};

use super::credentials::credentials_provider;
use crate::config::DestinationConfig;
use crate::config::ca_bundle::{CaBundle, CaBundleError, read_ca_bundle};
use crate::config::security::CredentialsConfig;

/// Where and how to reach one queue.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub region: String,
    pub endpoint_url: Option<String>,
    /// Certificate authorities trusted besides the system's; see [`crate::config::ca_bundle`].
    pub ca_bundle_file: Option<PathBuf>,
    pub request_timeout: Duration,
    pub credentials: CredentialsConfig,
}

impl ClientSettings {
    /// The settings of destination `d`, whose requests may take `request_timeout`.
    pub fn for_destination(d: &DestinationConfig, request_timeout: Duration) -> Self {
        Self {
            // Validation refuses a destination without a known region.
            region: d.region().unwrap_or_default().to_owned(),
            endpoint_url: d.endpoint_url.clone(),
            ca_bundle_file: d.ca_bundle_file.clone(),
            request_timeout,
            credentials: d.credentials.clone(),
        }
    }
}

/// An SQS client with the destination's credentials: see [`super::credentials`]. Fails only
/// when the CA bundle, checked at start-up, can no longer be read.
pub async fn build_client(settings: &ClientSettings) -> Result<aws_sdk_sqs::Client, CaBundleError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .retry_config(RetryConfig::disabled())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .timeout_config(timeouts(settings.request_timeout));
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(file) = &settings.ca_bundle_file {
        loader = loader.http_client(https_client_trusting(&read_ca_bundle(file)?));
    }
    if let Some(provider) = credentials_provider(&settings.credentials, &settings.region).await {
        loader = loader.credentials_provider(provider);
    }
    let sdk_config = loader.load().await;
    Ok(aws_sdk_sqs::Client::new(&sdk_config))
}

/// The SDK's own HTTPS client (rustls on aws-lc) with `bundle` added to the system's roots.
fn https_client_trusting(bundle: &CaBundle) -> SharedHttpClient {
    let trust_store = TrustStore::default().with_pem_certificate(bundle.pem());
    let context = TlsContext::builder()
        .with_trust_store(trust_store)
        .build()
        .expect("a TLS context with a trust store only cannot fail to build");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
}

fn timeouts(request_timeout: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(request_timeout.min(Duration::from_secs(5)))
        .operation_attempt_timeout(request_timeout)
        .build()
}
