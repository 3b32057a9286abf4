//! The emitting side: OpenTelemetry for Rust backend services (and logbook's own telemetry).
//!
//! [`Telemetry`] owns an OTLP logger and tracer provider with batch exporters (gRPC or
//! HTTP/protobuf). [`Telemetry::layers`] plugs them into a `tracing` subscriber, so spans
//! become OTLP traces and events OTLP logs; [`Telemetry::emit`] sends one typed event of a
//! log kind, its attributes derived from the kind's definition (`record.rs`), so the router
//! reads it back into the very same row.

mod http;
mod record;

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::logs::{Logger, LoggerProvider};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

use crate::schema::LogKind;

/// The instrumentation scope of everything [`Telemetry`] sends.
const SCOPE: &str = "logbook.telemetry";

/// How spans and logs travel to the collector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OTLP/gRPC; `endpoint` is the server's URL (port 4317).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies; `endpoint` is the base URL (port 4318), `/v1/logs`
    /// and `/v1/traces` are appended.
    Http,
}

/// `[telemetry]` in logbook.toml (logbook's own telemetry), and what services pass in code.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Whether to send telemetry at all; read by whoever wires [`Telemetry`] in, not by it.
    pub enabled: bool,
    /// Where to send OTLP: `http://HOST:4317` for gRPC, `http://HOST:4318` for HTTP.
    pub endpoint: String,
    /// `grpc` or `http` (protobuf).
    pub protocol: Protocol,
    /// `service.name` of the resource.
    pub service_name: String,
    /// `service.version` of the resource.
    pub service_version: String,
    /// `deployment.environment.name` of the resource; left out when empty.
    pub environment: String,
    /// Deadline of each export and of the final flush at shutdown.
    #[serde(with = "humantime_serde")]
    pub export_timeout: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            enabled: false,
            endpoint: "http://127.0.0.1:4317".into(),
            protocol: Protocol::Grpc,
            service_name: "logbook".into(),
            service_version: env!("CARGO_PKG_VERSION").into(),
            environment: String::new(),
            export_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry needs a tokio runtime: create it inside one")]
    NoRuntime,
    #[error("cannot build the otlp {signal} exporter for {endpoint}: {source}")]
    Exporter {
        signal: &'static str,
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("telemetry shutdown failed: {0}")]
    Shutdown(#[from] OTelSdkError),
    #[error("telemetry shutdown task failed: {0}")]
    ShutdownTask(#[from] tokio::task::JoinError),
}

/// OTLP logs and traces of one service. No global state: several can coexist.
pub struct Telemetry {
    logs: SdkLoggerProvider,
    traces: SdkTracerProvider,
    logger: SdkLogger,
    export_timeout: Duration,
}

impl Telemetry {
    /// Builds the exporters and batch processors. Must run inside a tokio runtime: the
    /// exporters send on it (the batch processors' own threads only wait).
    pub fn new(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
        let endpoint = config.endpoint.trim_end_matches('/');
        let timeout = config.export_timeout;
        let error = |signal, endpoint: &str| {
            let endpoint = endpoint.to_owned();
            move |source| TelemetryError::Exporter {
                signal,
                endpoint,
                source,
            }
        };
        let (log_exporter, span_exporter) = match config.protocol {
            Protocol::Grpc => (
                opentelemetry_otlp::LogExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .with_timeout(timeout)
                    .build()
                    .map_err(error("logs", endpoint))?,
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .with_timeout(timeout)
                    .build()
                    .map_err(error("traces", endpoint))?,
            ),
            Protocol::Http => {
                let client = http::RuntimeClient::new(runtime, timeout);
                let (logs, traces) = (
                    format!("{endpoint}/v1/logs"),
                    format!("{endpoint}/v1/traces"),
                );
                (
                    opentelemetry_otlp::LogExporter::builder()
                        .with_http()
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                        .with_http_client(client.clone())
                        .with_endpoint(&logs)
                        .with_timeout(timeout)
                        .build()
                        .map_err(error("logs", &logs))?,
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_http()
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                        .with_http_client(client)
                        .with_endpoint(&traces)
                        .with_timeout(timeout)
                        .build()
                        .map_err(error("traces", &traces))?,
                )
            }
        };
        let resource = resource(config);
        let logs = SdkLoggerProvider::builder()
            .with_resource(resource.clone())
            .with_batch_exporter(log_exporter)
            .build();
        let traces = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(span_exporter)
            .build();
        Ok(Telemetry::from_providers(logs, traces, timeout))
    }

    /// Telemetry over providers the caller built: custom exporters or processors (tests
    /// capture what would be exported this way). `resource` gives them logbook's resource.
    pub fn from_providers(
        logs: SdkLoggerProvider,
        traces: SdkTracerProvider,
        export_timeout: Duration,
    ) -> Telemetry {
        Telemetry {
            logger: logs.logger(SCOPE),
            logs,
            traces,
            export_timeout,
        }
    }

    /// The `tracing` layers: spans become OTLP spans (tracing-opentelemetry), events OTLP
    /// log records (the appender bridge), both linked by trace and span id.
    pub fn layers<S>(&self) -> impl Layer<S> + Send + Sync + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let spans = tracing_opentelemetry::layer()
            .with_tracer(self.traces.tracer(SCOPE))
            .with_filter(filter_fn(|m| !is_transport(m.target())));
        let events = OpenTelemetryTracingBridge::new(&self.logs)
            .with_filter(filter_fn(|m| !is_transport(m.target())));
        spans.and_then(events)
    }

    /// A tracer of this service, for spans built with the OpenTelemetry API directly (with
    /// explicit start and end times, as a simulator or a replay needs them). A typed row
    /// given a span's trace and span id before [`Telemetry::emit`] links to that span.
    pub fn tracer(&self) -> opentelemetry_sdk::trace::SdkTracer {
        self.traces.tracer(SCOPE)
    }

    /// Emits one typed event of a log kind, with exactly the attributes its router mapping
    /// reads. Without a trace id of its own, the row is linked to the current tracing span.
    pub fn emit<T: LogKind>(&self, row: &T) {
        let current = tracing::Span::current().context();
        let mut record = self.logger.create_log_record();
        match record::fill(row, &mut record, current.span().span_context()) {
            Ok(()) => self.logger.emit(record),
            Err(error) => tracing::warn!(%error, kind = T::TABLE.name, "typed event not sent"),
        }
    }

    /// Flushes and shuts down both providers, each within `export_timeout`; call before exit.
    /// Waits off the async workers, so the exporters can still use the runtime.
    pub async fn shutdown(self) -> Result<(), TelemetryError> {
        let timeout = self.export_timeout;
        let result = tokio::task::spawn_blocking(move || {
            let logs = self.logs.shutdown_with_timeout(timeout);
            let traces = self.traces.shutdown_with_timeout(timeout);
            logs.and(traces)
        })
        .await?;
        Ok(result?)
    }
}

/// The exporters' own transport logs and spans must not be exported: each export would
/// cause another.
fn is_transport(target: &str) -> bool {
    const TRANSPORT: &[&str] = &["opentelemetry", "tonic", "h2", "hyper", "tower", "reqwest"];
    TRANSPORT.iter().any(|prefix| {
        target
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['_', ':']))
    })
}

/// The OTel resource a service is described by: name, version, environment.
pub fn resource(config: &TelemetryConfig) -> Resource {
    let mut attributes = vec![KeyValue::new(
        "service.version",
        config.service_version.clone(),
    )];
    if !config.environment.is_empty() {
        attributes.push(KeyValue::new(
            "deployment.environment.name",
            config.environment.clone(),
        ));
    }
    Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attributes(attributes)
        .build()
}

#[cfg(test)]
mod tests;
