//! Loading the configuration: serde defaults, then a TOML file, then `BRIDGE_` environment
//! variables (`BRIDGE_KAFKA__BOOTSTRAP_SERVERS` sets `kafka.bootstrap_servers`). Every
//! problem found is reported at once, each with its key, where the value came from and what
//! was expected.

pub mod ca_bundle;
pub mod credentials_csv;
mod model;
pub mod secret;
pub mod security;
mod validate;
pub mod values;

use std::fmt;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};

pub use model::*;

/// The prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "BRIDGE_";

/// One thing wrong with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the key, as in `destinations.0.batch.max_entries`.
    pub key: String,
    /// Where the value came from: a file, an environment variable, or the defaults.
    pub origin: String,
    pub message: String,
}

/// The configuration could not be used; holds every problem found.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        writeln!(
            f,
            "{count} configuration problem{}:",
            if count == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {}: {} (from {})", p.key, p.message, p.origin)?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn one(key: &str, origin: &str, message: impl Into<String>) -> Self {
        let problem = Problem {
            key: key.to_owned(),
            origin: origin.to_owned(),
            message: message.into(),
        };
        Self {
            problems: vec![problem],
        }
    }
}

impl Config {
    /// Reads `path`, applies the environment, and validates the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, Env::prefixed(ENV_PREFIX).split("__"))
    }

    /// As [`Config::load`] with a chosen environment provider, for tests.
    pub fn load_with_env(path: &Path, env: Env) -> Result<Self, ConfigError> {
        let origin = format!("file {}", path.display());
        if let Err(e) = std::fs::read_to_string(path) {
            return Err(ConfigError::one(
                "(file)",
                &origin,
                format!("cannot be read: {e}"),
            ));
        }
        let figment = Figment::new().merge(Toml::file_exact(path)).merge(env);
        let mut config: Config = figment.extract().map_err(from_figment)?;
        let origin = |key: &str| origin_of(&figment, key);
        let mut problems = validate::check(&config, &origin);
        problems.extend(validate::resolve_secrets(&mut config, &origin));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The effective configuration as TOML, as `check` prints it.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot be rendered: {e}\n"))
    }
}

/// Where the value at `key` came from, as well as figment can tell.
fn origin_of(figment: &Figment, key: &str) -> String {
    let Some(metadata) = figment.find_metadata(key) else {
        return "the defaults".to_owned();
    };
    match &metadata.source {
        Some(source) => format!("{} {source}", metadata.name),
        None => metadata.name.to_string(),
    }
}

fn from_figment(error: figment::Error) -> ConfigError {
    let problems = error
        .into_iter()
        .map(|e| {
            let mut key = e.path.join(".");
            if let figment::error::Kind::MissingField(field) = &e.kind {
                key = if key.is_empty() {
                    field.to_string()
                } else {
                    format!("{key}.{field}")
                };
            }
            let origin = match &e.metadata {
                Some(m) => match &m.source {
                    Some(source) => format!("{} {source}", m.name),
                    None if m.name.contains("environment") => env_var_name(&m.name, &e.path),
                    None => m.name.to_string(),
                },
                None => "the defaults".to_owned(),
            };
            let key = if key.is_empty() {
                "(top level)".to_owned()
            } else {
                key
            };
            Problem {
                key,
                origin,
                message: describe(&e.kind),
            }
        })
        .collect();
    ConfigError { problems }
}

/// `environment variable BRIDGE_KAFKA__GROUP_ID` for the key path `kafka.group_id`; figment
/// names its environment provider "`BRIDGE_` environment variable(s)".
fn env_var_name(provider: &str, path: &[String]) -> String {
    let prefix = provider.split('`').nth(1).unwrap_or(ENV_PREFIX);
    let name: Vec<String> = path.iter().map(|segment| segment.to_uppercase()).collect();
    format!("environment variable {prefix}{}", name.join("__"))
}

fn describe(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::UnknownField(field, expected) => {
            format!(
                "unknown key {field:?}; expected one of {}",
                expected.join(", ")
            )
        }
        Kind::MissingField(field) => format!("the key {field:?} is required"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
