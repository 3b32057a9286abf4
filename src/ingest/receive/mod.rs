//! OTLP receivers: gRPC (`grpc.rs`) and HTTP (`http.rs`) share one [`Intake`], which checks
//! a decoded request, redacts it, and puts it in the durable queue. A request is acknowledged
//! only once it is queued (and, by default, fsynced); when the queue is full the receivers
//! push back (429 / RESOURCE_EXHAUSTED) instead of dropping or buffering in memory.

pub mod grpc;
mod grpc_server;
pub mod http;
pub mod nesting;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

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
use crate::ingest::redact::{MAX_NESTING, Redactor, TOO_DEEP};
use crate::ingest::route::dry_run::{self, Report};
use crate::metrics::Metrics;

/// How a request was refused; each maps to one HTTP status and one gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("missing or unknown bearer token")]
    Unauthenticated,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request is larger than {0} bytes")]
    TooLarge(u64),
    #[error("logbook's queue is full; retry in {}s", retry_after.as_secs())]
    Full { retry_after: Duration },
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
    /// The OTLP response: `partial_success` only when something was rejected, or stored
    /// changed (then with `rejected` 0: a warning, as the OTLP spec allows).
    pub fn logs_response(self) -> ExportLogsServiceResponse {
        ExportLogsServiceResponse {
            partial_success: self.any().then_some(ExportLogsPartialSuccess {
                rejected_log_records: self.rejected,
                error_message: self.message,
            }),
        }
    }

    pub fn traces_response(self) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: self.any().then_some(ExportTracePartialSuccess {
                rejected_spans: self.rejected,
                error_message: self.message,
            }),
        }
    }

    fn any(&self) -> bool {
        self.rejected > 0 || !self.message.is_empty()
    }
}

/// A request checked, redacted and encoded for the queue, not yet appended to it
/// ([`Intake::accept`]).
pub struct Prepared {
    signal: &'static str,
    /// The queue entry; `None` when every record was rejected.
    queued: Option<Vec<u8>>,
    accepted: u64,
    partial: Partial,
    redactions: crate::ingest::redact::Redactions,
}

