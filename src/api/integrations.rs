//! `/api/v1/integrations`: every integration's status (Active / Error / Disabled, by the one
//! rule of [`crate::query::integrations`], which the metrics use too), its recent sync runs
//! with their lifecycle statuses, the next expected run, the 24 h error rate and the error
//! email toggle (integration-health.txt).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::{Map, Value as Json_};
use time::OffsetDateTime;

use super::Api;
use super::auth::Caller;
use super::error::ApiError;
use crate::query::filter::{Value, Where};
use crate::query::integrations;
use crate::query::{self, QueryError};
use crate::schema::{IntegrationSyncRun, LogKind};

/// Recent runs shown per integration.
const RECENT_RUNS: u32 = 10;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Integration {
    pub integration: String,
    /// active, error or disabled.
    pub status: String,
    /// Status of its last finished run (completed or error).
    pub last_outcome: Option<String>,
    /// Last successful run, Unix seconds.
    pub last_success: Option<i64>,
    /// Seconds between scheduled runs.
    pub sync_interval_s: Option<u32>,
    /// When the next run is expected, Unix seconds.
    pub next_run: Option<i64>,
    /// Share of its finished runs that ended in error over the last 24 hours (null: none).
    pub error_rate_24h: Option<f64>,
    /// Whether the ≥30 % error-rate email is on for it.
    pub error_email: bool,
    /// Its newest sync runs (created → pending → executing → completed / error).
    #[schema(value_type = Vec<Object>)]
    pub recent_runs: Vec<Map<String, Json_>>,
}

#[derive(Debug, serde::Deserialize, clickhouse::Row)]
struct Rate {
    integration: String,
    errors: u64,
    finished: u64,
}

pub(super) async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
) -> Result<Json<Vec<Integration>>, ApiError> {
    let now = OffsetDateTime::now_utc();
    let health = match caller.tenant() {
        Some(tenant) => integrations::tenant_health(&api.client, tenant, now).await,
        None => integrations::health(&api.client, now).await,
    }
    .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let rates = error_rates(&api, caller.tenant()).await?;
    let toggles: BTreeMap<String, bool> = api
        .settings
        .as_ref()
        .and_then(|s| s.get("notify.rules.error_rate.integrations"))
        .unwrap_or_default();
    let default_on: bool = api
        .settings
        .as_ref()
        .and_then(|s| s.get("notify.rules.error_rate.default_enabled"))
        .unwrap_or(true);
    let limits = &api.config.limits;
    let mut out = Vec::new();
    for h in health {
        let pairs = [
            ("integration".to_owned(), h.integration.clone()),
            ("limit".to_owned(), RECENT_RUNS.to_string()),
        ];
        let request = query::parse_list(
            IntegrationSyncRun::TABLE,
            &pairs,
            caller.tenant(),
            RECENT_RUNS,
            RECENT_RUNS,
        )?;
        let runs =
            query::rows::list(&api.client, limits, IntegrationSyncRun::TABLE, &request).await?;
        let rate = rates.get(&h.integration);
        out.push(Integration {
            error_rate_24h: rate
                .filter(|r| r.finished > 0)
                .map(|r| r.errors as f64 / r.finished as f64),
            error_email: toggles.get(&h.integration).copied().unwrap_or(default_on),
            recent_runs: runs.rows,
            status: h.status.as_str().into(),
            last_outcome: h.last_outcome,
            last_success: h.last_success,
            sync_interval_s: h.sync_interval_s,
            next_run: h.next_run,
            integration: h.integration,
        });
    }
    Ok(Json(out))
}

/// Errors and finished runs per integration over the last 24 hours.
async fn error_rates(api: &Api, tenant: Option<&str>) -> Result<BTreeMap<String, Rate>, ApiError> {
    let mut filters = Where::default();
    filters
        .conditions
        .push("time >= now64(9) - INTERVAL 24 HOUR AND status IN ('completed', 'error')".into());
    if let Some(tenant) = tenant {
        let p = filters.bind("String", Value::Str(tenant.to_owned()));
        filters.conditions.push(format!("tenant = {p}"));
    }
    let sql = format!(
        "SELECT integration, countIf(status = 'error') AS errors, count() AS finished \
         FROM `{}` WHERE {} GROUP BY integration",
        IntegrationSyncRun::TABLE.name,
        filters.sql()
    );
    let limits = &api.config.limits;
    let query = limits.apply(filters.apply(api.client.query(&sql)));
    let rows = tokio::time::timeout(limits.client_timeout(), query.fetch_all::<Rate>())
        .await
        .map_err(|_| ApiError::from(QueryError::Timeout(limits.client_timeout())))?
        .map_err(|e| ApiError::from(query::classify(e)))?;
    Ok(rows
        .into_iter()
        .map(|r| (r.integration.clone(), r))
        .collect())
}
