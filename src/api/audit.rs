//! `audit_activity` rows for what the API changes: actor, time, before and after.

use super::Api;
use super::auth::Caller;
use super::error::ApiError;
use crate::schema::{AuditActivity, RowId, Ts};

/// One change made through the API.
pub struct Change<'a> {
    pub category: &'a str,
    pub event_type: &'a str,
    pub summary: String,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

/// Writes the change to `audit_activity` before the caller hears it succeeded.
pub async fn record(api: &Api, caller: &Caller, change: Change<'_>) -> Result<(), ApiError> {
    let row = AuditActivity {
        id: RowId(uuid::Uuid::now_v7()),
        time: Ts::now(),
        tenant: caller.0.tenant.clone().unwrap_or_default(),
        service: "logbook".into(),
        actor_name: caller.0.name.clone(),
        category: change.category.into(),
        event_type: change.event_type.into(),
        summary: change.summary,
        before: change.before.to_string(),
        after: change.after.to_string(),
        ..AuditActivity::default()
    };
    let write = async {
        let mut insert = api.client.insert::<AuditActivity>("audit_activity").await?;
        insert.write(&row).await?;
        insert.end().await
    };
    tokio::time::timeout(api.write_timeout, write)
        .await
        .map_err(|_| ApiError::Unavailable("audit insert timed out".into()))?
        .map_err(|e| ApiError::Internal(format!("audit insert failed: {e}")))
}
