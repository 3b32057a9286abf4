//! `/api/v1/findings`: records that got no typed row, or were stored with warnings, so that
//! the team that sent them can find and fix each one (docs/schema.md, "Rejected records").

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};

use super::Api;
use super::auth::Caller;
use super::error::ApiError;
use super::logs::query_pairs;
use crate::query::findings::{self, FindingsPage};

/// Any role: a tenant-bound token sees its tenant's records only.
pub(super) async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<FindingsPage>, ApiError> {
    let limits = &api.config.limits;
    let now_ns =
        i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX);
    let request = findings::parse(
        &query_pairs(raw.as_deref()),
        caller.tenant(),
        now_ns,
        limits.default_page_size,
        limits.max_page_size,
    )?;
    Ok(Json(findings::list(&api.client, limits, &request).await?))
}
