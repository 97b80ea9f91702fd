//! Configuration: defaults < optional `panal.toml` < `PANAL_*` environment variables.
//!
//! Nested keys use a double underscore in the environment: `[http] body_limit` in
//! `panal.toml` is `PANAL_HTTP__BODY_LIMIT`. A value of the wrong type stops
//! start-up with an error naming the key and where the value came from.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::secret::{LiveSecret, Secret};

/// Environment variables that start with `PANAL_` but are not configuration
/// (test switches), so they never reach the settings.
const NOT_SETTINGS: &[&str] = &["TEST_POSTGRES_URL", "CONFIG"];

/// A configuration error, naming the key and the source of the bad value.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        // Name the key as the user wrote it: `http.body_limit` in a file,
        // `PANAL_HTTP__BODY_LIMIT` in the environment.
        let mut parts = Vec::new();
        for err in e {
            let key = err.path.join(".").to_lowercase();
            let origin = err.metadata.as_ref().map(|m| {
                if m.name.contains("environment") {
                    format!("environment variable PANAL_{}", err.path.join("__").to_uppercase())
                } else {
                    match &m.source {
                        Some(source) => format!("{} {source}", m.name),
                        None => m.name.to_string(),
                    }
                }
            });
            parts.push(match origin {
                Some(origin) if !key.is_empty() => format!("key \"{key}\" ({origin}): {}", err.kind),
                _ if !key.is_empty() => format!("key \"{key}\": {}", err.kind),
                _ => err.kind.to_string(),
            });
        }
        ConfigError(parts.join("; "))
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise.
    #[default]
    Auto,
    Json,
    Pretty,
}

/// Settings shared by every process.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Where `panal up` keeps one SQLite file per service.
    pub data_dir: PathBuf,
    /// The database of the one service run by `panal serve`. May carry a password.
    pub database_url: Option<Secret<String>>,
    /// The broker: `nats://…`, `amqp://…`, or unset for the embedded bus in
    /// `<data_dir>/bus.db`. May carry a password.
    pub bus_url: Option<Secret<String>>,
    /// Redis, for state several replicas share (the gateway's rate limits);
    /// unset, such state is in memory. May carry a password.
    pub redis_url: Option<Secret<String>>,
    /// The SMTP relay for outgoing mail (`smtp://…`, `smtps://…`); unset, mail
    /// is written to the log instead. May carry a password.
    pub smtp_url: Option<Secret<String>>,
    /// The address clients use to reach Panal (the gateway). Access tokens name it
    /// as their issuer, and OpenID discovery is published under it.
    pub public_url: String,
    /// The interface services listen on.
    pub host: IpAddr,
    /// The port of the one service run by `panal serve` (default: its port in the map).
    pub port: Option<u16>,
    /// Log filter in `tracing` syntax, e.g. `info,sqlx=warn`.
    pub log: String,
    pub log_format: LogFormat,
    pub http: HttpSettings,
    pub db: DbSettings,
    pub tokens: TokenSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            database_url: None,
            bus_url: None,
            smtp_url: None,
            redis_url: None,
            public_url: "http://localhost:8000".to_owned(),
            host: IpAddr::from([127, 0, 0, 1]),
            port: None,
            log: "info".to_owned(),
            log_format: LogFormat::Auto,
            http: HttpSettings::default(),
            db: DbSettings::default(),
            tokens: TokenSettings::default(),
        }
    }
}

/// HTTP limits every service applies.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes (413 above it).
    pub body_limit: usize,
    /// Largest request head (request line and headers), in bytes (431 above it).
    pub max_header_bytes: usize,
    /// Most header fields a request may carry (431, with a problem document,
    /// above it; hyper itself refuses more than 100 with a bare 431).
    pub max_header_fields: usize,
    /// Longest a client may take to send a request head, in milliseconds
    /// (slow clients are disconnected); also the idle keep-alive limit.
    pub header_read_timeout_ms: u64,
    /// Serve HTTPS with this certificate chain (PEM); needs `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Serve on this many threads, each with its own single-threaded runtime
    /// (thread per core); 0 or 1: on the process's shared runtime.
    pub threads: usize,
    /// Longest a handler may take before the client gets a 503, in milliseconds.
    pub request_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Write one log line per request.
    pub access_log: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit: 64 * 1024,
            max_header_bytes: 16 * 1024,
            max_header_fields: 64,
            header_read_timeout_ms: 10_000,
            tls_cert: None,
            tls_key: None,
            threads: 0,
            request_timeout_ms: 15_000,
            shutdown_grace_ms: 10_000,
            access_log: true,
        }
    }
}

