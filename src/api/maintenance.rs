//! Maintenance, for owners with a token for every tenant, each change confirmed explicitly:
//! purging a kind's rows for a time range or a tenant, and logbook's own rotated log files
//! (system-logs.txt: download, view, delete).

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Api;
use super::audit::{self, Change};
use super::auth::Caller;
use super::error::ApiError;
use super::tokens::Role;
use crate::query::filter::{Value, Where};
use crate::schema::{ERRORS, KINDS};

/// Most daily partitions one purge may drop.
const MAX_PARTITIONS: i64 = 400;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// The log kind (table) to purge.
    #[schema(schema_with = kind_names)]
    pub kind: String,
    /// Oldest time to delete (RFC 3339), inclusive.
    pub from: Option<String>,
    /// Newest time to delete (RFC 3339), exclusive.
    pub to: Option<String>,
    /// Delete only this tenant's rows.
    pub tenant: Option<String>,
    /// Must repeat `kind`: a purge cannot be undone.
    pub confirm: String,
}

/// `kind`'s schema: one of the log kinds' names.
fn kind_names() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(KINDS.iter().map(|k| k.name)))
        .description(Some("The log kind (table) to purge."))
        .build()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PurgeResult {
    pub kind: String,
    /// `drop_partition` (whole UTC days, every tenant) or `lightweight_delete`.
    pub method: String,
    /// Rows matched before the purge.
    pub rows: u64,
    /// Rows of `errors` made from the purged rows, deleted with them.
    pub error_rows: u64,
}

fn time_of(key: &str, value: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339)
                .map_err(|e| ApiError::Invalid(format!("{key} must be an RFC 3339 time: {e}")))
        })
        .transpose()
}

fn nanos(t: OffsetDateTime) -> Result<i64, ApiError> {
    i64::try_from(t.unix_timestamp_nanos())
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| ApiError::Invalid("time out of range".into()))
}

async fn bounded<T>(
    api: &Api,
    future: impl Future<Output = Result<T, clickhouse::error::Error>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(api.write_timeout, future)
        .await
        .map_err(|_| ApiError::Unavailable("clickhouse did not answer in time".into()))?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

async fn count(api: &Api, table: &str, filters: &Where) -> Result<u64, ApiError> {
    let sql = format!("SELECT count() FROM `{table}` WHERE {}", filters.sql());
    bounded(
        api,
        filters.apply(api.client.query(&sql)).fetch_one::<u64>(),
    )
    .await
}

fn is_midnight(t: OffsetDateTime) -> bool {
    t.offset().is_utc() && t.time() == time::Time::MIDNIGHT
}

/// Whole UTC days with no tenant drop their daily partitions (instant, no rewrite); anything
/// else is a lightweight `DELETE` (rows masked at once, removed by later merges).
pub(super) async fn purge(
    State(api): State<Arc<Api>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<PurgeResult>, ApiError> {
    caller.require_platform(Role::Owner)?;
    let request: PurgeRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Invalid(format!("the body is not a purge request: {e}")))?;
    let table = KINDS
        .iter()
        .find(|k| k.name == request.kind)
        .ok_or_else(|| ApiError::NotFound(format!("no log kind {:?}", request.kind)))?;
    if request.confirm != request.kind {
        return Err(ApiError::Invalid(
            "confirm must repeat the kind being purged".into(),
        ));
    }
    let from = time_of("from", request.from.as_deref())?;
    let to = time_of("to", request.to.as_deref())?;
    if from.is_none() && to.is_none() && request.tenant.is_none() {
        return Err(ApiError::Invalid(
            "give a time range (from, to), a tenant, or both".into(),
        ));
    }
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(ApiError::Invalid("from must be before to".into()));
    }
    let mut filters = Where::default();
    if let Some(from) = from {
        let p = filters.bind("Int64", Value::Int(nanos(from)?));
        filters
            .conditions
            .push(format!("time >= fromUnixTimestamp64Nano({p})"));
    }
    if let Some(to) = to {
        let p = filters.bind("Int64", Value::Int(nanos(to)?));
        filters
            .conditions
            .push(format!("time < fromUnixTimestamp64Nano({p})"));
    }
    if let Some(tenant) = &request.tenant {
        let p = filters.bind("String", Value::Str(tenant.clone()));
        filters.conditions.push(format!("tenant = {p}"));
    }
    // The copies of its error rows in `errors` (same time and tenant) go with them.
    let errors = table.errors.is_some().then(|| {
        let mut errors = filters.clone();
        let p = errors.bind("String", Value::Str(table.name.into()));
        errors.conditions.push(format!("kind = {p}"));
        errors
    });
    let rows = count(&api, table.name, &filters).await?;
    let error_rows = match &errors {
        Some(errors) => count(&api, ERRORS.name, errors).await?,
        None => 0,
    };
    let whole_days = match (from, to, &request.tenant) {
        (Some(from), Some(to), None) if is_midnight(from) && is_midnight(to) => {
            let days = (to - from).whole_days();
            (days <= MAX_PARTITIONS).then_some((from.date(), days))
        }
        _ => None,
    };
    let method = match whole_days {
        Some((first, days)) => {
            for day in 0..days {
                let date = first + time::Duration::days(day);
                // The partition id of `toDate(time)` is the date as YYYYMMDD, made here from a
                // parsed date: no caller text reaches the statement.
                let id = format!(
                    "{:04}{:02}{:02}",
                    date.year(),
                    u8::from(date.month()),
                    date.day()
                );
                let sql = api.ddl.drop_partition(table.name, &id);
                bounded(&api, api.client.query(&sql).execute()).await?;
            }
            "drop_partition"
        }
        None => {
            let sql = api.ddl.delete_where(table.name, &filters.sql());
            bounded(&api, filters.apply(api.client.query(&sql)).execute()).await?;
            "lightweight_delete"
        }
    };
    if let Some(errors) = errors.filter(|_| error_rows > 0) {
        let sql = api.ddl.delete_where(ERRORS.name, &errors.sql());
        bounded(&api, errors.apply(api.client.query(&sql)).execute()).await?;
    }
    let result = PurgeResult {
        kind: table.name.into(),
        method: method.into(),
        rows,
        error_rows,
    };
    audit::record(
        &api,
        &caller,
        Change {
            category: "maintenance",
            event_type: "delete",
            summary: format!(
                "purged {rows} rows of {} ({method}) and {error_rows} of errors",
                table.name
            ),
            before: json!({"kind": table.name, "from": request.from, "to": request.to, "tenant": request.tenant, "rows": rows, "error_rows": error_rows}),
            after: json!({"rows": 0, "error_rows": 0}),
        },
    )
    .await?;
    Ok(Json(result))
}

