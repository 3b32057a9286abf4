//! logbook's configuration: a TOML file, then environment overrides (`env.rs`: every key, one
//! naming rule), layered by `figment`, then validation.
//!
//! Every field's `///` doc is its entry in the configuration reference (docs/configuration.md,
//! kept in step by a test). Durations are written like `"7d"`, `"30s"`, `"1h 30m"`; byte sizes
//! like `"100 MB"` or `"10 GiB"`.

mod env;
mod secret;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

pub use env::variable_for;
pub use secret::{MASK, Secret};

use crate::schema;

/// What can go wrong while loading configuration; every message names the file or key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

fn key_error(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub clickhouse: ClickHouseConfig,
    pub server: ServerConfig,
    pub log: LogConfig,
    pub retention: RetentionConfig,
    pub ingest: IngestConfig,
    pub queue: QueueConfig,
    pub batch: BatchConfig,
    pub sink: SinkConfig,
    /// The authenticated HTTP API under `/api/`.
    pub api: crate::api::ApiConfig,
    pub redaction: crate::ingest::redact::RedactionConfig,
    /// logbook's own traces and logs, exported over OTLP (off by default).
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// Run-time settings shared through ClickHouse.
    pub settings: crate::settings::SettingsConfig,
    /// logbook's own email notifications (docs/notifications.md).
    pub notify: crate::notify::config::NotifyConfig,
    /// Business metrics and the values alert rules read.
    pub metrics: crate::metrics::MetricsConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// OTLP/gRPC address (logs and traces services).
    pub grpc_listen: SocketAddr,
    /// OTLP/HTTP address (`/v1/logs`, `/v1/traces`).
    pub http_listen: SocketAddr,
    /// Largest request accepted, compressed or not; larger ones get 413 / RESOURCE_EXHAUSTED.
    pub max_request_size: ByteSize,
    /// Bearer tokens per sending service (secrets). Empty: no authentication.
    pub tokens: BTreeMap<String, Secret>,
    /// Requests decoded at once, both receivers together; more wait their turn unread.
    pub max_concurrent_requests: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            grpc_listen: "127.0.0.1:4317".parse().expect("valid literal address"),
            http_listen: "127.0.0.1:4318".parse().expect("valid literal address"),
            max_request_size: ByteSize::mib(16),
            tokens: BTreeMap::new(),
            max_concurrent_requests: 32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// fsync before acknowledging each request (concurrent requests share one fsync).
    Always,
    /// fsync every `fsync_interval`; a power loss may lose that much, a process crash nothing.
    Interval,
    /// Leave flushing to the operating system.
    Never,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Directory of the durable queue (write-ahead log) and of set-aside batches.
    pub path: PathBuf,
    /// Bound on queued bytes not yet in ClickHouse; beyond it receivers answer 429.
    pub max_bytes: ByteSize,
    /// Size of one queue segment file.
    pub segment_size: ByteSize,
    /// `always`, `interval` or `never`: when queued requests are forced to disk.
    pub fsync: FsyncMode,
    /// With `fsync = "interval"`: how often.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            path: "data/queue".into(),
            max_bytes: ByteSize::gib(1),
            segment_size: ByteSize::mib(64),
            fsync: FsyncMode::Always,
            fsync_interval: Duration::from_millis(100),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Flush when a batch holds this many rows (all tables together).
    pub max_rows: usize,
    /// Flush when a batch's queued requests reach this size.
    pub max_bytes: ByteSize,
    /// Flush a batch this long after it was opened, however small. With one insert per table
    /// per flush, 1s keeps ClickHouse far from "too many parts".
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Batches whose insert may still run while the next batch is routed; each holds its rows
    /// in memory until ClickHouse has them. 0: every insert is awaited before routing goes on.
    pub inserts_in_flight: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_rows: 100_000,
            max_bytes: ByteSize::mib(32),
            max_age: Duration::from_secs(1),
            inserts_in_flight: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// First wait before retrying a failed insert; doubles up to `retry_max_backoff`.
    #[serde(with = "humantime_serde")]
    pub retry_initial_backoff: Duration,
    /// Longest wait between retries (jittered). Retryable failures are retried until
    /// ClickHouse accepts the batch; the queue holds new data meanwhile.
    #[serde(with = "humantime_serde")]
    pub retry_max_backoff: Duration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            retry_initial_backoff: Duration::from_millis(200),
            retry_max_backoff: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP(S) address of the ClickHouse server (its HTTP interface, port 8123 by default).
    /// Credentials go in `user` / `password`, never in the URL.
    pub url: String,
    /// ClickHouse user.
    pub user: String,
    /// ClickHouse password (secret: a string, `{ env = "VAR" }` or `{ file = "/path" }`).
    pub password: Secret,
    /// Database holding logbook's tables; created by `logbook migrate`.
    pub database: String,
    /// The ClickHouse cluster (a `<remote_servers>` entry) the schema was created on with
    /// `logbook migrate --cluster`, if any: changes logbook makes while serving (retention
    /// set through the API, purges) then go to every server's local tables.
    pub cluster: Option<String>,
    /// How long a single request to ClickHouse may take before it is abandoned.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Compression of the data logbook sends (inserts) and receives: `lz4` or `none`.
    pub compression: Compression,
}

