//! `/api/v1/logs/{kind}` and `/api/v1/logs/{kind}/{id}`: every log kind, one implementation.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde::Serialize;

use super::Api;
use super::auth::Caller;
use super::error::ApiError;
use super::tokens::Role;
use crate::query::filter::{FilterType, filter_columns};
use crate::query::{self, Detail, Page};
use crate::schema::{self, KINDS, TableDef};

fn kind(name: &str) -> Result<&'static TableDef, ApiError> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.name == name)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no log kind {name:?}; kinds: {}",
                KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
            ))
        })
}

pub(super) fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

pub(super) async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page>, ApiError> {
    let table = kind(&name)?;
    caller.may_read(table)?;
    let limits = &api.config.limits;
    let request = query::parse_list(
        table,
        &query_pairs(raw.as_deref()),
        caller.tenant(),
        limits.default_page_size,
        limits.max_page_size,
    )?;
    Ok(Json(
        query::rows::list(&api.client, limits, table, &request).await?,
    ))
}

pub(super) async fn detail(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Detail>, ApiError> {
    let table = kind(&name)?;
    caller.may_read(table)?;
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| ApiError::Invalid(format!("{id:?} is not a row id (a UUID)")))?;
    query::rows::detail(&api.client, &api.config.limits, table, id, caller.tenant())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no {} row {id}", table.name)))
}

/// A log kind and what its list accepts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KindInfo {
    pub name: String,
    pub doc: String,
    /// The reference document and screen it replaces.
    pub reference: String,
    pub filters: Vec<FilterInfo>,
    /// Columns `q` searches.
    pub search: Vec<String>,
    /// Whether reading it needs the `view_audit_logs` permission.
    pub needs_view_audit_logs: bool,
    /// The lowest role that may read it.
    pub min_role: Role,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FilterInfo {
    pub name: String,
    pub doc: String,
    /// text, number or bool.
    pub r#type: String,
    /// The only values accepted, for enumerations.
    pub one_of: Vec<String>,
}

pub fn kind_info(table: &TableDef) -> KindInfo {
    KindInfo {
        name: table.name.into(),
        doc: table.doc.into(),
        reference: table.reference.into(),
        filters: filter_columns(table)
            .map(|(c, ty)| FilterInfo {
                name: c.name.into(),
                doc: c.doc.into(),
                r#type: match ty {
                    FilterType::Text => "text",
                    FilterType::Number => "number",
                    FilterType::Bool => "bool",
                }
                .into(),
                one_of: c.one_of.iter().map(|v| (*v).to_owned()).collect(),
            })
            .collect(),
        search: table
            .all_columns()
            .filter(|c| c.role == schema::Role::Search)
            .map(|c| c.name.to_owned())
            .collect(),
        needs_view_audit_logs: matches!(table.name, "audit_activity" | "access_logs"),
        min_role: if table.name == "api_calls" {
            Role::BotBuilder
        } else {
            Role::Viewer
        },
    }
}

pub(super) async fn kinds(_caller: Caller) -> Json<Vec<KindInfo>> {
    Json(KINDS.iter().map(|k| kind_info(k)).collect())
}