impl HttpSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms.max(100))
    }

    /// Whether this process serves HTTPS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }
}

/// Database pool settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DbSettings {
    /// Most connections a service's pool opens.
    pub max_connections: u32,
    /// How long a request waits for a free connection, in milliseconds.
    pub acquire_timeout_ms: u64,
    /// How long SQLite waits on a locked database, in milliseconds.
    pub sqlite_busy_timeout_ms: u64,
}

impl Default for DbSettings {
    fn default() -> Self {
        Self { max_connections: 10, acquire_timeout_ms: 5_000, sqlite_busy_timeout_ms: 5_000 }
    }
}

/// What verifiers expect of access tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TokenSettings {
    /// The `aud` every access token carries and every verifier requires.
    pub audience: String,
    /// The least time between two JWKS fetches caused by unknown key ids, in seconds.
    pub jwks_refetch_interval_secs: u64,
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway_secs: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self { audience: "panal".to_owned(), jwks_refetch_interval_secs: 30, leeway_secs: 30 }
    }
}

/// Settings read from files: `PANAL_<KEY>_FILE=/path` sets `<key>` (nested
/// with `__`, as in the environment) to the file's contents, a trailing
/// newline dropped — the convention Docker secrets, Kubernetes Secrets
/// mounted as files and Vault Agent templates all produce. For string
/// settings: URLs with passwords, client secrets, tokens. Read at start and
/// on every reload (SIGHUP). Setting both `PANAL_<KEY>` and
/// `PANAL_<KEY>_FILE` is an error, as is a file that cannot be read.
pub fn file_settings(vars: impl IntoIterator<Item = (String, String)>) -> Result<Figment, ConfigError> {
    Ok(file_sources(vars)?.1)
}

