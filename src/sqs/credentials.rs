//! The AWS credentials of one destination: the default provider chain, a credentials CSV
//! file that is read again when it changes (a key rotated without a restart), and a role
//! assumed on top of either, refreshed before it expires. [`CachedCredentials`] keeps what
//! a provider answered until it is due for renewal, so that a request rarely waits for it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_sqs::config::Region;
use tracing::{info, warn};

use crate::config::credentials_csv::read_access_key;
use crate::config::security::CredentialsConfig;

/// How long credentials from a file are kept before the file is looked at again, and so how
/// soon a rotated key is picked up.
const FILE_RECHECK: Duration = Duration::from_secs(60);

/// Credentials are renewed this long before they expire, so that no request is signed with a
/// key that expires on its way.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(10);

/// Credentials without an expiry (a static key) are asked for again after this long.
const KEEP_WITHOUT_EXPIRY: Duration = Duration::from_secs(15 * 60);

/// How long a provider may take: instance metadata or STS may not answer at all.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The provider for `config`, or `None` for the SDK's default chain.
pub async fn credentials_provider(
    config: &CredentialsConfig,
    region: &str,
) -> Option<SharedCredentialsProvider> {
    let from_file = config.csv_file.as_ref().map(|path| {
        warn_if_readable_by_others(path);
        SharedCredentialsProvider::new(CsvFileCredentials::new(path.clone()))
    });
    let Some(role) = &config.assume_role else {
        return from_file;
    };

    let region = Region::new(region.to_owned());
    let base = match from_file {
        Some(provider) => provider,
        None => default_chain(&region).await,
    };
    let mut sts = aws_config::defaults(BehaviorVersion::latest()).region(region.clone());
    if let Some(endpoint) = &role.sts_endpoint_url {
        sts = sts.endpoint_url(endpoint);
    }
    let sts = sts.credentials_provider(base.clone()).load().await;
    let mut builder = AssumeRoleProvider::builder(&role.role_arn)
        .session_name(&role.session_name)
        .session_length(Duration::from_secs(role.duration_s))
        .region(region)
        .configure(&sts);
    if let Some(external_id) = &role.external_id {
        builder = builder.external_id(external_id.expose());
    }
    Some(SharedCredentialsProvider::new(
        builder.build_from_provider(base).await,
    ))
}

/// The SDK's default chain: environment, profile, web identity, container and instance
/// credentials.
pub async fn default_chain(region: &Region) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(
        aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
            .region(region.clone())
            .build()
            .await,
    )
}

/// A provider's credentials, kept until shortly before they expire.
#[derive(Debug)]
pub struct CachedCredentials {
    provider: SharedCredentialsProvider,
    /// The credentials and when to renew them. An async lock: while one request renews
    /// them, the others wait for its answer instead of asking the provider too.
    current: tokio::sync::Mutex<Option<(Credentials, SystemTime)>>,
}

impl CachedCredentials {
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        Self {
            provider,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// Credentials to sign a request with now.
    pub async fn get(&self) -> Result<Credentials, CredentialsError> {
        let mut current = self.current.lock().await;
        if let Some((credentials, renew_at)) = current.as_ref() {
            if SystemTime::now() < *renew_at {
                return Ok(credentials.clone());
            }
        }

        let loaded = tokio::time::timeout(LOAD_TIMEOUT, self.provider.provide_credentials())
            .await
            .map_err(|_| CredentialsError::provider_timed_out(LOAD_TIMEOUT))??;
        let renew_at = match loaded.expiry() {
            Some(expiry) => expiry.checked_sub(RENEW_BEFORE_EXPIRY).unwrap_or(expiry),
            None => SystemTime::now() + KEEP_WITHOUT_EXPIRY,
        };
        *current = Some((loaded.clone(), renew_at));
        Ok(loaded)
    }
}

/// A credentials file that other users may read is a key that other users may hold.
fn warn_if_readable_by_others(path: &Path) {
    if let Ok(metadata) = std::fs::metadata(path) {
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            warn!(file = %path.display(), mode = format!("{:o}", mode & 0o777), "the credentials file can be read by other users; chmod 600 it");
        }
    }
}

/// Credentials from an IAM access key CSV file.
#[derive(Debug)]
pub struct CsvFileCredentials {
    path: PathBuf,
    /// The file's modification time and the key it held then.
    current: Mutex<Option<(SystemTime, Credentials)>>,
}

