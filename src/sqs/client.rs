//! A small SQS client for the one kind of call the bridge makes: a signed POST of a JSON
//! document (AWS's JSON 1.0 protocol, as the SDK speaks it) over a pooled HTTP/1.1
//! connection. The AWS SDK's generic request path (runtime plugins, interceptors, identity
//! and endpoint resolution on every call) cost more CPU than everything else the bridge does
//! per record, so the SDK is used only where it runs once: loading the region's settings and
//! the credentials providers, and resolving the endpoint when the client is built.
//! Retries are the bridge's own (see [`super::retry`]), so that only failed entries are resent
//! and every attempt is counted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_sdk_sqs::config::Region;
use aws_sdk_sqs::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use tracing::warn;

use super::credentials::{CachedCredentials, credentials_provider, default_chain};
use super::send::error_chain;
use crate::config::DestinationConfig;
use crate::config::ca_bundle::read_ca_bundle;
use crate::config::security::CredentialsConfig;

/// The name SQS signs requests under.
const SIGNING_NAME: &str = "sqs";

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

/// A client for one region's SQS endpoint. Cheap to clone: clones share the connection pool
/// and the cached credentials.
#[derive(Clone, Debug)]
pub struct SqsClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoint: Uri,
    /// The endpoint as the signer takes it.
    endpoint_text: String,
    /// The endpoint's authority, sent as `Host` and signed as such.
    host: HeaderValue,
    region: String,
    credentials: CachedCredentials,
    request_timeout: Duration,
}

/// What SQS answered, before its body is read as a reply or an error.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// The awsQuery error code from the `x-amzn-query-error` header, such as
    /// `AWS.SimpleQueueService.NonExistentQueue`, which names a failure more precisely than
    /// the JSON body's `__type`.
    pub query_error: Option<String>,
    pub body: Bytes,
}

/// A call that got no answer from SQS.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no credentials to sign with: {0}")]
    Credentials(String),
    #[error("the request could not be signed: {0}")]
    Signing(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Connection(String),
    #[error("the answer broke off: {0}")]
    Body(String),
}

/// Why a client could not be built; checked at start-up, so only seen when a file changed
/// since.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    CaBundle(#[from] crate::config::ca_bundle::CaBundleError),
    #[error("no SQS endpoint for region {region:?}: {reason}")]
    Endpoint { region: String, reason: String },
    #[error("TLS set-up failed: {0}")]
    Tls(String),
}

/// A client with the destination's endpoint, trusted CAs and credentials: see
/// [`super::credentials`].
pub async fn build_client(settings: &ClientSettings) -> Result<SqsClient, BuildError> {
    let region = Region::new(settings.region.clone());
    // The loaded settings serve the endpoint only: without `no_credentials` the loader would
    // build a default credentials chain of its own beside the one chosen below.
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region.clone())
        .no_credentials();
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let sdk_config = loader.load().await;
    let endpoint = resolve_endpoint(&sdk_config, &settings.region).await?;
    let host = endpoint_host(&endpoint).ok_or_else(|| BuildError::Endpoint {
        region: settings.region.clone(),
        reason: format!("{endpoint} names no host"),
    })?;

    let provider = match credentials_provider(&settings.credentials, &settings.region).await {
        Some(provider) => provider,
        None => default_chain(&region).await,
    };

    Ok(SqsClient {
        inner: Arc::new(Inner {
            http: http_client(settings)?,
            endpoint_text: endpoint.to_string(),
            endpoint,
            host,
            region: settings.region.clone(),
            credentials: CachedCredentials::new(provider),
            request_timeout: settings.request_timeout,
        }),
    })
}

