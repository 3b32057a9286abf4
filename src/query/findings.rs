//! Records the router could not make typed rows of (`logbook.rejected`), or stored with
//! warnings (`logbook.warnings`), listed from `otel_logs` so that the team that sent them can
//! find each one: service, event name, why, body and trace.

use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::filter::{Cursor, Value, Where, page_limit, timestamp};
use super::rows::fetch_json;
use super::{QueryError, QueryLimits};
use crate::schema::KINDS;

/// The query parameters `/api/v1/findings` accepts, with their documentation.
pub const PARAMS: &[(&str, &str)] = &[
    (
        "finding",
        "`rejected` (no typed row; the default) or `warnings` (stored, with unknown or deprecated names).",
    ),
    (
        "service",
        "Sending service (`service.name`). Repeat for any of several.",
    ),
    (
        "kind",
        "Only findings about this log kind (its table name).",
    ),
    (
        "from",
        "Oldest time (RFC 3339), inclusive; default 24 hours ago.",
    ),
    ("to", "Newest time (RFC 3339), exclusive."),
    ("limit", "Page size."),
    ("cursor", "`next_cursor` of the previous page."),
];

/// Without `from`, a page looks this far back: `otel_logs` is the biggest table.
const DEFAULT_WINDOW_NS: i64 = 24 * 3600 * 1_000_000_000;

/// Which attribute a finding is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    Rejected,
    Warnings,
}

impl Finding {
    pub fn attribute(self) -> &'static str {
        match self {
            Finding::Rejected => "logbook.rejected",
            Finding::Warnings => "logbook.warnings",
        }
    }
}

/// A checked findings request.
#[derive(Debug, Clone)]
pub struct FindingsRequest {
    finding: Finding,
    filters: Where,
    limit: u32,
}

