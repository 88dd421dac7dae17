//! The SDK client for one destination: its region, endpoint and timeouts. Retries are the
//! bridge's own (see [`super::retry`]), so that only failed entries are resent and every
//! attempt is counted; the SDK's are turned off.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::Region;

use super::credentials::credentials_provider;
use crate::config::security::CredentialsConfig;

/// Where and how to reach one queue.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    pub region: String,
    pub endpoint_url: Option<String>,
    pub request_timeout: Duration,
    pub credentials: CredentialsConfig,
}

/// An SQS client with the destination's credentials: see [`super::credentials`].
pub async fn build_client(settings: &ClientSettings) -> aws_sdk_sqs::Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts(settings.request_timeout));
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(provider) = credentials_provider(&settings.credentials, &settings.region).await {
        loader = loader.credentials_provider(provider);
    }
    let sdk_config = loader.load().await;
    aws_sdk_sqs::Client::new(&sdk_config)
}

fn timeouts(request_timeout: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(request_timeout.min(Duration::from_secs(5)))
        .operation_attempt_timeout(request_timeout)
        .build()
}