/// How inserts travel to ClickHouse: ClickHouse's own LZ4 block framing, or plain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Lz4,
    None,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            user: "default".into(),
            password: Secret::default(),
            database: "logbook".into(),
            cluster: None,
            request_timeout: Duration::from_secs(30),
            compression: Compression::Lz4,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of logbook's HTTP server (health checks, and later the API and /metrics).
    pub listen: SocketAddr,
    /// How often ClickHouse is probed for `/readyz`.
    #[serde(with = "humantime_serde")]
    pub readiness_probe_interval: Duration,
    /// How long ClickHouse may be unreachable before `/readyz` reports not ready.
    #[serde(with = "humantime_serde")]
    pub unreachable_threshold: Duration,
    /// How long shutdown waits for in-flight work before giving up.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".parse().expect("valid literal address"),
            readiness_probe_interval: Duration::from_secs(5),
            unreachable_threshold: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Level filter for logbook's own logs: `error`, `warn`, `info`, `debug`, `trace`, or a
    /// `tracing` directive list such as `info,logbook::ingest=debug`. Changeable at run time.
    pub level: String,
    /// `text` for people, `json` for log shippers.
    pub format: LogFormat,
    /// Optional copy of the logs in files with size-based rotation.
    pub file: Option<LogFileConfig>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
            file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogFileConfig {
    /// Path of the active log file; rotated copies sit beside it, suffixed with their date.
    pub path: PathBuf,
    /// Rotate when the active file reaches this size.
    #[serde(default = "default_log_file_max_size")]
    pub max_size: ByteSize,
    /// How many rotated copies to keep; older ones are deleted.
    #[serde(default = "default_log_file_keep")]
    pub keep: usize,
    /// Compress rotated copies with gzip.
    #[serde(default = "default_true")]
    pub compress: bool,
}

fn default_log_file_max_size() -> ByteSize {
    ByteSize::mb(100)
}
fn default_log_file_keep() -> usize {
    10
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Time to live per table, overriding the defaults of docs/schema.md, e.g.
    /// `api_calls = "7d"`. `"0s"` keeps rows forever. Applied to existing tables by
    /// `logbook migrate`.
    #[serde(with = "humantime_map")]
    pub ttl: BTreeMap<String, Duration>,
    /// Optional shorter time to live for `otel_logs` rows below INFO (DEBUG and TRACE).
    #[serde(with = "humantime_serde")]
    pub otel_logs_low_severity_ttl: Option<Duration>,
    /// Size cap for `server_logs`: the oldest daily partitions are dropped above it.
    pub server_logs_max_bytes: ByteSize,
    /// How often `serve` checks the `server_logs` size cap.
    #[serde(with = "humantime_serde")]
    pub size_check_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            ttl: BTreeMap::new(),
            otel_logs_low_severity_ttl: None,
            server_logs_max_bytes: ByteSize::gib(10),
            size_check_interval: Duration::from_secs(300),
        }
    }
}