/// The settings `PANAL_<KEY>_FILE` variables name (dotted key → file), and
/// the figment of their values.
fn file_sources(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(BTreeMap<String, PathBuf>, Figment), ConfigError> {
    let vars: Vec<(String, String)> = vars.into_iter().collect();
    let mut figment = Figment::new();
    let mut files = BTreeMap::new();
    for (name, path) in &vars {
        let Some(key) = name.strip_prefix("PANAL_").and_then(|k| k.strip_suffix("_FILE")) else { continue };
        if key.is_empty() || NOT_SETTINGS.contains(&key) {
            continue;
        }
        let direct = format!("PANAL_{key}");
        if vars.iter().any(|(n, _)| *n == direct) {
            return Err(ConfigError(format!("both {direct} and {name} are set; keep one")));
        }
        let contents =
            std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{name}: cannot read {path}: {e}")))?;
        let dotted = key.to_ascii_lowercase().replace("__", ".");
        figment = figment.merge(figment::providers::Serialized::default(&dotted, without_newline(&contents)));
        files.insert(dotted, PathBuf::from(path));
    }
    Ok((files, figment))
}

/// A file's contents without the one trailing newline (`\n` or `\r\n`)
/// editors and `echo` add.
pub(crate) fn without_newline(contents: &str) -> &str {
    contents.strip_suffix('\n').map_or(contents, |v| v.strip_suffix('\r').unwrap_or(v))
}

/// Loaded configuration: the shared [`Settings`] plus access to service sections.
#[derive(Debug, Clone)]
pub struct Config {
    figment: Figment,
    pub settings: Settings,
    /// Where it was read from, for [`Config::reload`]: `None` for explicit
    /// sources, `Some(file)` for the file (or `./panal.toml`) and environment.
    disk: Option<Option<PathBuf>>,
    /// Settings read from files (`PANAL_<KEY>_FILE`): dotted key → file.
    files: Arc<BTreeMap<String, PathBuf>>,
}

impl Config {
    /// Reads `file` (or `panal.toml` in the working directory when present) and the
    /// `PANAL_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError(format!("config file {} does not exist", path.display())));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("panal.toml")),
        }
        // `PANAL_<KEY>_FILE` names a file holding the setting (secrets);
        // the variable itself is not a setting.
        let env = Env::prefixed("PANAL_")
            .ignore(NOT_SETTINGS)
            .filter(|key| !key.as_str().to_ascii_lowercase().ends_with("_file"))
            .split("__");
        let (files, from_files) = file_sources(std::env::vars())?;
        figment = figment.merge(env).merge(from_files);
        let mut config = Self::from_figment(figment)?;
        config.disk = Some(file.map(Path::to_path_buf));
        config.files = Arc::new(files);
        Ok(config)
    }

    /// Configuration from explicit sources (tests, embedding).
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment.extract()?;
        let config = Self { figment, settings, disk: None, files: Arc::default() };
        config.validate()?;
        Ok(config)
    }

    /// The same sources read again (the file and the environment), for a
    /// process told to reload (SIGHUP). Configuration built from explicit
    /// sources has nothing to re-read and comes back as it is.
    pub fn reload(&self) -> Result<Self, ConfigError> {
        match &self.disk {
            Some(file) => Self::load(file.as_deref()),
            None => Ok(self.clone()),
        }
    }

    /// The same configuration with `value` at `key` (a dotted path), above
    /// every other source: what `panal up` decides for a service (the
    /// credentials of the service client it registered for it).
    pub fn with_value(&self, key: &str, value: impl serde::Serialize) -> Result<Self, ConfigError> {
        let figment = self.figment.clone().merge(figment::providers::Serialized::default(key, value));
        let mut config = Self::from_figment(figment)?;
        config.disk = self.disk.clone();
        config.files = self.files.clone();
        Ok(config)
    }

    /// The secret setting `key` (dotted, `clients.game.secret`) whose value
    /// is `value`: when it came from a file (`PANAL_<KEY>_FILE`), one that
    /// follows the file as it is rewritten (rotation without a restart).
    pub fn live_secret(&self, key: &str, value: Secret<String>) -> LiveSecret {
        match self.files.get(key) {
            Some(file) => LiveSecret::from_file(key, file.clone(), value),
            None => LiveSecret::fixed(value),
        }
    }

    /// Configuration from a TOML string only (tests).
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(toml)))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        if s.http.body_limit == 0 {
            return Err(ConfigError("key \"http.body_limit\" must be greater than 0".into()));
        }
        if !(s.public_url.starts_with("http://") || s.public_url.starts_with("https://")) {
            return Err(ConfigError(format!("key \"public_url\" must be an http(s) URL, got {:?}", s.public_url)));
        }
        if s.db.max_connections == 0 {
            return Err(ConfigError("key \"db.max_connections\" must be greater than 0".into()));
        }
        Ok(())
    }

    /// A service's own section (`[auth]` in `panal.toml`, `PANAL_AUTH__*`),
    /// with the service's defaults for what is missing.
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, ConfigError> {
        if !self.figment.contains(name) {
            return Ok(T::default());
        }
        Ok(self.figment.extract_inner(name)?)
    }

    /// Where another service is reached: `PANAL_<NAME>_URL`, or its default port
    /// on this host.
    pub fn service_url(&self, name: &str) -> Result<String, ConfigError> {
        let key = format!("{name}_url");
        if self.figment.contains(&key) {
            let url: String = self.figment.extract_inner(&key)?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError(format!("key \"{key}\" must be an http(s) URL, got {url:?}")));
            }
            return Ok(url.trim_end_matches('/').to_owned());
        }
        let port = crate::catalog::find(name)
            .map(|s| s.port)
            .ok_or_else(|| ConfigError(format!("unknown service {name:?}")))?;
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// The issuer access tokens carry and verifiers require.
    pub fn issuer(&self) -> String {
        self.settings.public_url.trim_end_matches('/').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_read_from_the_files_the_file_variables_name() {
        let dir = std::env::temp_dir().join(format!("panal-config-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("db");
        std::fs::write(&db, "postgres://panal:s3cret@db/panal\n").unwrap();
        let client = dir.join("client");
        std::fs::write(&client, "client-secret").unwrap();
        let vars = |extra: &[(&str, &str)]| {
            let mut v = vec![
                ("PANAL_DATABASE_URL_FILE".to_owned(), db.display().to_string()),
                ("PANAL_CLIENTS__GAME__SECRET_FILE".to_owned(), client.display().to_string()),
                ("HOME_FILE".to_owned(), "/nowhere".to_owned()),
            ];
            v.extend(extra.iter().map(|(k, val)| ((*k).to_owned(), (*val).to_owned())));
            v
        };
        let figment =
            Figment::from(Toml::string("[clients.game]\nid = \"abc\"\n")).merge(file_settings(vars(&[])).unwrap());
        let c = Config::from_figment(figment).unwrap();
        assert_eq!(c.settings.database_url.as_ref().unwrap().expose(), "postgres://panal:s3cret@db/panal");
        let clients: std::collections::HashMap<String, crate::credentials::ClientCredentials> =
            c.section("clients").unwrap();
        assert_eq!((clients["game"].id.as_str(), clients["game"].secret.expose().as_str()), ("abc", "client-secret"));
        // Both ways at once, or a file that is not there: refused, named.
        let both = file_settings(vars(&[("PANAL_DATABASE_URL", "sqlite://x")])).unwrap_err().to_string();
        assert!(both.contains("PANAL_DATABASE_URL and PANAL_DATABASE_URL_FILE"), "{both}");
        let missing = file_settings([("PANAL_REDIS_URL_FILE".to_owned(), "/no/such/file".to_owned())]).unwrap_err();
        assert!(missing.to_string().contains("PANAL_REDIS_URL_FILE"), "{missing}");

        // A secret that came from a file follows it; one that did not is fixed.
        let (files, figment) = file_sources(vars(&[])).unwrap();
        let mut c =
            Config::from_figment(Figment::from(Toml::string("[clients.game]\nid = \"abc\"\n")).merge(figment)).unwrap();
        c.files = Arc::new(files);
        let live = c.live_secret("clients.game.secret", Secret::new("client-secret".to_owned()));
        assert_eq!(format!("{live:?}"), format!("[redacted, from {}]", client.display()));
        let fixed = c.live_secret("clients.ai.secret", Secret::new("x".to_owned()));
        assert_eq!(format!("{fixed:?}"), "[redacted]");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.settings.http.body_limit, 64 * 1024);
        assert_eq!(c.service_url("auth").unwrap(), "http://127.0.0.1:8001");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = Config::from_toml("[http]\nbody_limit = \"lots\"").unwrap_err().to_string();
        assert!(err.contains("body_limit"), "{err}");
    }

    #[test]
    fn service_urls_can_be_overridden() {
        let c = Config::from_toml("auth_url = \"http://auth.internal:9000/\"").unwrap();
        assert_eq!(c.service_url("auth").unwrap(), "http://auth.internal:9000");
        let bad = Config::from_toml("auth_url = \"auth:9000\"").unwrap();
        assert!(bad.service_url("auth").unwrap_err().to_string().contains("auth_url"));
    }

    #[test]
    fn sections_fall_back_to_their_defaults() {
        #[derive(Debug, Default, Deserialize, PartialEq)]
        #[serde(default)]
        struct S {
            a: u32,
            b: u32,
        }
        let c = Config::from_toml("[svc]\nb = 2").unwrap();
        assert_eq!(c.section::<S>("svc").unwrap(), S { a: 0, b: 2 });
        assert_eq!(c.section::<S>("other").unwrap(), S::default());
    }
}
