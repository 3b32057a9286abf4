//! OTLP receivers: gRPC (`grpc.rs`) and HTTP (`http.rs`) share one [`Intake`], which checks
//! a decoded request, redacts it, and puts it in the durable queue. A request is acknowledged
//! only once it is queued (and, by default, fsynced); when the queue is full the receivers
//! push back (429 / RESOURCE_EXHAUSTED) instead of dropping or buffering in memory.

pub mod grpc;
pub mod http;

use std::collections::BTreeMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use crate::config::Secret;
use crate::ingest::decode::{LogsRequest, TracesRequest};
use crate::ingest::queue::envelope::Envelope;
use crate::ingest::queue::{Queue, QueueError};
use crate::ingest::redact::Redactor;
use crate::ingest::route::dry_run::{self, Report};
use crate::metrics::Metrics;

/// How a request was refused; each maps to one HTTP status and one gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("missing or unknown bearer token")]
    Unauthenticated,
    #[error("{0}")]
    Invalid(String),
    #[error("request is larger than {0} bytes")]
    TooLarge(u64),
    #[error("logbook's queue is full; retry later")]
    Full,
    #[error("logbook cannot queue data right now: {0}")]
    Unavailable(String),
}

/// What a sender is told about records it sent that were not accepted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Partial {
    pub rejected: i64,
    pub message: String,
}

impl Partial {
    /// The OTLP response: `partial_success` only when something was rejected.
    pub fn logs_response(self) -> ExportLogsServiceResponse {
        ExportLogsServiceResponse {
            partial_success: (self.rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: self.rejected,
                error_message: self.message,
            }),
        }
    }

    pub fn traces_response(self) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: (self.rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: self.rejected,
                error_message: self.message,
            }),
        }
    }
}

pub struct Intake {
    queue: Queue,
    redactor: Redactor,
    tokens: Vec<Secret>,
    pub metrics: Arc<Metrics>,
    pub max_request_size: u64,
    queue_max_bytes: u64,
}

impl Intake {
    pub fn new(
        queue: Queue,
        redactor: Redactor,
        tokens: &BTreeMap<String, Secret>,
        metrics: Arc<Metrics>,
        max_request_size: u64,
        queue_max_bytes: u64,
    ) -> Intake {
        Intake {
            queue_max_bytes,
            queue,
            redactor,
            tokens: tokens.values().cloned().collect(),
            metrics,
            max_request_size,
        }
    }

    /// Refuses early, before any decoding, a request the queue has no room for: under
    /// overload, refusals must stay cheap (they cost as much as acceptance otherwise).
    pub fn check_room(&self, request_bytes: u64) -> Result<(), IntakeError> {
        if self.queue.stats().bytes + request_bytes > self.queue_max_bytes {
            return Err(IntakeError::Full);
        }
        Ok(())
    }