/// One of logbook's log files.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogFile {
    pub name: String,
    pub bytes: u64,
    /// Last modified (RFC 3339).
    pub modified: String,
    /// The file logbook writes to now (it cannot be deleted).
    pub active: bool,
}

/// The directory and active file name of `log.file`, or 404 when logbook writes no files.
fn log_dir(api: &Api) -> Result<(PathBuf, String), ApiError> {
    let config = api.log_file.as_ref().ok_or_else(|| {
        ApiError::NotFound("logbook writes no log files here (log.file is not set)".into())
    })?;
    let name = config
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = config
        .path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((dir, name))
}

/// This replica's log files: the active one and its rotated, compressed copies.
fn files(api: &Api) -> Result<Vec<LogFile>, ApiError> {
    let (dir, active) = log_dir(api)?;
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| ApiError::Internal(format!("cannot list {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || !(name == active || name.starts_with(&format!("{active}."))) {
            continue;
        }
        let modified = meta
            .modified()
            .map(OffsetDateTime::from)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default();
        out.push(LogFile {
            active: name == active,
            name,
            bytes: meta.len(),
            modified,
        });
    }
    out.sort_by(|a, b| b.name.cmp(&a.name));
    Ok(out)
}

/// A listed file by name: names come from the listing, so no path reaches the file system.
fn find(api: &Api, name: &str) -> Result<(PathBuf, LogFile), ApiError> {
    let (dir, _) = log_dir(api)?;
    let file = files(api)?
        .into_iter()
        .find(|f| f.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no log file {name:?}")))?;
    Ok((dir.join(&file.name), file))
}

pub(super) async fn log_files(
    State(api): State<Arc<Api>>,
    caller: Caller,
) -> Result<Json<Vec<LogFile>>, ApiError> {
    caller.require_platform(Role::Owner)?;
    Ok(Json(files(&api)?))
}

pub(super) async fn download(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require_platform(Role::Owner)?;
    let (path, file) = find(&api, &name)?;
    let handle = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot open {}: {e}", path.display())))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(handle));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", file.name),
            ),
        ],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Confirm {
    /// Must repeat the file name.
    pub confirm: Option<String>,
}

pub(super) async fn delete(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(name): Path<String>,
    axum::extract::Query(confirm): axum::extract::Query<Confirm>,
) -> Result<Json<LogFile>, ApiError> {
    caller.require_platform(Role::Owner)?;
    let (path, file) = find(&api, &name)?;
    if confirm.confirm.as_deref() != Some(file.name.as_str()) {
        return Err(ApiError::Invalid(
            "confirm must repeat the file name".into(),
        ));
    }
    if file.active {
        return Err(ApiError::Invalid(
            "the active log file cannot be deleted; only rotated copies".into(),
        ));
    }
    tokio::fs::remove_file(&path)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot delete {}: {e}", path.display())))?;
    audit::record(
        &api,
        &caller,
        Change {
            category: "maintenance",
            event_type: "delete",
            summary: format!("deleted log file {}", file.name),
            before: json!({"file": file.name, "bytes": file.bytes}),
            after: serde_json::Value::Null,
        },
    )
    .await?;
    Ok(Json(file))
}