/// Serves both receivers until `stop`, with one bound on the requests they handle at once,
/// together (`ingest.max_concurrent_requests`): further requests wait, unread.
pub async fn serve(
    intake: Arc<Intake>,
    grpc_listener: tokio::net::TcpListener,
    http_listener: tokio::net::TcpListener,
    max_concurrent_requests: usize,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let in_flight = tower::limit::GlobalConcurrencyLimitLayer::new(max_concurrent_requests);
    let (logs_service, traces_service) = grpc::services(intake.clone());
    let grpc_server = tonic::transport::Server::builder()
        .layer(in_flight.clone())
        .add_service(logs_service)
        .add_service(traces_service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
            stop.clone().cancelled_owned(),
        );
    let http_server = axum::serve(http_listener, http::router(intake).layer(in_flight))
        .with_graceful_shutdown(stop.cancelled_owned());
    let (grpc, http) = tokio::join!(grpc_server, http_server.into_future());
    grpc.map_err(std::io::Error::other)?;
    http
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
        let bytes = self.queue.stats().bytes;
        if bytes + request_bytes > self.queue_max_bytes {
            return Err(self.full(bytes));
        }
        Ok(())
    }

    fn full(&self, queued_bytes: u64) -> IntakeError {
        IntakeError::Full {
            retry_after: retry_delay(queued_bytes, self.queue_max_bytes),
        }
    }

    /// Checks an `Authorization` header value (scheme case-insensitive, RFC 7235); with no
    /// tokens configured, anyone may send. Called before the request body is read.
    pub fn authorize(&self, header: Option<&str>) -> Result<(), IntakeError> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let presented = header
            .and_then(bearer_token)
            .ok_or(IntakeError::Unauthenticated)?;
        // Compare with every token so timing says nothing about which one nearly matched.
        let matched = self
            .tokens
            .iter()
            .fold(subtle::Choice::from(0), |found, token| {
                found | token.expose().as_bytes().ct_eq(presented.as_bytes())
            });
        bool::from(matched)
            .then_some(())
            .ok_or(IntakeError::Unauthenticated)
    }

    /// [`Self::prepare_logs`], then [`Self::accept`].
    pub async fn logs(&self, request: ExportLogsServiceRequest) -> Result<Partial, IntakeError> {
        self.accept(self.prepare_logs(request)).await
    }

    /// [`Self::prepare_traces`], then [`Self::accept`].
    pub async fn traces(&self, request: ExportTraceServiceRequest) -> Result<Partial, IntakeError> {
        self.accept(self.prepare_traces(request)).await
    }

    /// Checks, stamps and redacts a decoded request and encodes it for the queue: all of a
    /// request's CPU work after decoding, with no await, so a receiver can run decoding and
    /// this on one thread and free the decoded request where it was allocated.
    pub fn prepare_logs(&self, mut request: ExportLogsServiceRequest) -> Prepared {
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
        self.prepared(Envelope::Logs(request), (received, rejected), redactions)
    }

    /// [`Self::prepare_logs`] for spans.
    pub fn prepare_traces(&self, mut request: ExportTraceServiceRequest) -> Prepared {
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
        self.prepared(Envelope::Traces(request), (received, rejected), redactions)
    }

    /// A checked and redacted request, encoded unless all of its `(received, rejected)` records
    /// were rejected.
    fn prepared(
        &self,
        envelope: Envelope,
        (received, rejected): (usize, i64),
        redactions: crate::ingest::redact::Redactions,
    ) -> Prepared {
        let (signal, what) = match envelope {
            Envelope::Logs(_) => ("logs", ["log record", "log records"]),
            Envelope::Traces(_) => ("traces", ["span", "spans"]),
        };
        let partial = self.partial(signal, rejected, &redactions, what);
        let accepted = received as u64 - rejected as u64;
        Prepared {
            signal,
            queued: (accepted > 0).then(|| envelope.encode()),
            accepted,
            partial,
            redactions,
        }
    }

    /// Appends a prepared request to the durable queue; the sender's answer once it is there.
    pub async fn accept(&self, prepared: Prepared) -> Result<Partial, IntakeError> {
        let Prepared {
            signal,
            queued,
            accepted,
            partial,
            redactions,
        } = prepared;
        let Some(queued) = queued else {
            return Ok(partial);
        };
        self.metrics
            .redacted_values
            .inc_by(redactions.values_redacted);
        self.metrics
            .truncated_values
            .inc_by(redactions.values_truncated);
        self.enqueue(queued)
            .await
            .inspect_err(|e| self.refused_records(signal, e, accepted))?;
        self.metrics
            .accepted_records
            .with_label_values(&[signal])
            .inc_by(accepted);
        // Counted once stored: a request refused after redaction was not.
        self.metrics
            .truncated_records
            .with_label_values(&[signal, "too_deep"])
            .inc_by(redactions.records_too_deep);
        Ok(partial)
    }

    /// What the sender is told (and the metrics count) of records rejected for their ids and
    /// of records stored with over-deep values cut; `what` names one record and several.
    fn partial(
        &self,
        signal: &str,
        rejected: i64,
        redactions: &crate::ingest::redact::Redactions,
        what: [&str; 2],
    ) -> Partial {
        let name = |count: u64| what[usize::from(count != 1)];
        let mut notes = Vec::new();
        if rejected > 0 {
            self.metrics
                .refused_records
                .with_label_values(&[signal, "invalid_id"])
                .inc_by(rejected as u64);
            notes.push(format!(
                "{rejected} {} rejected: trace ids must be 16 bytes and span ids 8",
                name(rejected as u64)
            ));
        }
        let (records, values) = (redactions.records_too_deep, redactions.values_too_deep);
        if records > 0 {
            notes.push(format!(
                "{records} {} stored with {values} value{} truncated: arrays and key-value \
                 lists nested deeper than {MAX_NESTING} levels are replaced by {TOO_DEEP:?}",
                name(records),
                if values == 1 { "" } else { "s" },
            ));
        }
        Partial {
            rejected,
            message: notes.join("; "),
        }
    }

    async fn enqueue(&self, queued: Vec<u8>) -> Result<(), IntakeError> {
        match self.queue.append(queued).await {
            Ok(_) => Ok(()),
            Err(QueueError::Full { bytes, .. }) => Err(self.full(bytes)),
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

    /// Counts a refused request, once, by reason. Its records are counted too where they were
    /// decoded ([`Self::logs`], [`Self::traces`]); refused before decoding, they are unknown.
    pub fn refused(&self, signal: &str, error: &IntakeError) {
        self.metrics
            .refused_requests
            .with_label_values(&[signal, error.reason()])
            .inc();
    }

    fn refused_records(&self, signal: &str, error: &IntakeError, records: u64) {
        self.metrics
            .refused_records
            .with_label_values(&[signal, error.reason()])
            .inc_by(records);
    }
}

impl IntakeError {
    /// The `reason` label of the refusal metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            IntakeError::Unauthenticated => "unauthenticated",
            IntakeError::Invalid(_) => "invalid",
            IntakeError::UnsupportedMediaType(_) => "unsupported_media_type",
            IntakeError::TooLarge(_) => "too_large",
            IntakeError::Full { .. } => "queue_full",
            IntakeError::Unavailable(_) => "unavailable",
        }
    }
}

