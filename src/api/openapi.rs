//! `/api/openapi.json`: the OpenAPI document, built from the code. The log routes are one
//! handler, but the document lists each kind as its own path with the filters its definition
//! declares, so clients and schemathesis see exactly what each kind accepts.

use axum::Json;
use utoipa::ToSchema;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItemBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, KnownFormat, OpenApi, OpenApiBuilder,
    PathsBuilder, Ref, RefOr, Required, ResponseBuilder,
};

use super::auth::Caller;
use super::error::ErrorBody;
use super::logs::{FilterInfo, KindInfo};
use super::maintenance::{LogFile, PurgeRequest, PurgeResult};
use crate::query::filter::{COMMON_PARAMS, FilterType, filter_columns};
use crate::query::{Detail, Page, Related, Span};
use crate::schema::{KINDS, TableDef};

pub(super) async fn document(_caller: Caller) -> Json<OpenApi> {
    Json(build())
}

fn components() -> ComponentsBuilder {
    fn add<T: ToSchema>(builder: ComponentsBuilder) -> ComponentsBuilder {
        let mut nested = Vec::new();
        T::schemas(&mut nested);
        builder.schema_from::<T>().schemas_from_iter(nested)
    }
    let mut builder = ComponentsBuilder::new().security_scheme(
        "token",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    builder = add::<ErrorBody>(builder);
    builder = add::<Page>(builder);
    builder = add::<crate::query::findings::FindingsPage>(builder);
    builder = add::<Detail>(builder);
    builder = add::<Related>(builder);
    builder = add::<Span>(builder);
    builder = add::<KindInfo>(builder);
    builder = add::<FilterInfo>(builder);
    builder = add::<PurgeRequest>(builder);
    builder = add::<PurgeResult>(builder);
    builder = add::<super::settings::Setting>(builder);
    builder = add::<super::integrations::Integration>(builder);
    add::<LogFile>(builder)
}

/// Settings and integration health.
fn admin_paths(mut paths: PathsBuilder) -> PathsBuilder {
    paths = paths.path(
        "/api/v1/integrations",
        get(operation(
            "list_integrations",
            "Every integration: status, recent sync runs, next run, 24 h error rate, error email toggle",
            ok_json(ArrayBuilder::new().items(Ref::from_schema_name("Integration"))),
        )
        .tag("integrations")
        .build()),
    );
    paths = paths.path(
        "/api/v1/settings",
        get(operation(
            "list_settings",
            "Every run-time setting with its stored value (supervisor or owner, every-tenant token)",
            ok_json(ArrayBuilder::new().items(Ref::from_schema_name("Setting"))),
        )
        .tag("settings")
        .build()),
    );
    let key = || {
        path_param(
            "key",
            "The setting's name.",
            string().enum_values(Some(crate::settings::keys().map(|k| k.name))),
        )
    };
    let put = operation(
        "put_setting",
        "Set a setting (the body is its JSON value); applied on every replica within seconds, recorded in audit_activity",
        ok_json(Ref::from_schema_name("Setting")),
    )
    .tag("settings")
    .parameter(key())
    .request_body(Some(
        RequestBodyBuilder::new()
            .content("application/json", ContentBuilder::new().build())
            .required(Some(Required::True))
            .build(),
    ))
    .build();
    let reset = operation(
        "reset_setting",
        "Remove a stored setting: the configuration file's value applies again",
        ok_json(Ref::from_schema_name("Setting")),
    )
    .tag("settings")
    .parameter(key())
    .build();
    paths.path(
        "/api/v1/settings/{key}",
        PathItemBuilder::new()
            .operation(HttpMethod::Put, put)
            .operation(HttpMethod::Delete, reset)
            .build(),
    )
}

fn json_ref(name: &str) -> ContentBuilder {
    ContentBuilder::new().schema(Some(Ref::from_schema_name(name)))
}

/// An operation with the error answers every authenticated route may give.
fn operation(id: &str, summary: &str, ok: RefOr<utoipa::openapi::Response>) -> OperationBuilder {
    let error = |text: &str| {
        ResponseBuilder::new()
            .description(text)
            .content("application/json", json_ref("ErrorBody").build())
            .build()
    };
    OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(summary))
        .security(SecurityRequirement::new("token", Vec::<String>::new()))
        .response("200", ok)
        .response("401", error("No token, or an unknown or revoked one."))
        .response(
            "403",
            error("The token's role or permissions do not allow this."),
        )
        .response("404", error("No such kind, row, file or route."))
        .response(
            "422",
            error("A parameter is unknown or its value is invalid."),
        )
        .response(
            "429",
            error("The token's rate limit is used up; see Retry-After."),
        )
        .response("500", error("Internal error (logged)."))
        .response(
            "503",
            error("ClickHouse is unavailable, or the query hit its limits."),
        )
}

