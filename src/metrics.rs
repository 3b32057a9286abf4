//! logbook's own metrics, served on `/metrics`. Names follow `logbook_<thing>_<unit>[_total]`;
//! labels stay low-cardinality (signal, table, reason, error type). docs/operations.md lists
//! them with what to alert on.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::ingest::route::findings::{Finding, Problem};
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use serde::{Deserialize, Serialize};

use crate::ingest::kind_metrics::KindMetrics;

/// `[metrics]` in logbook.toml: the business metrics on `/metrics` and what alerts read.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Distinct values each label of a log kind's counter keeps (bot, integration, webhook,
    /// …); rows with later new values are counted under `other`, so a flood of names cannot
    /// grow memory without bound.
    pub max_label_values: usize,
    /// Deprecated: the minimum severity is `notify.rules.min_severity` (one setting for the
    /// alert rules and the emails). When only this key is set, its value is taken as that
    /// one's, with a warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_min_severity: Option<String>,
    /// How often each replica computes integration status and next runs from ClickHouse.
    #[serde(with = "humantime_serde")]
    pub integration_status_interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            max_label_values: 300,
            notify_min_severity: None,
            integration_status_interval: Duration::from_secs(60),
        }
    }
}

/// How many distinct `service` label values the finding metrics keep.
pub const SERVICE_LABELS: usize = 100;