impl RetentionConfig {
    /// The effective time to live of a table (after loading, `ttl` holds every table's, the
    /// defaults included). `None` means rows are kept forever.
    pub fn ttl_of(&self, table: &schema::TableDef) -> Option<Duration> {
        let ttl = self.ttl.get(table.name).copied()?;
        (!ttl.is_zero()).then_some(ttl)
    }
}

/// humantime for the values of a map, which `humantime_serde` does not cover.
mod humantime_map {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<String, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(
            map.iter()
                .map(|(k, v)| (k, humantime::format_duration(*v).to_string())),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| {
                humantime::parse_duration(&v)
                    .map(|d| (k.clone(), d))
                    .map_err(|e| serde::de::Error::custom(format!("{k}: {e}")))
            })
            .collect()
    }
}

impl Config {
    /// Reads `path` (or only defaults when `None`), layers the overrides found in `vars` over it
    /// (`LOGBOOK_*`, see `env.rs`), and validates the result.
    pub fn load(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (origin, text) = match path {
            Some(path) => (
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?,
            ),
            None => ("(defaults)".to_owned(), String::new()),
        };
        let file: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: origin.clone(),
                message: e.to_string(),
            })?;
        let (overrides, variables) = env::overrides(vars)?;
        let min_severity_set = [&file, &overrides]
            .iter()
            .any(|t| has_key(t, "notify.rules.min_severity"));
        let mut config: Config = Figment::new()
            .merge(Layer::new(Metadata::named(origin), file))
            .merge(Layer::new(Metadata::named("environment"), overrides))
            .extract()
            .map_err(|e| figment_error(e, &variables))?;
        config.adopt_deprecated_min_severity(min_severity_set)?;
        config.validate()?;
        // Resolve defaults so check-config shows every table's effective retention.
        for table in schema::tables() {
            if let Some(ttl) = table.default_ttl {
                config
                    .retention
                    .ttl
                    .entry(table.name.to_owned())
                    .or_insert(ttl);
            }
        }
        Ok(config)
    }

    /// `metrics.notify_min_severity` (deprecated) is taken as `notify.rules.min_severity` when
    /// that key is not set itself; both set to different values is an error, as neither could
    /// be the one meant.
    fn adopt_deprecated_min_severity(&mut self, new_key_set: bool) -> Result<(), ConfigError> {
        const OLD: &str = "metrics.notify_min_severity";
        let Some(old) = self.metrics.notify_min_severity.clone() else {
            return Ok(());
        };
        if crate::notify::config::severity_number(&old).is_none() {
            return Err(key_error(
                OLD,
                format!("{old:?} is not one of trace, debug, info, warning, error, critical"),
            ));
        }
        if !new_key_set {
            self.notify.rules.min_severity = old;
        } else if self.notify.rules.min_severity != old {
            return Err(key_error(
                OLD,
                format!(
                    "deprecated, and it says {old:?} where notify.rules.min_severity says {:?}; \
                     remove it",
                    self.notify.rules.min_severity
                ),
            ));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let ch = &self.clickhouse;
        let url = url::Url::parse(&ch.url)
            .map_err(|e| key_error("clickhouse.url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(key_error(
                "clickhouse.url",
                "must start with http:// or https://",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(key_error(
                "clickhouse.url",
                "must not contain credentials; use clickhouse.user and clickhouse.password",
            ));
        }
        if !is_identifier(&ch.database) {
            return Err(key_error(
                "clickhouse.database",
                "must be letters, digits and underscores, not starting with a digit",
            ));
        }
        if let Some(cluster) = &ch.cluster
            && !is_identifier(cluster)
        {
            return Err(key_error(
                "clickhouse.cluster",
                "must be letters, digits and underscores, not starting with a digit",
            ));
        }
        if ch.request_timeout.is_zero() {
            return Err(key_error(
                "clickhouse.request_timeout",
                "must be above zero",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| key_error("log.level", format!("not a valid level filter: {e}")))?;
        if let Some(file) = &self.log.file {
            if file.keep == 0 {
                return Err(key_error("log.file.keep", "must keep at least one copy"));
            }
            if file.max_size.as_u64() < 1024 {
                return Err(key_error("log.file.max_size", "must be at least 1 KiB"));
            }
        }
        for table in self.retention.ttl.keys() {
            if !schema::tables().any(|t| t.name == table && t.default_ttl.is_some()) {
                let known: Vec<_> = schema::tables()
                    .filter(|t| t.default_ttl.is_some())
                    .map(|t| t.name)
                    .collect();
                return Err(key_error(
                    format!("retention.ttl.{table}"),
                    format!(
                        "no table with a TTL is named so; known: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        if self.ingest.max_concurrent_requests == 0 {
            return Err(key_error(
                "ingest.max_concurrent_requests",
                "must be above zero",
            ));
        }
        if self.batch.max_rows == 0 || self.batch.max_age.is_zero() {
            return Err(key_error(
                "batch",
                "max_rows and max_age must be above zero",
            ));
        }
        if self.queue.max_bytes < self.ingest.max_request_size {
            return Err(key_error(
                "queue.max_bytes",
                "must be at least ingest.max_request_size, or no large request could be queued",
            ));
        }
        if self.sink.retry_initial_backoff.is_zero()
            || self.sink.retry_max_backoff < self.sink.retry_initial_backoff
        {
            return Err(key_error(
                "sink.retry_max_backoff",
                "backoffs must be above zero, the maximum at least the initial one",
            ));
        }
        crate::ingest::redact::Redactor::new(&self.redaction)
            .map_err(|e| key_error("redaction.extra_patterns", e.to_string()))?;
        if self.metrics.max_label_values == 0 {
            return Err(key_error("metrics.max_label_values", "must be above zero"));
        }
        if self.metrics.integration_status_interval.is_zero() {
            return Err(key_error(
                "metrics.integration_status_interval",
                "must be above zero",
            ));
        }
        if self.retention.size_check_interval.is_zero() {
            return Err(key_error(
                "retention.size_check_interval",
                "must be above zero",
            ));
        }
        if self.settings.refresh_interval.is_zero() {
            return Err(key_error("settings.refresh_interval", "must be above zero"));
        }
        self.notify
            .validate()
            .map_err(|(key, message)| key_error(key, message))?;
        Ok(())
    }

    /// Settings that are valid but work against each other: `check-config` prints these and
    /// `serve` logs them.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        // A batch cut by bytes needs its bytes in the queue; with less room than two batches,
        // the queue refuses senders while the batch waits for max_age.
        if self.queue.max_bytes.as_u64() < 2 * self.batch.max_bytes.as_u64() {
            warnings.push(format!(
                "queue.max_bytes ({}) is less than twice batch.max_bytes ({}): the queue fills \
                 before a batch is full by bytes, so senders get 429 while each batch waits \
                 for batch.max_age; raise queue.max_bytes or lower batch.max_bytes",
                self.queue.max_bytes, self.batch.max_bytes
            ));
        }
        if self.metrics.notify_min_severity.is_some() {
            warnings.push(
                "metrics.notify_min_severity is deprecated: the alert rules and the emails share \
                 notify.rules.min_severity (a setting the HTTP API may change); it was taken as \
                 that key's value, move it there"
                    .into(),
            );
        }
        warnings
    }

    /// A configuration with every optional part present: the shape the environment overrides
    /// and the configuration reference are derived from. A new optional section or map must
    /// be filled in here.
    pub(crate) fn example() -> Config {
        let mut config = Config::default();
        config.log.file = Some(LogFileConfig {
            path: "/var/log/logbook/logbook.log".into(),
            max_size: default_log_file_max_size(),
            keep: default_log_file_keep(),
            compress: true,
        });
        config.retention.otel_logs_low_severity_ttl = Some(Duration::from_secs(86_400));
        config
            .retention
            .ttl
            .insert("api_calls".into(), Duration::from_secs(86_400));
        config.ingest.tokens.insert("svc".into(), Secret::new("x"));
        // Deprecated keys still have their environment variable.
        config.metrics.notify_min_severity = Some("warning".into());
        // Secrets are told apart by their masked form, so each must be set.
        config.clickhouse.password = Secret::new("x");
        config.clickhouse.cluster = Some("logbook".into());
        config
    }

    /// The effective configuration as TOML, secrets masked: what `check-config` prints.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).expect("configuration always serializes")
    }
}

/// One layer of configuration (the file, or the environment) for `figment`, which merges the
/// layers and says which one a bad value came from.
struct Layer {
    metadata: Metadata,
    table: toml::Table,
}

impl Layer {
    fn new(metadata: Metadata, table: toml::Table) -> Layer {
        Layer { metadata, table }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict = figment::value::Value::serialize(&self.table)?
            .into_dict()
            .expect("a table serializes to a dictionary");
        Ok(Profile::Default.collect(dict))
    }
}

/// A `figment` error as a [`ConfigError`] naming the dotted key, and the variable when an
/// environment override set it.
fn figment_error(error: figment::Error, variables: &BTreeMap<String, String>) -> ConfigError {
    let mut path = error.path.clone();
    if let figment::error::Kind::UnknownField(field, _) = &error.kind {
        path.push(field.clone());
    }
    let key = if path.is_empty() {
        "(top level)".to_owned()
    } else {
        path.join(".")
    };
    let mut message = error.kind.to_string();
    let from = (1..=error.path.len())
        .rev()
        .find_map(|n| variables.get(&error.path[..n].join(".")));
    if let Some(var) = from {
        message.push_str(&format!(" (set by {var})"));
    }
    key_error(key, message)
}

/// Whether the dotted `key` is present in `table`.
fn has_key(table: &toml::Table, key: &str) -> bool {
    let mut node = Some(table);
    let mut parts = key.split('.').peekable();
    while let (Some(part), Some(t)) = (parts.next(), node) {
        if parts.peek().is_none() {
            return t.contains_key(part);
        }
        node = t.get(part).and_then(toml::Value::as_table);
    }
    false
}

fn set_key(table: &mut toml::Table, dotted: &str, value: toml::Value) -> Result<(), ConfigError> {
    let (parents, leaf) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut node = table;
    for part in parents.split('.').filter(|p| !p.is_empty()) {
        node = node
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| key_error(part, "must be a table"))?;
    }
    node.insert(leaf.to_owned(), value);
    Ok(())
}

/// ClickHouse identifiers logbook accepts unquoted-safe: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_smaller_than_two_batches_is_warned_about() {
        assert_eq!(Config::default().warnings(), Vec::<String>::new());
        let config = load_str("[queue]\nmax_bytes = \"32 MiB\"\n", &[]).unwrap();
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with(
                "queue.max_bytes (32.0 MiB) is less than twice batch.max_bytes (32.0 MiB)"
            ),
            "{warnings:?}"
        );
    }

    #[test]
    fn the_deprecated_min_severity_key_still_works_with_a_warning() {
        let config = load_str("[metrics]\nnotify_min_severity = \"warning\"\n", &[]).unwrap();
        assert_eq!(config.notify.rules.min_severity, "warning");
        let warnings = config.warnings();
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("metrics.notify_min_severity is deprecated")),
            "{warnings:?}"
        );
        let config = load_str("", &[("LOGBOOK_METRICS_NOTIFY_MIN_SEVERITY", "info")]).unwrap();
        assert_eq!(config.notify.rules.min_severity, "info");
        // Agreeing with the new key is fine; disagreeing names both.
        let both = "[metrics]\nnotify_min_severity = \"critical\"\n\
                    [notify.rules]\nmin_severity = \"critical\"\n";
        assert_eq!(
            load_str(both, &[]).unwrap().notify.rules.min_severity,
            "critical"
        );
        let err = load_str(
            &both.replace("= \"critical\"\n[notify", "= \"info\"\n[notify"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("metrics.notify_min_severity")
                && err.contains("notify.rules.min_severity"),
            "{err}"
        );
        let err = load_str("[metrics]\nnotify_min_severity = \"loud\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("metrics.notify_min_severity") && err.contains("loud"),
            "{err}"
        );
        assert_eq!(
            Config::load(None, []).unwrap().notify.rules.min_severity,
            "error"
        );
    }

    fn load_str(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logbook.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::load(None, []).unwrap();
        assert_eq!(config.clickhouse.database, "logbook");
        assert_eq!(config.retention.server_logs_max_bytes, ByteSize::gib(10));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load_str("[clickhouse]\nurll = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("clickhouse") && err.contains("urll"), "{err}");
    }

    #[test]
    fn bad_value_is_named_with_its_key() {
        let err = load_str("[server]\nlisten = \"nowhere\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.listen"), "{err}");
        let err = load_str("[retention.ttl]\napi_calls = \"seven days\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("retention.ttl") && err.contains("api_calls"),
            "{err}"
        );
    }

    #[test]
    fn unknown_retention_table_is_refused() {
        let err = load_str("[retention.ttl]\napi_calz = \"7d\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention.ttl.api_calz"), "{err}");
    }

    #[test]
    fn env_overrides_file() {
        let config = load_str(
            "[clickhouse]\nurl = \"http://file:8123\"\n",
            &[
                ("LOGBOOK_CLICKHOUSE_URL", "http://env:8123"),
                ("LOGBOOK_CLICKHOUSE_PASSWORD", "s3cret"),
            ],
        )
        .unwrap();
        assert_eq!(config.clickhouse.url, "http://env:8123");
        assert_eq!(config.clickhouse.password.expose(), "s3cret");
        assert!(!config.to_masked_toml().contains("s3cret"));
    }

    #[test]
    fn every_kind_of_key_is_overridden_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "tok-from-file\n").unwrap();
        let token = token.display().to_string();
        let config = load_str(
            "[ingest]\nmax_concurrent_requests = 4\n",
            &[
                ("LOGBOOK_INGEST_MAX_CONCURRENT_REQUESTS", "8"),
                ("LOGBOOK_QUEUE_FSYNC", "interval"),
                ("LOGBOOK_QUEUE_FSYNC_INTERVAL", "250ms"),
                ("LOGBOOK_BATCH_MAX_BYTES", "8 MiB"),
                ("LOGBOOK_TELEMETRY_ENABLED", "true"),
                ("LOGBOOK_CLICKHOUSE_USER", "1234"),
                ("LOGBOOK_REDACTION_EXTRA_KEYS", r#"["session", "x-auth"]"#),
                ("LOGBOOK_LOG_FILE_PATH", "/tmp/logbook.log"),
                ("LOGBOOK_LOG_FILE_KEEP", "3"),
                ("LOGBOOK_RETENTION_TTL_API_CALLS", "2d"),
                ("LOGBOOK_INGEST_TOKENS_BILLING", "tok-inline"),
                ("LOGBOOK_INGEST_TOKENS_SHOP_FILE", token.as_str()),
            ],
        )
        .unwrap();
        assert_eq!(config.ingest.max_concurrent_requests, 8);
        assert_eq!(config.queue.fsync, FsyncMode::Interval);
        assert_eq!(config.queue.fsync_interval, Duration::from_millis(250));
        assert_eq!(config.batch.max_bytes, ByteSize::mib(8));
        assert!(config.telemetry.enabled);
        assert_eq!(config.clickhouse.user, "1234");
        assert_eq!(config.redaction.extra_keys, ["session", "x-auth"]);
        let file = config.log.file.as_ref().unwrap();
        assert_eq!(
            (file.path.to_str(), file.keep),
            (Some("/tmp/logbook.log"), 3)
        );
        assert_eq!(
            config.retention.ttl["api_calls"],
            Duration::from_secs(2 * 86_400)
        );
        assert_eq!(config.ingest.tokens["billing"].expose(), "tok-inline");
        assert_eq!(config.ingest.tokens["shop"].expose(), "tok-from-file");
    }

    #[test]
    fn a_bad_override_names_its_key_and_variable() {
        let err = load_str("", &[("LOGBOOK_BATCH_MAX_ROWS", "many")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batch.max_rows") && err.contains("LOGBOOK_BATCH_MAX_ROWS"),
            "{err}"
        );
        let err = load_str("", &[("LOGBOOK_SERVER_LISTEN", "nowhere")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("server.listen") && err.contains("LOGBOOK_SERVER_LISTEN"),
            "{err}"
        );
    }

    #[test]
    fn credentials_in_url_are_refused() {
        let err = load_str("[clickhouse]\nurl = \"http://u:p@h:8123\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("clickhouse.url"), "{err}");
    }

    #[test]
    fn database_must_be_an_identifier() {
        let err = load_str("[clickhouse]\ndatabase = \"x; DROP\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("clickhouse.database"), "{err}");
    }

    #[test]
    fn cluster_must_be_an_identifier_and_comes_from_the_environment() {
        let err = load_str("[clickhouse]\ncluster = \"c` ON x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("clickhouse.cluster"), "{err}");
        let config = load_str("", &[("LOGBOOK_CLICKHOUSE_CLUSTER", "logbook")]).unwrap();
        assert_eq!(config.clickhouse.cluster.as_deref(), Some("logbook"));
        assert_eq!(load_str("", &[]).unwrap().clickhouse.cluster, None);
    }
}

#[cfg(test)]
mod reference_tests {
    use super::*;

    fn keys(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
        match value {
            toml::Value::Table(table) => {
                for (k, v) in table {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    if prefix == "retention.ttl" {
                        out.push("retention.ttl.<table>".into());
                    } else if prefix == "ingest.tokens" {
                        out.push("ingest.tokens.<service>".into());
                    } else {
                        keys(&key, v, out);
                    }
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }

    /// Every key of a fully populated configuration is in docs/configuration.md and
    /// config/logbook.toml.
    #[test]
    fn every_key_is_documented() {
        let config = Config::example();
        let mut all = Vec::new();
        keys("", &toml::Value::try_from(&config).unwrap(), &mut all);
        let root = env!("CARGO_MANIFEST_DIR");
        let reference = std::fs::read_to_string(format!("{root}/docs/configuration.md")).unwrap();
        let sample = std::fs::read_to_string(format!("{root}/config/logbook.toml")).unwrap();
        for key in all {
            assert!(
                reference.contains(&format!("`{key}`")),
                "docs/configuration.md lacks {key}"
            );
            let leaf = key.rsplit('.').next().unwrap();
            let leaf = match leaf {
                "<table>" => "[retention.ttl]",
                "<service>" => "[ingest.tokens]",
                leaf => leaf,
            };
            assert!(sample.contains(leaf), "config/logbook.toml lacks {key}");
        }
        for example in [
            "`LOGBOOK_LOG_FILE_MAX_SIZE`",
            "`LOGBOOK_INGEST_TOKENS_<SERVICE>`",
        ] {
            assert!(
                reference.contains(example),
                "the environment rule lacks {example}"
            );
        }
    }
}