    /// Checks an `Authorization` header value; with no tokens configured, anyone may send.
    pub fn authorize(&self, header: Option<&str>) -> Result<(), IntakeError> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let presented = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or(IntakeError::Unauthenticated)?;
        // Compare every token in full so timing says nothing about which one nearly matched.
        let matched = self.tokens.iter().fold(false, |found, token| {
            found | constant_time_eq(token.expose(), presented)
        });
        matched.then_some(()).ok_or(IntakeError::Unauthenticated)
    }

    pub async fn logs(
        &self,
        mut request: ExportLogsServiceRequest,
    ) -> Result<Partial, IntakeError> {
        let received: usize = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        self.metrics
            .received_records
            .with_label_values(&["logs"])
            .inc_by(received as u64);
        let now = now_nanos();
        let mut rejected = 0;
        for scope in request
            .resource_logs
            .iter_mut()
            .flat_map(|r| &mut r.scope_logs)
        {
            scope.log_records.retain_mut(|record| {
                if !valid_ids(&record.trace_id, &record.span_id) {
                    rejected += 1;
                    return false;
                }
                // Routing needs a time that is the same on every replay: stamp it now.
                if record.time_unix_nano == 0 && record.observed_time_unix_nano == 0 {
                    record.observed_time_unix_nano = now;
                }
                true
            });
        }
        let redactions = self.redactor.logs(&mut request);
        let partial = self.partial("logs", rejected, "log records");
        if received == rejected as usize {
            return Ok(partial);
        }
        self.enqueue(Envelope::Logs(request), redactions).await?;
        self.metrics
            .accepted_records
            .with_label_values(&["logs"])
            .inc_by(received as u64 - rejected as u64);
        Ok(partial)
    }

    pub async fn traces(
        &self,
        mut request: ExportTraceServiceRequest,
    ) -> Result<Partial, IntakeError> {
        let received: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.metrics
            .received_records
            .with_label_values(&["traces"])
            .inc_by(received as u64);
        let mut rejected = 0;
        for scope in request
            .resource_spans
            .iter_mut()
            .flat_map(|r| &mut r.scope_spans)
        {
            scope.spans.retain(|span| {
                let ok = span.trace_id.len() == 16
                    && span.span_id.len() == 8
                    && matches!(span.parent_span_id.len(), 0 | 8);
                rejected += i64::from(!ok);
                ok
            });
        }
        let redactions = self.redactor.traces(&mut request);
        let partial = self.partial("traces", rejected, "spans");
        if received == rejected as usize {
            return Ok(partial);
        }
        self.enqueue(Envelope::Traces(request), redactions).await?;
        self.metrics
            .accepted_records
            .with_label_values(&["traces"])
            .inc_by(received as u64 - rejected as u64);
        Ok(partial)
    }

    fn partial(&self, signal: &str, rejected: i64, what: &str) -> Partial {
        if rejected == 0 {
            return Partial::default();
        }
        self.metrics
            .refused_records
            .with_label_values(&[signal, "invalid_id"])
            .inc_by(rejected as u64);
        Partial {
            rejected,
            message: format!(
                "{rejected} {what} rejected: trace ids must be 16 bytes and span ids 8"
            ),
        }
    }

    async fn enqueue(
        &self,
        envelope: Envelope,
        redactions: crate::ingest::redact::Redactions,
    ) -> Result<(), IntakeError> {
        self.metrics
            .redacted_values
            .inc_by(redactions.values_redacted);
        self.metrics
            .truncated_values
            .inc_by(redactions.values_truncated);
        match self.queue.append(envelope.encode()).await {
            Ok(_) => Ok(()),
            Err(QueueError::Full { .. }) => Err(IntakeError::Full),
            Err(error) => {
                tracing::error!(%error, "cannot append to the durable queue");
                Err(IntakeError::Unavailable(error.to_string()))
            }
        }
    }

    /// [`dry_run`] with this intake's redaction.
    pub fn dry_run(&self, signal: Signal, json: &[u8]) -> Result<Report, IntakeError> {
        dry_run(&self.redactor, signal, json)
    }

    /// Counts a refused request in the metrics.
    pub fn refused(&self, signal: &str, error: &IntakeError) {
        let reason = match error {
            IntakeError::Unauthenticated => "unauthenticated",
            IntakeError::Invalid(_) => "invalid",
            IntakeError::TooLarge(_) => "too_large",
            IntakeError::Full => "queue_full",
            IntakeError::Unavailable(_) => "unavailable",
        };
        self.metrics
            .refused_records
            .with_label_values(&[signal, reason])
            .inc();
    }
}

/// Which OTLP signal a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Traces,
}

/// The dry run of an OTLP/JSON request: checked, timed and redacted as an accepted request
/// is, routed as the pipeline routes it, and stored nowhere.
pub fn dry_run(redactor: &Redactor, signal: Signal, json: &[u8]) -> Result<Report, IntakeError> {
    let invalid =
        |e: &dyn std::fmt::Display| IntakeError::Invalid(format!("invalid OTLP JSON: {e}"));
    let bytes = match signal {
        Signal::Logs => {
            let mut request: ExportLogsServiceRequest =
                serde_json::from_slice(json).map_err(|e| invalid(&e))?;
            let now = now_nanos();
            for record in request
                .resource_logs
                .iter_mut()
                .flat_map(|r| &mut r.scope_logs)
                .flat_map(|s| &mut s.log_records)
            {
                if record.time_unix_nano == 0 && record.observed_time_unix_nano == 0 {
                    record.observed_time_unix_nano = now;
                }
            }
            redactor.logs(&mut request);
            prost::Message::encode_to_vec(&request)
        }
        Signal::Traces => {
            let mut request: ExportTraceServiceRequest =
                serde_json::from_slice(json).map_err(|e| invalid(&e))?;
            redactor.traces(&mut request);
            prost::Message::encode_to_vec(&request)
        }
    };
    let damaged = |e: crate::ingest::decode::DecodeError| IntakeError::Invalid(e.to_string());
    Ok(match signal {
        Signal::Logs => dry_run::logs(&LogsRequest::decode(&bytes).map_err(damaged)?),
        Signal::Traces => dry_run::traces(&TracesRequest::decode(&bytes).map_err(damaged)?),
    })
}

fn valid_ids(trace_id: &[u8], span_id: &[u8]) -> bool {
    matches!(trace_id.len(), 0 | 16) && matches!(span_id.len(), 0 | 8)
}

fn now_nanos() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0)
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_have_otlp_lengths() {
        assert!(valid_ids(&[], &[]));
        assert!(valid_ids(&[1; 16], &[1; 8]));
        assert!(!valid_ids(&[1; 15], &[1; 8]));
        assert!(!valid_ids(&[1; 16], &[1; 4]));
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