pub struct Metrics {
    pub registry: Registry,
    pub clickhouse_up: IntGauge,
    pub retention_partitions_dropped: IntCounter,
    pub retention_bytes_dropped: IntCounter,
    /// Records (log records or spans) received, by signal.
    pub received_records: IntCounterVec,
    /// Records acknowledged to senders (durably queued), by signal.
    pub accepted_records: IntCounterVec,
    /// Records refused, by signal and reason, where they were decoded.
    pub refused_records: IntCounterVec,
    /// Requests refused, each once, by signal and reason.
    pub refused_requests: IntCounterVec,
    /// Records stored with a value cut, by signal and reason (`too_deep`).
    pub truncated_records: IntCounterVec,
    /// Records that named a log kind but did not fit it, by service, table and column.
    pub typed_rejected_records: IntCounterVec,
    /// Records whose event name is in the `logbook.` namespace but names no kind, by service.
    pub unknown_event_records: IntCounterVec,
    /// `logbook.*` attributes a kind has no column for, by service and table.
    pub unknown_attributes: IntCounterVec,
    /// Deprecated attribute names and values still in use, by service, table and column.
    pub deprecated_names: IntCounterVec,
    /// The `service` label's values so far, bounded (see [`SERVICE_LABELS`]).
    services: Mutex<HashSet<String>>,
    /// Secret values redacted and long values truncated before queueing.
    pub redacted_values: IntCounter,
    pub truncated_values: IntCounter,
    /// 1 when `/readyz` would answer 200.
    pub ready: IntGauge,
    pub queue_max_bytes: IntGauge,
    pub queue_bytes: IntGauge,
    pub queue_records: IntGauge,
    pub queue_oldest_age_seconds: IntGauge,
    pub batch_rows: Histogram,
    pub rows_inserted: IntCounterVec,
    pub insert_duration_seconds: HistogramVec,
    pub insert_errors: IntCounterVec,
    pub dead_letter_batches: IntCounterVec,
    /// `logbook_<table>_total` for every log kind (counted once stored).
    pub kinds: KindMetrics,
    /// Integration status (1 for the current one of active/error/disabled) and expected next
    /// run, computed from ClickHouse by `query::integrations`.
    pub integration_status: IntGaugeVec,
    pub integration_next_run: IntGaugeVec,
    /// The minimum severity in force (`notify.rules.min_severity`), set at scrape time from
    /// the settings store (`notify::settings::SeverityGauge`).
    pub notify_min_severity: IntGauge,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::with_config(&MetricsConfig::default())
    }

    pub fn with_config(config: &MetricsConfig) -> Metrics {
        let r = Registry::new();
        let batch_rows = Histogram::with_opts(
            HistogramOpts::new("logbook_batch_rows", "rows per flushed batch, all tables")
                .buckets(prometheus::exponential_buckets(10.0, 4.0, 8).expect("valid buckets")),
        )
        .expect("valid metric");
        r.register(Box::new(batch_rows.clone()))
            .expect("registered once");
        let insert_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "logbook_clickhouse_insert_duration_seconds",
                "time to insert one table's part of a batch, retries excluded",
            ),
            &["table"],
        )
        .expect("valid metric");
        r.register(Box::new(insert_duration_seconds.clone()))
            .expect("registered once");
        Metrics {
            clickhouse_up: gauge(
                &r,
                "logbook_clickhouse_up",
                "1 when the last ClickHouse probe succeeded",
            ),
            retention_partitions_dropped: counter(
                &r,
                "logbook_retention_partitions_dropped_total",
                "server_logs partitions dropped by the size cap",
            ),
            retention_bytes_dropped: counter(
                &r,
                "logbook_retention_dropped_bytes_total",
                "bytes on disk freed by the server_logs size cap",
            ),
            received_records: counter_vec(
                &r,
                "logbook_received_records_total",
                "OTLP log records and spans received",
                &["signal"],
            ),
            accepted_records: counter_vec(
                &r,
                "logbook_accepted_records_total",
                "records acknowledged to senders after reaching the durable queue",
                &["signal"],
            ),
            refused_records: counter_vec(
                &r,
                "logbook_refused_records_total",
                "records refused at the receivers, by reason (requests refused before decoding are only in logbook_refused_requests_total)",
                &["signal", "reason"],
            ),
            refused_requests: counter_vec(
                &r,
                "logbook_refused_requests_total",
                "requests refused at the receivers, each once, by reason",
                &["signal", "reason"],
            ),
            truncated_records: counter_vec(
                &r,
                "logbook_truncated_records_total",
                "records stored with a value cut, by reason: too_deep (arrays and key-value lists nested deeper than 20 levels), each said in partial_success",
                &["signal", "reason"],
            ),
            typed_rejected_records: counter_vec(
                &r,
                "logbook_typed_rejected_records_total",
                "records that named a log kind but did not fit its table (still stored in otel_logs)",
                &["service", "table", "column"],
            ),
            unknown_event_records: counter_vec(
                &r,
                "logbook_unknown_event_records_total",
                "records whose logbook.* event name names no log kind (stored in otel_logs only)",
                &["service"],
            ),
            unknown_attributes: counter_vec(
                &r,
                "logbook_unknown_attributes_total",
                "logbook.* attributes of a typed record that its kind has no column for (ignored)",
                &["service", "table"],
            ),
            deprecated_names: counter_vec(
                &r,
                "logbook_deprecated_names_total",
                "deprecated attribute names or values still accepted",
                &["service", "table", "column"],
            ),
            services: Mutex::new(HashSet::new()),
            redacted_values: counter(
                &r,
                "logbook_redacted_values_total",
                "secret values redacted before queueing",
            ),
            truncated_values: counter(
                &r,
                "logbook_truncated_values_total",
                "values truncated to the configured size before queueing",
            ),
            ready: gauge(&r, "logbook_ready", "1 when /readyz answers 200"),
            queue_max_bytes: gauge(
                &r,
                "logbook_queue_max_bytes",
                "configured bound of the durable queue (queue.max_bytes)",
            ),
            queue_bytes: gauge(
                &r,
                "logbook_queue_bytes",
                "bytes in the durable queue not yet stored in ClickHouse",
            ),
            queue_records: gauge(
                &r,
                "logbook_queue_records",
                "requests in the durable queue not yet stored in ClickHouse",
            ),
            queue_oldest_age_seconds: gauge(
                &r,
                "logbook_queue_oldest_age_seconds",
                "age of the oldest request not yet stored in ClickHouse",
            ),
            batch_rows,
            rows_inserted: counter_vec(
                &r,
                "logbook_rows_inserted_total",
                "rows inserted into ClickHouse",
                &["table"],
            ),
            insert_duration_seconds,
            insert_errors: counter_vec(
                &r,
                "logbook_clickhouse_insert_errors_total",
                "failed insert attempts",
                &["table", "error_type"],
            ),
            dead_letter_batches: counter_vec(
                &r,
                "logbook_dead_letter_batches_total",
                "table batches ClickHouse refused for good, set aside on disk",
                &["table"],
            ),
            kinds: KindMetrics::new(&r, config.max_label_values),
            integration_status: gauge_vec(
                &r,
                "logbook_integration_status",
                "1 for the integration's current status (active, error, disabled), 0 for the others",
                &["integration", "status"],
            ),
            integration_next_run: gauge_vec(
                &r,
                "logbook_integration_next_run_timestamp_seconds",
                "when the integration's next sync run is expected (Unix seconds), for scheduled, enabled integrations",
                &["integration"],
            ),
            notify_min_severity: gauge(
                &r,
                "logbook_notify_min_severity_number",
                "OpenTelemetry SeverityNumber of the setting notify.rules.min_severity: monitoring events from it up alert and are emailed",
            ),
            registry: r,
        }
    }

    /// Counts what the router found about a record, labelled by its sending service.
    pub fn count_finding(&self, finding: &Finding) {
        let service = self.service_label(&finding.service);
        match &finding.problem {
            Problem::Rejected(r) => self
                .typed_rejected_records
                .with_label_values(&[service.as_str(), r.table, r.column])
                .inc(),
            Problem::UnknownEvent { .. } => self
                .unknown_event_records
                .with_label_values(&[service.as_str()])
                .inc(),
            Problem::UnknownAttribute { table, .. } => self
                .unknown_attributes
                .with_label_values(&[service.as_str(), *table])
                .inc(),
            Problem::Deprecated(d) => self
                .deprecated_names
                .with_label_values(&[service.as_str(), d.table, d.column])
                .inc(),
        }
    }

    /// `service` as a label value: the first [`SERVICE_LABELS`] services keep their name,
    /// later ones share `other`, so that a sender cannot grow the metrics without bound.
    pub fn service_label(&self, service: &str) -> String {
        let mut seen = self.services.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(service) {
            return service.to_owned();
        }
        if seen.len() < SERVICE_LABELS {
            seen.insert(service.to_owned());
            return service.to_owned();
        }
        "other".to_owned()
    }

    /// The text exposition format.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &self.registry.gather(),
            &mut buffer,
        )?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_label_values_are_bounded() {
        let metrics = Metrics::new();
        for i in 0..SERVICE_LABELS {
            assert_eq!(metrics.service_label(&format!("s{i}")), format!("s{i}"));
        }
        assert_eq!(metrics.service_label("one-too-many"), "other");
        assert_eq!(metrics.service_label("s3"), "s3");
    }
}