/// Requests bigger than this are decoded and prepared off the async workers.
const DECODE_INLINE_LIMIT: usize = 64 * 1024;

/// Decodes a request's body with `decode` and runs `prepare` ([`Intake::prepare_logs`]) on
/// it. A large request is decoded and prepared on one thread of the blocking pool, off the
/// async workers, and its decoded form is freed by the thread that allocated it (a free from
/// another thread parks the memory in the allocating thread's heap until that thread allocates
/// again). How many run at once is bounded by `ingest.max_concurrent_requests`: a tighter bound
/// (one per core) took logbook's share of 2 cores shared with ClickHouse from 66-75k to 34-38k
/// acknowledged records/s (docs/benchmarks.md).
pub async fn decode_and_prepare<T: Send + 'static>(
    intake: &Arc<Intake>,
    body: bytes::Bytes,
    decode: impl FnOnce(bytes::Bytes) -> Result<T, IntakeError> + Send + 'static,
    prepare: fn(&Intake, T) -> Prepared,
) -> Result<Prepared, IntakeError> {
    let inline = body.len() <= DECODE_INLINE_LIMIT;
    let work = {
        let intake = intake.clone();
        move || decode(body).map(|request| prepare(&intake, request))
    };
    if inline {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| IntakeError::Unavailable(e.to_string()))?
}

/// Decodes an OTLP protobuf message ([`nesting::protobuf`]).
pub fn protobuf<T: nesting::Otlp>(body: bytes::Bytes) -> Result<T, IntakeError> {
    nesting::protobuf(&body)
        .map_err(|e| IntakeError::Invalid(format!("invalid OTLP protobuf: {e}")))
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
                nesting::json(json).map_err(|e| invalid(&e))?;
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
                nesting::json(json).map_err(|e| invalid(&e))?;
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

/// How long a sender refused for a full queue should wait: 1 s, plus up to 29 s as the queue
/// fills (by the square of its fullness, so a nearly full queue asks for long pauses). Whole
/// seconds, as `Retry-After` carries.
pub fn retry_delay(queued_bytes: u64, max_bytes: u64) -> Duration {
    let fullness = (queued_bytes as f64 / max_bytes.max(1) as f64).clamp(0.0, 1.0);
    Duration::from_secs(1 + (29.0 * fullness * fullness).round() as u64)
}

/// The token of an `Authorization: Bearer <token>` value, the scheme in any case.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

fn valid_ids(trace_id: &[u8], span_id: &[u8]) -> bool {
    matches!(trace_id.len(), 0 | 16) && matches!(span_id.len(), 0 | 8)
}

fn now_nanos() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0)
}
