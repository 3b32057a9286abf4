//! logbook's HTTP server on `server.listen`: `/healthz`, `/readyz` and `/metrics`, open to
//! all, and the authenticated API under `/api/` (docs/api.md): every log kind filtered and
//! searchable, integration health, settings and maintenance, with tokens, roles, a rate
//! limit per token, an `access_logs` row per request and an OpenAPI document built from code.

mod access_log;
mod audit;
mod auth;
mod config;
mod error;
mod findings;
mod health;
mod integrations;
mod logs;
mod maintenance;
mod openapi;
mod settings;
pub mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use access_log::AccessLogger;
pub use config::ApiConfig;
pub use error::{ApiError, ErrorBody};
pub use health::Readiness;
pub use settings::{follow_log_level, retention_with_settings};

use crate::config::{ClickHouseConfig, LogFileConfig};
use crate::logging::LevelHandle;
use crate::metrics::Metrics;
use crate::schema::ddl::Ddl;

#[derive(Clone)]
pub struct AppState {
    pub readiness: Arc<Readiness>,
    pub metrics: Arc<Metrics>,
    /// Sets the minimum-severity gauge from the settings store at scrape time.
    pub min_severity: Option<Arc<crate::notify::settings::SeverityGauge>>,
}

/// What the authenticated routes share.
pub struct Api {
    /// Bound to logbook's database.
    pub client: clickhouse::Client,
    pub config: ApiConfig,
    pub tokens: tokens::TokenStore,
    pub limiter: auth::Limiter,
    pub access_log: AccessLogger,
    /// logbook's own log files (`log.file`), for the maintenance routes.
    pub log_file: Option<LogFileConfig>,
    /// The running log level, for the settings.
    pub level: Option<LevelHandle>,
    /// The ClickHouse request timeout, for writes.
    pub write_timeout: std::time::Duration,
    /// Statements that change rows (purges) name the tables holding them: on a cluster, every
    /// server's local tables.
    pub ddl: Ddl,
    /// The run-time settings shared by every replica.
    pub settings: Option<Arc<crate::settings::SettingsStore>>,
    /// The configuration logbook started with: the file's log level and retention, which a
    /// reset setting falls back to.
    pub app_config: Option<crate::config::Config>,
}

impl Api {
    pub fn new(
        client: clickhouse::Client,
        config: ApiConfig,
        access_log: AccessLogger,
        clickhouse: &ClickHouseConfig,
    ) -> Api {
        let write_timeout = clickhouse.request_timeout;
        Api {
            tokens: tokens::TokenStore::new(client.clone(), write_timeout, config.token_refresh),
            limiter: auth::Limiter::new(config.rate_limit_per_second, config.rate_limit_burst),
            client,
            config,
            access_log,
            log_file: None,
            level: None,
            write_timeout,
            ddl: Ddl::for_config(clickhouse),
            settings: None,
            app_config: None,
        }
    }
}

/// The HTTP routes. Health checks and metrics need no authentication; everything under
/// `/api/` does.
pub fn app(state: AppState, api: Arc<Api>) -> Router {
    let authenticated = Router::new()
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/v1/kinds", get(logs::kinds))
        .route("/api/v1/logs/{kind}", get(logs::list))
        .route("/api/v1/logs/{kind}/{id}", get(logs::detail))
        .route("/api/v1/findings", get(findings::list))
        .route("/api/v1/integrations", get(integrations::list))
        .route("/api/v1/settings", get(settings::list))
        .route(
            "/api/v1/settings/{key}",
            axum::routing::put(settings::put).delete(settings::reset),
        )
        .route("/api/v1/maintenance/purge", post(maintenance::purge))
        .route("/api/v1/maintenance/log-files", get(maintenance::log_files))
        .route(
            "/api/v1/maintenance/log-files/{name}",
            get(maintenance::download).delete(maintenance::delete),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            auth::authenticate,
        ))
        .with_state(api);
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(state)
        .merge(authenticated)
}

async fn not_found(_caller: auth::Caller) -> ApiError {
    ApiError::NotFound("no such route".into())
}
