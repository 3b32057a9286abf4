//! Tables whose shape is not a log kind's: the OpenTelemetry Collector exporter's `otel_logs`,
//! `otel_traces` and trace-id lookup (same names and types, so Grafana's ClickHouse datasource
//! works on them in OpenTelemetry mode), and the cross-kind `errors` table.

use super::{
    ColumnDef, FieldValue, INSERTED_TABLE_SETTINGS, IndexDef, Presence, Role, TableDef, days,
};

/// A column of a table logbook does not route into (no source, optional, shown).
pub(super) const fn col(name: &'static str, ch_type: &'static str, doc: &'static str) -> ColumnDef {
    ColumnDef {
        name,
        ch_type,
        doc,
        source: None,
        presence: Presence::Optional,
        role: Role::Plain,
        one_of: &[],
        renamed_from: &[],
        old_values: &[],
    }
}

const fn bloom(name: &'static str, expr: &'static str, rate: &'static str) -> IndexDef {
    IndexDef {
        name,
        expr,
        kind: rate,
        granularity: 1,
    }
}

const ATTRS: &str = "Map(LowCardinality(String), String) CODEC(ZSTD(1))";

pub const OTEL_LOGS: TableDef = TableDef {
    name: "otel_logs",
    doc: "Every OpenTelemetry log record received, in the Collector ClickHouse exporter's layout.",
    reference: "all log kinds: the raw record behind every typed row, and every record that names no kind",
    event_name: None,
    common_columns: false,
    columns: &[
        col(
            "Timestamp",
            "DateTime64(9) CODEC(Delta(8), ZSTD(1))",
            "Record time (nanoseconds, UTC).",
        ),
        col(
            "TimestampTime",
            "DateTime DEFAULT toDateTime(Timestamp)",
            "Record time to the second: the sort and partition key.",
        ),
        col("TraceId", "String CODEC(ZSTD(1))", "Trace id, hex."),
        col("SpanId", "String CODEC(ZSTD(1))", "Span id, hex."),
        col("TraceFlags", "UInt8", "W3C trace flags."),
        col(
            "SeverityText",
            "LowCardinality(String) CODEC(ZSTD(1))",
            "Severity as the sender named it.",
        ),
        col(
            "SeverityNumber",
            "UInt8",
            "OpenTelemetry severity number: 1–4 TRACE, 5–8 DEBUG, 9–12 INFO, 13–16 WARN, 17–20 ERROR, 21–24 FATAL.",
        ),
        col(
            "ServiceName",
            "LowCardinality(String) CODEC(ZSTD(1))",
            "`service.name` of the emitting resource.",
        ),
        col("Body", "String CODEC(ZSTD(1))", "Log body (redacted)."),
        col(
            "ResourceSchemaUrl",
            "LowCardinality(String) CODEC(ZSTD(1))",
            "Schema URL of the resource.",
        ),
        col(
            "ResourceAttributes",
            ATTRS,
            "Resource attributes (service, host, deployment environment, …).",
        ),
        col(
            "ScopeSchemaUrl",
            "LowCardinality(String) CODEC(ZSTD(1))",
            "Schema URL of the instrumentation scope.",
        ),
        col(
            "ScopeName",
            "String CODEC(ZSTD(1))",
            "Instrumentation scope (logger) name.",
        ),
        col(
            "ScopeVersion",
            "LowCardinality(String) CODEC(ZSTD(1))",
            "Instrumentation scope version.",
        ),
        col(
            "ScopeAttributes",
            ATTRS,
            "Instrumentation scope attributes.",
        ),
        col(
            "LogAttributes",
            ATTRS,
            "Record attributes (redacted); typed tables hold the same values in columns.",
        ),
        col(
            "EventName",
            "String CODEC(ZSTD(1))",
            "`event.name`: names the log kind, e.g. `logbook.api_call`.",
        ),
    ],
    indexes: &[
        bloom("idx_trace_id", "TraceId", "bloom_filter(0.001)"),
        bloom(
            "idx_res_attr_key",
            "mapKeys(ResourceAttributes)",
            "bloom_filter(0.01)",
        ),
        bloom(
            "idx_res_attr_value",
            "mapValues(ResourceAttributes)",
            "bloom_filter(0.01)",
        ),
        bloom(
            "idx_scope_attr_key",
            "mapKeys(ScopeAttributes)",
            "bloom_filter(0.01)",
        ),
        bloom(
            "idx_scope_attr_value",
            "mapValues(ScopeAttributes)",
            "bloom_filter(0.01)",
        ),
        bloom(
            "idx_log_attr_key",
            "mapKeys(LogAttributes)",
            "bloom_filter(0.01)",
        ),
        bloom(
            "idx_log_attr_value",
            "mapValues(LogAttributes)",
            "bloom_filter(0.01)",
        ),
        IndexDef {
            name: "idx_body",
            expr: "Body",
            kind: "tokenbf_v1(32768, 3, 0)",
            granularity: 8,
        },
    ],
    engine: "MergeTree",
    partition_by: "toDate(TimestampTime)",
    primary_key: Some("(ServiceName, TimestampTime)"),
    order_by: "(ServiceName, TimestampTime, Timestamp)",
    ttl_from: "TimestampTime",
    default_ttl: days(30),
    settings: INSERTED_TABLE_SETTINGS,
    errors: None,
    metric_labels: &[],
};