/// The endpoint the SDK would use: the configured one, or the region's (FIPS and dual-stack
/// as the environment asks).
async fn resolve_endpoint(
    sdk_config: &aws_config::SdkConfig,
    region: &str,
) -> Result<Uri, BuildError> {
    let failed = |reason: String| BuildError::Endpoint {
        region: region.to_owned(),
        reason,
    };
    let mut params = Params::builder()
        .region(region)
        .use_fips(sdk_config.use_fips().unwrap_or(false))
        .use_dual_stack(sdk_config.use_dual_stack().unwrap_or(false));
    if let Some(url) = sdk_config.endpoint_url() {
        params = params.endpoint(url);
    }
    let params = params.build().map_err(|e| failed(e.to_string()))?;
    let endpoint = DefaultResolver::new()
        .resolve_endpoint(&params)
        .await
        .map_err(|e| failed(error_chain(e.as_ref())))?;
    endpoint
        .url()
        .parse()
        .map_err(|e: http::uri::InvalidUri| failed(format!("{}: {e}", endpoint.url())))
}

fn endpoint_host(endpoint: &Uri) -> Option<HeaderValue> {
    HeaderValue::from_str(endpoint.authority()?.as_str()).ok()
}

/// HTTP for plain endpoints (LocalStack, tests), HTTPS with the system's roots and the
/// destination's CA bundle for the others.
fn http_client(
    settings: &ClientSettings,
) -> Result<HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>, BuildError> {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    // Certificates the system holds but rustls cannot use are skipped, as the SDK does.
    let (_, _) = roots.add_parsable_certificates(system.certs);
    if roots.is_empty() {
        // A bare image without ca-certificates: every HTTPS handshake would fail with an
        // unknown issuer, which does not say why.
        let errors: Vec<String> = system.errors.iter().map(ToString::to_string).collect();
        warn!(errors = ?errors, "no trusted root certificates found on this system; install ca-certificates or set SSL_CERT_FILE");
    }
    if let Some(file) = &settings.ca_bundle_file {
        let bundle = read_ca_bundle(file)?;
        let (_, _) = roots.add_parsable_certificates(bundle.certificates().iter().cloned());
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| BuildError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();

    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(settings.request_timeout.min(Duration::from_secs(5))));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(HttpClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector))
}

impl SqsClient {
    /// Sends `body` as the JSON input of `action` (such as `SendMessageBatch`), signed with the
    /// current credentials, and reads the whole answer within the request timeout.
    pub async fn call(&self, action: &str, body: Vec<u8>) -> Result<Answer, CallError> {
        let inner = &*self.inner;
        let credentials = inner
            .credentials
            .get()
            .await
            .map_err(|e| CallError::Credentials(error_chain(&e)))?;
        let request = inner.signed_request(action, body, credentials)?;

        let exchange = async {
            let response = inner
                .http
                .request(request)
                .await
                .map_err(|e| CallError::Connection(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| CallError::Body(error_chain(&e)))?
                .to_bytes();
            let query_error = parts
                .headers
                .get("x-amzn-query-error")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .filter(|code| !code.is_empty())
                .map(str::to_owned);
            Ok(Answer {
                status: parts.status,
                query_error,
                body,
            })
        };
        tokio::time::timeout(inner.request_timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout(inner.request_timeout))?
    }
}

impl Inner {
    fn signed_request(
        &self,
        action: &str,
        body: Vec<u8>,
        credentials: aws_credential_types::Credentials,
    ) -> Result<Request<Full<Bytes>>, CallError> {
        let signing_failed = |e: &dyn std::error::Error| CallError::Signing(error_chain(e));
        let target = HeaderValue::from_str(&format!("AmazonSQS.{action}"))
            .map_err(|e| signing_failed(&e))?;
        let mut request = Request::post(self.endpoint.clone())
            .header(HOST, self.host.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.0"),
            )
            .header("x-amz-target", target)
            // Asks SQS for the awsQuery error codes as well, as the SDK does.
            .header("x-amzn-query-mode", HeaderValue::from_static("true"))
            .body(())
            .map_err(|e| signing_failed(&e))?;

        let identity: Identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SIGNING_NAME)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| signing_failed(&e))?
            .into();
        let headers = request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        let signable = SignableRequest::new(
            "POST",
            &self.endpoint_text,
            headers,
            SignableBody::Bytes(&body),
        )
        .map_err(|e| signing_failed(&e))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| signing_failed(&e))?
            .into_parts();
        instructions.apply_to_request_http1x(&mut request);

        Ok(request.map(|()| Full::new(Bytes::from(body))))
    }
}