impl CsvFileCredentials {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            current: Mutex::new(None),
        }
    }

    fn load(&self) -> Result<Credentials, CredentialsError> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if let (Some((seen, credentials)), Some(modified)) = (current.as_ref(), modified) {
            if *seen == modified {
                return Ok(fresh(credentials));
            }
        }
        match read_access_key(&self.path) {
            Ok(key) => {
                let credentials = Credentials::new(
                    key.access_key_id,
                    key.secret_access_key.expose().to_owned(),
                    None,
                    None,
                    "csv-file",
                );
                if current.is_some() {
                    info!(file = %self.path.display(), "credentials file changed; using the key it holds now");
                }
                *current = Some((
                    modified.unwrap_or(SystemTime::UNIX_EPOCH),
                    credentials.clone(),
                ));
                Ok(fresh(&credentials))
            }
            // A file caught half-written during a rotation: keep the key that worked.
            Err(error) => match current.as_ref() {
                Some((_, credentials)) => {
                    warn!(%error, "credentials file unreadable; keeping the previous key");
                    Ok(fresh(credentials))
                }
                None => Err(CredentialsError::provider_error(error)),
            },
        }
    }
}

/// The same key with an expiry soon, so that the cache asks again and sees a rotation.
fn fresh(credentials: &Credentials) -> Credentials {
    Credentials::new(
        credentials.access_key_id(),
        credentials.secret_access_key(),
        None,
        Some(SystemTime::now() + FILE_RECHECK),
        "csv-file",
    )
}

impl ProvideCredentials for CsvFileCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(self.load())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_file_is_read_again_and_a_broken_one_keeps_the_old_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.csv");
        let write = |id: &str| {
            std::fs::write(
                &path,
                format!("Access key ID,Secret access key\n{id},secret/{id}\n"),
            )
            .unwrap();
        };
        write("AKIAAAAAAAAAAAAAAAAA");
        let provider = CsvFileCredentials::new(path.clone());
        assert_eq!(
            provider.load().unwrap().access_key_id(),
            "AKIAAAAAAAAAAAAAAAAA"
        );

        // Modification times can be coarse: make sure the rotation changes it.
        std::thread::sleep(Duration::from_millis(20));
        write("AKIABBBBBBBBBBBBBBBB");
        let later = SystemTime::now() + Duration::from_secs(2);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let rotated = provider.load().unwrap();
        assert_eq!(rotated.access_key_id(), "AKIABBBBBBBBBBBBBBBB");
        assert_eq!(rotated.secret_access_key(), "secret/AKIABBBBBBBBBBBBBBBB");
        assert!(
            rotated.expiry().is_some(),
            "an expiry makes the cache ask again"
        );

        std::fs::write(&path, "garbage").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later + Duration::from_secs(2))
            .unwrap();
        assert_eq!(
            provider.load().unwrap().access_key_id(),
            "AKIABBBBBBBBBBBBBBBB"
        );
    }

    #[tokio::test]
    async fn the_cache_asks_again_only_when_the_credentials_are_due() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        /// Its first key expires within the renewal margin, the later ones in an hour.
        #[derive(Debug)]
        struct Counting(Arc<AtomicUsize>);
        impl ProvideCredentials for Counting {
            fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                let n = self.0.fetch_add(1, Ordering::SeqCst);
                let lifetime = if n == 0 {
                    RENEW_BEFORE_EXPIRY / 2
                } else {
                    Duration::from_secs(3600)
                };
                let expiry = Some(SystemTime::now() + lifetime);
                let key = Credentials::new(format!("AKIA{n}"), "secret", None, expiry, "test");
                future::ProvideCredentials::ready(Ok(key))
            }
        }
        let calls = Arc::new(AtomicUsize::new(0));
        let provider = SharedCredentialsProvider::new(Counting(Arc::clone(&calls)));
        let cache = CachedCredentials::new(provider);

        assert_eq!(cache.get().await.unwrap().access_key_id(), "AKIA0");
        assert_eq!(cache.get().await.unwrap().access_key_id(), "AKIA1");
        assert_eq!(cache.get().await.unwrap().access_key_id(), "AKIA1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let provider = CsvFileCredentials::new(PathBuf::from("/nonexistent/keys.csv"));
        assert!(provider.load().is_err());
    }
}