pub const OTEL_TRACES: TableDef = TableDef {
    name: "otel_traces",
    doc: "Every OpenTelemetry span received, in the Collector ClickHouse exporter's layout.",
    reference: "trace links from every typed row (trace_id, span_id)",
    event_name: None,
    common_columns: false,
    columns: &[
        col(
            "Timestamp",
            "DateTime64(9) CODEC(Delta(8), ZSTD(1))",
            "Span start (nanoseconds, UTC).",
        ),
        col("TraceId", "String CODEC(ZSTD(1))", "Trace id, hex."),
        col("SpanId", "String CODEC(ZSTD(1))", "Span id, hex."),
        col(
            "ParentSpanId",
            "String CODEC(ZSTD(1))",
            "Parent span id, hex; empty for a root span.",
        ),
        col("TraceState", "String CODEC(ZSTD(1))", "W3C trace state."),
        col(
            "SpanName",
            "LowCardinality(String) CODEC(ZSTD(1))",
            "Span name.",
        ),
        col(
            "SpanKind",
            "LowCardinality(String) CODEC(ZSTD(1))",
            "Internal, Server, Client, Producer or Consumer.",
        ),
        col(
            "ServiceName",
            "LowCardinality(String) CODEC(ZSTD(1))",
            "`service.name` of the emitting resource.",
        ),
        col("ResourceAttributes", ATTRS, "Resource attributes."),
        col(
            "ScopeName",
            "String CODEC(ZSTD(1))",
            "Instrumentation scope name.",
        ),
        col(
            "ScopeVersion",
            "String CODEC(ZSTD(1))",
            "Instrumentation scope version.",
        ),
        col("SpanAttributes", ATTRS, "Span attributes (redacted)."),
        col(
            "Duration",
            "UInt64 CODEC(ZSTD(1))",
            "Span duration in nanoseconds.",
        ),
        col(
            "StatusCode",
            "LowCardinality(String) CODEC(ZSTD(1))",
            "Unset, Ok or Error.",
        ),
        col(
            "StatusMessage",
            "String CODEC(ZSTD(1))",
            "Status description.",
        ),
        col(
            "Events",
            "Nested(Timestamp DateTime64(9), Name LowCardinality(String), Attributes Map(LowCardinality(String), String)) CODEC(ZSTD(1))",
            "Span events (exceptions and other timed annotations).",
        ),
        col(
            "Links",
            "Nested(TraceId String, SpanId String, TraceState String, Attributes Map(LowCardinality(String), String)) CODEC(ZSTD(1))",
            "Links to other spans.",
        ),
    ],
    indexes: &[
        bloom("idx_trace_id", "TraceId", "bloom_filter(0.001)"),
        bloom(
            "idx_res_attr_key",
            "mapKeys(ResourceAttributes)",
            "bloom_filter(0.01)",
        ),
        bloom(
            "idx_res_attr_value",
            "mapValues(ResourceAttributes)",
            "bloom_filter(0.01)",
        ),
        bloom(
            "idx_span_attr_key",
            "mapKeys(SpanAttributes)",
            "bloom_filter(0.01)",
        ),
        bloom(
            "idx_span_attr_value",
            "mapValues(SpanAttributes)",
            "bloom_filter(0.01)",
        ),
        IndexDef {
            name: "idx_duration",
            expr: "Duration",
            kind: "minmax",
            granularity: 1,
        },
    ],
    engine: "MergeTree",
    partition_by: "toDate(Timestamp)",
    primary_key: None,
    order_by: "(ServiceName, SpanName, toDateTime(Timestamp))",
    ttl_from: "toDateTime(Timestamp)",
    default_ttl: days(30),
    settings: INSERTED_TABLE_SETTINGS,
    errors: None,
    metric_labels: &[],
};