fn ok_json(schema: impl Into<RefOr<Schema>>) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description("OK")
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
        .into()
}

fn query(
    name: &str,
    doc: &str,
    schema: impl Into<RefOr<Schema>>,
) -> utoipa::openapi::path::Parameter {
    parameter(name, doc, schema, ParameterIn::Query, Required::False)
}

fn path_param(
    name: &str,
    doc: &str,
    schema: impl Into<RefOr<Schema>>,
) -> utoipa::openapi::path::Parameter {
    parameter(name, doc, schema, ParameterIn::Path, Required::True)
}

fn parameter(
    name: &str,
    doc: &str,
    schema: impl Into<RefOr<Schema>>,
    place: ParameterIn,
    required: Required,
) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(required)
        .description(Some(doc))
        .schema(Some(schema))
        .build()
}

/// The schema of a paging parameter every list shares (`from`, `to`, `limit`, `cursor`).
fn paging(name: &str, max_page: u32) -> ObjectBuilder {
    match name {
        "from" | "to" => string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        "limit" => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(max_page)),
        _ => string(),
    }
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// A list operation's parameters, from the kind's definition.
fn list_parameters(table: &TableDef, max_page: u32) -> Vec<utoipa::openapi::path::Parameter> {
    let mut out = Vec::new();
    for (name, doc) in COMMON_PARAMS {
        let schema = match *name {
            "q" => string().min_length(Some(1)).max_length(Some(200)),
            other => paging(other, max_page),
        };
        out.push(query(name, doc, schema));
    }
    for (column, ty) in filter_columns(table) {
        let doc = format!("{} Repeat for any of several values.", column.doc);
        let item = match ty {
            FilterType::Text if !column.one_of.is_empty() => {
                string().enum_values(Some(column.one_of.iter().copied()))
            }
            FilterType::Text => string(),
            FilterType::Bool => ObjectBuilder::new().schema_type(Type::Boolean),
            FilterType::Number => ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(max_of(column.type_name()))),
        };
        let item = Schema::Object(item.build());
        let array = ArrayBuilder::new().items(RefOr::T(item.clone())).build();
        out.push(query(column.name, &doc, array));
        if ty == FilterType::Number {
            out.push(query(
                &format!("{}_min", column.name),
                "At least this.",
                item.clone(),
            ));
            out.push(query(
                &format!("{}_max", column.name),
                "At most this.",
                item,
            ));
        }
    }
    out
}

fn max_of(ty: &str) -> u64 {
    match ty {
        "UInt8" => u64::from(u8::MAX),
        "UInt16" => u64::from(u16::MAX),
        _ => u64::from(u32::MAX),
    }
}

fn get(op: Operation) -> utoipa::openapi::PathItem {
    PathItemBuilder::new()
        .operation(HttpMethod::Get, op)
        .build()
}

