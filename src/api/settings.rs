//! `/api/v1/settings`: logbook's run-time settings (log level, retention, notifications), kept
//! in ClickHouse by [`crate::settings::SettingsStore`] and so shared by every replica. Each
//! change is written to `audit_activity` with the actor, before and after.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use serde_json::Value;

use super::Api;
use super::audit::{self, Change};
use super::auth::Caller;
use super::error::ApiError;
use super::tokens::Role;
use crate::settings::{self, SettingsError};
use crate::store::migrate::Migrator;

/// A setting, its documentation and its stored value.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Setting {
    pub key: String,
    pub doc: String,
    /// The stored value (any JSON: a string, a number, an object …); null when the
    /// configuration file's applies.
    pub value: Option<Value>,
    /// The lowest role that may change it.
    pub min_role: Role,
}

/// Who may change a key: logbook's own log level and retention are the owner's; the
/// notification settings are also the supervisors'.
fn min_role(key: &str) -> Role {
    if key.starts_with("log.") || key.starts_with("retention.") {
        Role::Owner
    } else {
        Role::Supervisor
    }
}

fn store(api: &Api) -> Result<&settings::SettingsStore, ApiError> {
    api.settings
        .as_deref()
        .ok_or_else(|| ApiError::Unavailable("settings are not loaded on this replica".into()))
}

impl From<SettingsError> for ApiError {
    fn from(error: SettingsError) -> Self {
        match error {
            SettingsError::UnknownKey(key) => ApiError::NotFound(format!("no setting {key:?}")),
            SettingsError::Invalid { .. } => ApiError::Invalid(error.to_string()),
            SettingsError::Store(e) => ApiError::Unavailable(e.to_string()),
        }
    }
}

pub(super) async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
) -> Result<Json<Vec<Setting>>, ApiError> {
    caller.require_platform(Role::Supervisor)?;
    let stored = store(&api)?.all();
    Ok(Json(
        settings::keys()
            .map(|k| Setting {
                key: k.name.into(),
                doc: k.doc.into(),
                value: stored.get(k.name).cloned(),
                min_role: min_role(k.name),
            })
            .collect(),
    ))
}

pub(super) async fn put(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Setting>, ApiError> {
    let def =
        settings::key(&key).ok_or_else(|| ApiError::NotFound(format!("no setting {key:?}")))?;
    caller.require_platform(min_role(&key))?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Invalid(format!("the body must be the value as JSON: {e}")))?;
    let change = store(&api)?.put(&key, value, &caller.0.name).await?;
    record(&api, &caller, &change, "modify").await?;
    api.apply(&change.key).await?;
    Ok(Json(Setting {
        key: def.name.into(),
        doc: def.doc.into(),
        value: change.after,
        min_role: min_role(def.name),
    }))
}

pub(super) async fn reset(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<Setting>, ApiError> {
    let def =
        settings::key(&key).ok_or_else(|| ApiError::NotFound(format!("no setting {key:?}")))?;
    caller.require_platform(min_role(&key))?;
    let change = store(&api)?.reset(&key, &caller.0.name).await?;
    record(&api, &caller, &change, "delete").await?;
    api.apply(&change.key).await?;
    Ok(Json(Setting {
        key: def.name.into(),
        doc: def.doc.into(),
        value: None,
        min_role: min_role(def.name),
    }))
}

async fn record(
    api: &Api,
    caller: &Caller,
    change: &settings::Change,
    event_type: &str,
) -> Result<(), ApiError> {
    audit::record(
        api,
        caller,
        Change {
            category: "settings",
            event_type,
            summary: format!("setting {} changed", change.key),
            before: serde_json::json!({ &change.key: change.before }),
            after: serde_json::json!({ &change.key: change.after }),
        },
    )
    .await
}

/// The file's retention with the stored `retention.ttl` over it.
pub fn retention_with_settings(
    config: &crate::config::Config,
    store: &settings::SettingsStore,
) -> crate::config::Config {
    let mut config = config.clone();
    let stored: std::collections::BTreeMap<String, String> =
        store.get("retention.ttl").unwrap_or_default();
    for (table, ttl) in stored {
        if let Ok(ttl) = humantime::parse_duration(&ttl) {
            config.retention.ttl.insert(table, ttl);
        }
    }
    config
}

impl Api {
    /// Puts a changed setting into effect on this replica: the log level at once; retention
    /// through the migration, which changes the tables' TTL in ClickHouse (so for every
    /// replica).
    pub(super) async fn apply(&self, key: &str) -> Result<(), ApiError> {
        match key {
            "log.level" => self.apply_log_level(),
            "retention.ttl" => {
                let (Some(config), Some(store)) = (&self.app_config, &self.settings) else {
                    return Ok(());
                };
                let config = retention_with_settings(config, store);
                let client = crate::store::server_client(&config.clickhouse);
                let steps = Migrator::new(client, &config)
                    .run(false)
                    .await
                    .map_err(|e| ApiError::Unavailable(format!("retention not applied: {e}")))?;
                for step in steps {
                    tracing::info!(step = %step.description, "retention setting applied");
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Sets the running log level to the stored `log.level`, or the file's when none is.
    fn apply_log_level(&self) -> Result<(), ApiError> {
        let (Some(handle), Some(store), Some(config)) =
            (&self.level, &self.settings, &self.app_config)
        else {
            return Ok(());
        };
        let wanted: String = store
            .get("log.level")
            .unwrap_or_else(|| config.log.level.clone());
        handle
            .set(&wanted)
            .map_err(|e| ApiError::Invalid(format!("log.level: {e}")))
    }
}

/// Follows `log.level` as the settings store refreshes: a change made through any replica
/// applies here within `interval` (plus the store's own refresh interval).
pub async fn follow_log_level(
    api: Arc<Api>,
    interval: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut applied: Option<Option<Value>> = None;
    loop {
        let now = api.settings.as_ref().and_then(|s| s.get_raw("log.level"));
        if applied.as_ref() != Some(&now) {
            match api.apply_log_level() {
                Ok(()) => {
                    tracing::info!(level = ?now, "log level applied");
                    applied = Some(now);
                }
                Err(error) => tracing::warn!(%error, "stored log level not applied"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