/// Filled by the materialized view [`TRACE_ID_TS_MV`]; lets a trace be found by id quickly.
pub const OTEL_TRACES_TRACE_ID_TS: TableDef = TableDef {
    name: "otel_traces_trace_id_ts",
    doc: "First and last time seen per trace id: narrows a trace-id lookup in otel_traces to its time range.",
    reference: "trace lookup (Grafana trace view)",
    event_name: None,
    common_columns: false,
    columns: &[
        col("TraceId", "String CODEC(ZSTD(1))", "Trace id, hex."),
        col(
            "Start",
            "SimpleAggregateFunction(min, DateTime) CODEC(ZSTD(1))",
            "Earliest span start of the trace.",
        ),
        col(
            "End",
            "SimpleAggregateFunction(max, DateTime) CODEC(ZSTD(1))",
            "Latest span start of the trace.",
        ),
    ],
    indexes: &[],
    engine: "AggregatingMergeTree",
    partition_by: "toStartOfWeek(Start)",
    primary_key: None,
    order_by: "(TraceId)",
    ttl_from: "Start",
    default_ttl: days(30),
    settings: &[("index_granularity", "8192"), ("ttl_only_drop_parts", "1")],
    errors: None,
    metric_labels: &[],
};

/// The materialized view feeding [`OTEL_TRACES_TRACE_ID_TS`]: (name, source table, SELECT).
pub const TRACE_ID_TS_MV: (&str, &str, &str) = (
    "otel_traces_trace_id_ts_mv",
    "otel_traces",
    "SELECT TraceId, toDateTime(min(Timestamp)) AS Start, toDateTime(max(Timestamp)) AS End \
     FROM {source} WHERE TraceId != '' GROUP BY TraceId",
);

pub const ERRORS: TableDef = TableDef {
    name: "errors",
    doc: "One row per error of any log kind, filled by a materialized view on each kind's table whenever a row has an error outcome.",
    reference: "api-call-logs.txt: error codes kept 30 days; backend-services-monitoring.txt: Monitoring events / Integration Errors",
    event_name: None,
    common_columns: false,
    columns: &[
        ColumnDef {
            role: Role::Filter,
            ..col(
                "time",
                "DateTime64(9, 'UTC') CODEC(Delta(8), ZSTD(1))",
                "When the error happened (the source row's time).",
            )
        },
        ColumnDef {
            role: Role::Filter,
            ..col(
                "kind",
                "LowCardinality(String)",
                "Table of the source row (api_calls, mail_messages, …).",
            )
        },
        ColumnDef {
            role: Role::Filter,
            ..col(
                "source",
                "LowCardinality(String)",
                "What failed: bot, integration, mailbox, action, webhook, category, ….",
            )
        },
        ColumnDef {
            role: Role::Filter,
            ..col(
                "code",
                "LowCardinality(String)",
                "Error code: HTTP status, failure type, entity, ….",
            )
        },
        ColumnDef {
            role: Role::Search,
            ..col("message", "String CODEC(ZSTD(1))", "Error message.")
        },
        ColumnDef {
            role: Role::Filter,
            ..col(
                "severity",
                "LowCardinality(String)",
                "warning, error or critical.",
            )
        },
        ColumnDef {
            role: Role::Filter,
            ..col(
                "tenant",
                "LowCardinality(String)",
                "Tenant of the source row.",
            )
        },
        col(
            "service",
            "LowCardinality(String)",
            "Service of the source row.",
        ),
        col(
            "environment",
            "LowCardinality(String)",
            "Environment of the source row.",
        ),
        col(
            "related_id",
            "UUID",
            "`id` of the source row in its kind's table.",
        ),
        ColumnDef {
            role: Role::Filter,
            ..col(
                "trace_id",
                "String CODEC(ZSTD(1))",
                "Trace id of the source row.",
            )
        },
    ],
    indexes: &[
        bloom("idx_trace_id", "trace_id", "bloom_filter(0.001)"),
        IndexDef {
            name: "idx_message",
            expr: "message",
            kind: "tokenbf_v1(32768, 3, 0)",
            granularity: 1,
        },
    ],
    engine: "MergeTree",
    partition_by: "toDate(time)",
    primary_key: None,
    order_by: "(kind, source, time)",
    ttl_from: "toDateTime(time)",
    default_ttl: days(30),
    settings: INSERTED_TABLE_SETTINGS,
    errors: None,
    metric_labels: &[],
};

/// A row of `otel_logs`, in the exporter's column names (`TimestampTime` is computed by
/// ClickHouse from `Timestamp`): how tests and tools read the rows the router writes.
#[derive(
    Debug, Clone, Default, PartialEq, clickhouse::Row, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "PascalCase")]
pub struct OtelLogRow {
    pub timestamp: super::Ts,
    pub trace_id: String,
    pub span_id: String,
    pub trace_flags: u8,
    pub severity_text: String,
    pub severity_number: u8,
    pub service_name: String,
    pub body: String,
    pub resource_schema_url: String,
    pub resource_attributes: Vec<(String, String)>,
    pub scope_schema_url: String,
    pub scope_name: String,
    pub scope_version: String,
    pub scope_attributes: Vec<(String, String)>,
    pub log_attributes: Vec<(String, String)>,
    pub event_name: String,
}