/// The whole document.
pub fn build() -> OpenApi {
    let max_page = super::config::ApiConfig::default().limits.max_page_size;
    let mut paths = PathsBuilder::new().path(
        "/api/v1/kinds",
        get(operation(
            "list_kinds",
            "Every log kind with its filters and searchable columns",
            ok_json(ArrayBuilder::new().items(Ref::from_schema_name("KindInfo"))),
        )
        .build()),
    );
    for table in KINDS {
        let list = operation(
            &format!("list_{}", table.name),
            &format!("{} ({})", table.doc, table.reference),
            ok_json(Ref::from_schema_name("Page")),
        )
        .tag("logs")
        .parameters(Some(list_parameters(table, max_page)))
        .build();
        paths = paths.path(format!("/api/v1/logs/{}", table.name), get(list));
        let detail = operation(
            &format!("get_{}", table.name),
            &format!(
                "One {} row in full, with related rows and its trace's spans",
                table.name
            ),
            ok_json(Ref::from_schema_name("Detail")),
        )
        .tag("logs")
        .parameter(path_param(
            "id",
            "The row's id.",
            string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        ))
        .build();
        paths = paths.path(format!("/api/v1/logs/{}/{{id}}", table.name), get(detail));
    }
    let findings: Vec<_> = crate::query::findings::PARAMS
        .iter()
        .map(|(name, doc)| {
            let schema = match *name {
                "finding" => string().enum_values(Some(["rejected", "warnings"])),
                "kind" => string().enum_values(Some(KINDS.iter().map(|k| k.name))),
                "service" => {
                    let item = RefOr::T(Schema::Object(string().build()));
                    return query(name, doc, ArrayBuilder::new().items(item).build());
                }
                other => paging(other, max_page),
            };
            query(name, doc, schema)
        })
        .collect();
    paths = paths.path(
        "/api/v1/findings",
        get(operation(
            "list_findings",
            "Records that named a log kind but got no typed row (or were stored with warnings), from otel_logs, newest first",
            ok_json(Ref::from_schema_name("FindingsPage")),
        )
        .tag("logs")
        .parameters(Some(findings))
        .build()),
    );
    let purge = operation(
        "purge",
        "Delete a kind's rows for a time range and/or tenant (owner, every-tenant token)",
        ok_json(Ref::from_schema_name("PurgeResult")),
    )
    .tag("maintenance")
    .request_body(Some(
        RequestBodyBuilder::new()
            .content("application/json", json_ref("PurgeRequest").build())
            .required(Some(Required::True))
            .build(),
    ))
    .build();
    paths = paths.path(
        "/api/v1/maintenance/purge",
        PathItemBuilder::new()
            .operation(HttpMethod::Post, purge)
            .build(),
    );
    paths = paths.path(
        "/api/v1/maintenance/log-files",
        get(operation(
            "log_files",
            "This replica's log files (owner)",
            ok_json(ArrayBuilder::new().items(Ref::from_schema_name("LogFile"))),
        )
        .tag("maintenance")
        .build()),
    );
    let name = || path_param("name", "File name, as listed.", string());
    let download = operation(
        "download_log_file",
        "Download a log file (owner)",
        ResponseBuilder::new()
            .description("The file")
            .content(
                "application/octet-stream",
                ContentBuilder::new()
                    .schema(Some(
                        string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary))),
                    ))
                    .build(),
            )
            .build()
            .into(),
    )
    .tag("maintenance")
    .parameter(name())
    .build();
    let delete = operation(
        "delete_log_file",
        "Delete a rotated log file (owner; confirm repeats the name)",
        ok_json(Ref::from_schema_name("LogFile")),
    )
    .tag("maintenance")
    .parameter(name())
    .parameter({
        let mut confirm = query("confirm", "Must repeat the file name.", string());
        confirm.required = Required::True;
        confirm
    })
    .build();
    paths = paths.path(
        "/api/v1/maintenance/log-files/{name}",
        PathItemBuilder::new()
            .operation(HttpMethod::Get, download)
            .operation(HttpMethod::Delete, delete)
            .build(),
    );
    paths = admin_paths(paths);
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("logbook API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Every log kind filtered and searchable, integration health, settings and \
                     maintenance. Send `Authorization: Bearer <token>` (`logbook token create`).",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components().build()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in the document names a schema it defines.
    #[test]
    fn every_reference_resolves() {
        let doc = serde_json::to_value(build()).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut stack = vec![&doc];
        while let Some(value) = stack.pop() {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                        let name = r.trim_start_matches("#/components/schemas/");
                        assert!(schemas.contains_key(name), "dangling {r}");
                    }
                    stack.extend(map.values());
                }
                serde_json::Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
    }

    #[test]
    fn each_kind_lists_its_own_filters() {
        let doc = serde_json::to_value(build()).unwrap();
        let params = &doc["paths"]["/api/v1/logs/api_calls"]["get"]["parameters"];
        let names: Vec<&str> = params
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for name in ["bot", "outcome", "status_code_min", "q", "cursor", "tenant"] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        assert!(!names.contains(&"request_body"));
        let outcome = params
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "outcome")
            .unwrap();
        assert_eq!(
            outcome["schema"]["items"]["enum"],
            serde_json::json!(["success", "error"])
        );
    }
}
