//! OTLP/gRPC: the logs and trace services, gzip accepted, messages bounded in size.
//!
//! Codes follow the OTLP spec ("Failures", "Throttling"): a full queue answers
//! RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo` (the only RESOURCE_EXHAUSTED a client
//! retries), a request over the size limit RESOURCE_EXHAUSTED without one (not retryable), a
//! malformed one INVALID_ARGUMENT. Tokens are checked by an interceptor, before the message is
//! read or decoded.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use tonic::codegen::BoxFuture;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Request, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::grpc_server::{Export, Server};
use super::nesting::Otlp;
use super::{Intake, IntakeError, Partial, Prepared, decode_and_prepare, protobuf};

/// The logs service's `Export`.
#[derive(Clone)]
pub struct Logs(Arc<Intake>);

/// The trace service's `Export`.
#[derive(Clone)]
pub struct Traces(Arc<Intake>);

/// A service as served: tonic's own refusals rewritten, tokens checked first.
pub type Served<S> = Refusals<InterceptedService<S, Authenticate>>;

/// The two services, ready for `tonic::transport::Server::add_service`.
pub fn services(intake: Arc<Intake>) -> (Served<Server<Logs>>, Served<Server<Traces>>) {
    let limit = usize::try_from(intake.max_request_size).unwrap_or(usize::MAX);
    let logs = Server::new(Logs(intake.clone()), limit);
    let traces = Server::new(Traces(intake.clone()), limit);
    (
        served(logs, &intake, "logs"),
        served(traces, &intake, "traces"),
    )
}

fn served<S>(service: S, intake: &Arc<Intake>, signal: &'static str) -> Served<S> {
    let authenticate = Authenticate {
        intake: intake.clone(),
        signal,
    };
    Refusals {
        inner: InterceptedService::new(service, authenticate),
        intake: intake.clone(),
        signal,
    }
}

/// The gRPC status of a refusal, counted once.
fn status(intake: &Intake, signal: &str, error: IntakeError) -> Status {
    intake.refused(signal, &error);
    let message = error.to_string();
    match error {
        IntakeError::Unauthenticated => Status::unauthenticated(message),
        IntakeError::Invalid(_) | IntakeError::UnsupportedMediaType(_) => {
            Status::invalid_argument(message)
        }
        IntakeError::TooLarge(_) => Status::resource_exhausted(message),
        IntakeError::Full { retry_after } => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(retry_after)),
        ),
        IntakeError::Unavailable(_) => Status::unavailable(message),
    }
}

/// Checks the bearer token from the metadata alone, before tonic reads the message.
#[derive(Clone)]
pub struct Authenticate {
    intake: Arc<Intake>,
    signal: &'static str,
}

impl Interceptor for Authenticate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        match self.intake.authorize(header) {
            Ok(()) => Ok(request),
            Err(error) => Err(status(&self.intake, self.signal, error)),
        }
    }
}

/// Rewrites the refusals tonic makes before logbook's handler runs, and counts them. The
/// handlers never answer OUT_OF_RANGE or INTERNAL, and their RESOURCE_EXHAUSTED carries a
/// RetryInfo, so these come from tonic: OUT_OF_RANGE (over the size limit) and a bare
/// RESOURCE_EXHAUSTED (over it once decompressed) become a not-retryable RESOURCE_EXHAUSTED,
/// INTERNAL (bad compression, a damaged frame) becomes INVALID_ARGUMENT.
#[derive(Clone)]
pub struct Refusals<S> {
    inner: S,
    intake: Arc<Intake>,
    signal: &'static str,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Refusals<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> tower::Service<axum::http::Request<B>> for Refusals<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<R>>,
    S::Future: Send + 'static,
    R: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    R::Error: Into<tower::BoxError>,
{
    type Response = axum::http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let response = self.inner.call(request);
        let (intake, signal) = (self.intake.clone(), self.signal);
        Box::pin(async move {
            let response = response.await?;
            let Some(refusal) = Status::from_header_map(response.headers()) else {
                return Ok(response.map(tonic::body::Body::new));
            };
            let error = match refusal.code() {
                Code::OutOfRange => IntakeError::TooLarge(intake.max_request_size),
                Code::ResourceExhausted if refusal.details().is_empty() => {
                    IntakeError::TooLarge(intake.max_request_size)
                }
                Code::Internal => {
                    IntakeError::Invalid(format!("invalid OTLP request: {}", refusal.message()))
                }
                _ => return Ok(response.map(tonic::body::Body::new)),
            };
            Ok(status(&intake, signal, error).into_http())
        })
    }
}

/// Decodes, prepares and queues one request's message ([`decode_and_prepare`]).
async fn export<T: Otlp + Send + 'static>(
    intake: Arc<Intake>,
    message: Bytes,
    signal: &'static str,
    prepare: fn(&Intake, T) -> Prepared,
) -> Result<Partial, Status> {
    let accepted = async {
        let prepared = decode_and_prepare(&intake, message, protobuf::<T>, prepare).await?;
        intake.accept(prepared).await
    };
    accepted.await.map_err(|e| status(&intake, signal, e))
}

impl Export for Logs {
    type Response = ExportLogsServiceResponse;
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

    fn export(&self, message: Bytes) -> BoxFuture<Self::Response, Status> {
        let partial = export(self.0.clone(), message, "logs", Intake::prepare_logs);
        Box::pin(async move { partial.await.map(Partial::logs_response) })
    }
}

impl Export for Traces {
    type Response = ExportTraceServiceResponse;
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

    fn export(&self, message: Bytes) -> BoxFuture<Self::Response, Status> {
        let partial = export(self.0.clone(), message, "traces", Intake::prepare_traces);
        Box::pin(async move { partial.await.map(Partial::traces_response) })
    }
}