/// A row of `otel_traces`; `Events` and `Links` are Nested, so one array per sub-column.
/// How tests and tools read the rows the router writes.
#[derive(
    Debug, Clone, Default, PartialEq, clickhouse::Row, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "PascalCase")]
pub struct OtelSpanRow {
    pub timestamp: super::Ts,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub trace_state: String,
    pub span_name: String,
    pub span_kind: String,
    pub service_name: String,
    pub resource_attributes: Vec<(String, String)>,
    pub scope_name: String,
    pub scope_version: String,
    pub span_attributes: Vec<(String, String)>,
    pub duration: u64,
    pub status_code: String,
    pub status_message: String,
    #[serde(rename = "Events.Timestamp")]
    pub events_timestamp: Vec<super::Ts>,
    #[serde(rename = "Events.Name")]
    pub events_name: Vec<String>,
    #[serde(rename = "Events.Attributes")]
    pub events_attributes: Vec<Vec<(String, String)>>,
    #[serde(rename = "Links.TraceId")]
    pub links_trace_id: Vec<String>,
    #[serde(rename = "Links.SpanId")]
    pub links_span_id: Vec<String>,
    #[serde(rename = "Links.TraceState")]
    pub links_trace_state: Vec<String>,
    #[serde(rename = "Links.Attributes")]
    pub links_attributes: Vec<Vec<(String, String)>>,
}

impl OtelLogRow {
    /// Takes one RowBinary row off the front of `input`; `None` if it ends too early.
    pub fn read_row(input: &mut &[u8]) -> Option<OtelLogRow> {
        Some(OtelLogRow {
            timestamp: FieldValue::read(input)?,
            trace_id: FieldValue::read(input)?,
            span_id: FieldValue::read(input)?,
            trace_flags: FieldValue::read(input)?,
            severity_text: FieldValue::read(input)?,
            severity_number: FieldValue::read(input)?,
            service_name: FieldValue::read(input)?,
            body: FieldValue::read(input)?,
            resource_schema_url: FieldValue::read(input)?,
            resource_attributes: FieldValue::read(input)?,
            scope_schema_url: FieldValue::read(input)?,
            scope_name: FieldValue::read(input)?,
            scope_version: FieldValue::read(input)?,
            scope_attributes: FieldValue::read(input)?,
            log_attributes: FieldValue::read(input)?,
            event_name: FieldValue::read(input)?,
        })
    }
}

impl OtelSpanRow {
    /// Takes one RowBinary row off the front of `input`; `None` if it ends too early.
    pub fn read_row(input: &mut &[u8]) -> Option<OtelSpanRow> {
        fn array<T: FieldValue>(input: &mut &[u8]) -> Option<Vec<T>> {
            let len = super::row_binary::read::varint(input)?;
            (0..len).map(|_| T::read(input)).collect()
        }
        Some(OtelSpanRow {
            timestamp: FieldValue::read(input)?,
            trace_id: FieldValue::read(input)?,
            span_id: FieldValue::read(input)?,
            parent_span_id: FieldValue::read(input)?,
            trace_state: FieldValue::read(input)?,
            span_name: FieldValue::read(input)?,
            span_kind: FieldValue::read(input)?,
            service_name: FieldValue::read(input)?,
            resource_attributes: FieldValue::read(input)?,
            scope_name: FieldValue::read(input)?,
            scope_version: FieldValue::read(input)?,
            span_attributes: FieldValue::read(input)?,
            duration: FieldValue::read(input)?,
            status_code: FieldValue::read(input)?,
            status_message: FieldValue::read(input)?,
            events_timestamp: array(input)?,
            events_name: FieldValue::read(input)?,
            events_attributes: array(input)?,
            links_trace_id: FieldValue::read(input)?,
            links_span_id: FieldValue::read(input)?,
            links_trace_state: FieldValue::read(input)?,
            links_attributes: array(input)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::Row;

    #[test]
    fn otel_row_structs_name_the_table_columns() {
        let logs: Vec<_> = OTEL_LOGS
            .columns
            .iter()
            .map(|c| c.name)
            .filter(|n| *n != "TimestampTime")
            .collect();
        assert_eq!(OtelLogRow::COLUMN_NAMES, logs.as_slice());
        let mut spans = Vec::new();
        for c in OTEL_TRACES.columns {
            match c.name {
                "Events" => spans.extend(["Events.Timestamp", "Events.Name", "Events.Attributes"]),
                "Links" => spans.extend([
                    "Links.TraceId",
                    "Links.SpanId",
                    "Links.TraceState",
                    "Links.Attributes",
                ]),
                name => spans.push(name),
            }
        }
        assert_eq!(OtelSpanRow::COLUMN_NAMES, spans.as_slice());
    }
}