/// One page of findings, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FindingsPage {
    /// `time`, `service`, `event_name`, `finding` (why), `body` (cut to a preview),
    /// `severity`, `tenant`, `trace_id`, `span_id`, `id` (the row's stable key).
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Json>>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Parses `pairs`; `tenant`, when given, is ANDed whatever they say, `now_ns` anchors the
/// default window.
pub fn parse(
    pairs: &[(String, String)],
    tenant: Option<&str>,
    now_ns: i64,
    default_limit: u32,
    max_limit: u32,
) -> Result<FindingsRequest, QueryError> {
    let mut filters = Where::default();
    let (mut finding, mut limit, mut from, mut services) =
        (Finding::Rejected, default_limit, None, Vec::new());
    for (key, value) in pairs {
        match key.as_str() {
            "finding" => {
                finding = match value.as_str() {
                    "rejected" => Finding::Rejected,
                    "warnings" => Finding::Warnings,
                    _ => {
                        return Err(QueryError::Invalid(format!(
                            "finding must be rejected or warnings, not {value:?}"
                        )));
                    }
                }
            }
            "service" => services.push(value.clone()),
            "kind" => {
                if !KINDS.iter().any(|k| k.name == value) {
                    return Err(QueryError::Invalid(format!(
                        "kind must be a log kind ({}), not {value:?}",
                        KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                    )));
                }
                // A finding names its place as `<table>.<column>: …` or `<table>: …`.
                let (dot, colon) = (format!("{value}."), format!("{value}:"));
                let (d, c) = (
                    filters.bind("String", Value::Str(dot)),
                    filters.bind("String", Value::Str(colon)),
                );
                filters.conditions.push(format!(
                    "(startsWith(finding, {d}) OR startsWith(finding, {c}))"
                ));
            }
            "from" => from = Some(timestamp(key, value)?),
            "to" => {
                let p = filters.bind("Int64", Value::Int(timestamp(key, value)?));
                filters
                    .conditions
                    .push(format!("Timestamp < fromUnixTimestamp64Nano({p})"));
            }
            "limit" => limit = page_limit(value, max_limit)?,
            "cursor" => Cursor::decode(value)?.older_rows(&mut filters, "Timestamp"),
            _ => {
                return Err(QueryError::Invalid(format!(
                    "unknown parameter {key:?}; findings accept {}",
                    PARAMS
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    }
    let from = from.unwrap_or((now_ns - DEFAULT_WINDOW_NS).max(0));
    let p = filters.bind("Int64", Value::Int(from));
    // The second-precision sort column first, so the primary key prunes.
    filters.conditions.push(format!(
        "TimestampTime >= toDateTime(intDiv({p}, 1000000000)) AND Timestamp >= fromUnixTimestamp64Nano({p})"
    ));
    if !services.is_empty() {
        let any: Vec<_> = services
            .into_iter()
            .map(|s| format!("ServiceName = {}", filters.bind("String", Value::Str(s))))
            .collect();
        filters.conditions.push(format!("({})", any.join(" OR ")));
    }
    if let Some(tenant) = tenant {
        let p = filters.bind("String", Value::Str(tenant.to_owned()));
        filters.conditions.push(format!("tenant = {p}"));
    }
    Ok(FindingsRequest {
        finding,
        filters,
        limit,
    })
}

/// A page of the findings `request` asks for, newest first.
pub async fn list(
    client: &clickhouse::Client,
    limits: &QueryLimits,
    request: &FindingsRequest,
) -> Result<FindingsPage, QueryError> {
    let mut filters = request.filters.clone();
    let attribute = filters.bind("String", Value::Str(request.finding.attribute().to_owned()));
    let preview = filters.bind("UInt32", Value::UInt(u64::from(limits.preview_chars)));
    let limit = filters.bind("UInt32", Value::UInt(u64::from(request.limit) + 1));
    // `mapContains` on the attribute keys uses their bloom filter index. A record's own
    // `logbook.tenant` wins over its resource's, as in the router.
    let sql = format!(
        "SELECT toString(Timestamp) AS time, ServiceName AS service, EventName AS event_name, \
         LogAttributes[{attribute}] AS finding, leftUTF8(Body, {preview}) AS body, \
         SeverityText AS severity, \
         if(LogAttributes['logbook.tenant'] != '', LogAttributes['logbook.tenant'], \
            ResourceAttributes['logbook.tenant']) AS tenant, \
         TraceId AS trace_id, SpanId AS span_id, \
         reinterpretAsUUID(MD5(concat(ServiceName, EventName, Body, TraceId, SpanId, \
            toString(LogAttributes)))) AS id, \
         toUnixTimestamp64Nano(Timestamp) AS _time_ns \
         FROM otel_logs WHERE mapContains(LogAttributes, {attribute}) AND {} \
         ORDER BY Timestamp DESC, id DESC LIMIT {limit}",
        filters.sql()
    );
    let mut rows = fetch_json(client, limits, filters.apply(client.query(&sql))).await?;
    let more = rows.len() > request.limit as usize;
    rows.truncate(request.limit as usize);
    let next_cursor = match (more, rows.last()) {
        (true, Some(last)) => Some(super::rows::cursor_of(last)?.encode()),
        _ => None,
    };
    for row in &mut rows {
        row.remove("_time_ns");
    }
    Ok(FindingsPage { rows, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(request: &FindingsRequest) -> Vec<Value> {
        request
            .filters
            .params
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_tenant_token_and_the_default_window_always_apply() {
        let request = parse(
            &pairs(&[("service", "billing")]),
            Some("acme"),
            100 * DAY,
            50,
            1000,
        )
        .unwrap();
        let sql = request.filters.sql();
        assert!(
            sql.contains("TimestampTime >= toDateTime(intDiv({p0:Int64}, 1000000000))"),
            "{sql}"
        );
        assert!(sql.ends_with("tenant = {p2:String}"), "{sql}");
        assert_eq!(
            values(&request),
            [
                Value::Int(99 * DAY),
                Value::Str("billing".into()),
                Value::Str("acme".into())
            ]
        );
        assert_eq!(request.finding, Finding::Rejected);
    }

    #[test]
    fn a_kind_matches_the_places_findings_name() {
        let request = parse(
            &pairs(&[("kind", "api_calls"), ("finding", "warnings")]),
            None,
            DAY,
            50,
            1000,
        )
        .unwrap();
        assert_eq!(request.finding, Finding::Warnings);
        assert_eq!(
            values(&request)[..2],
            [
                Value::Str("api_calls.".into()),
                Value::Str("api_calls:".into())
            ]
        );
    }

    #[test]
    fn bad_parameters_are_refused_with_what_is_accepted() {
        for (list, says) in [
            (&[("kind", "api_call")][..], "kind must be a log kind"),
            (&[("finding", "errors")][..], "rejected or warnings"),
            (&[("limit", "0")][..], "limit must be"),
            (
                &[("tenant", "other")][..],
                "findings accept finding, service",
            ),
            (&[("from", "yesterday")][..], "RFC 3339"),
        ] {
            let error = parse(&pairs(list), None, DAY, 50, 1000).unwrap_err();
            assert!(error.to_string().contains(says), "{list:?}: {error}");
        }
    }

    const DAY: i64 = 24 * 3600 * 1_000_000_000;
}
