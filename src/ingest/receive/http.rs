//! OTLP/HTTP: `POST /v1/logs` and `/v1/traces`, protobuf or JSON, optionally gzip-compressed.
//! Responses use the request's encoding; errors carry a `google.rpc.Status`-shaped body.

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Intake, IntakeError, Signal};

/// Requests bigger than this are decoded off the async workers.
const DECODE_INLINE_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

/// `google.rpc.Status`, the body OTLP/HTTP error responses carry.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

pub fn router(intake: Arc<Intake>) -> Router {
    let limit = usize::try_from(intake.max_request_size).unwrap_or(usize::MAX);
    Router::new()
        .route("/v1/logs", post(logs))
        .route("/v1/traces", post(traces))
        .route("/v1/dry-run/logs", post(dry_run_logs))
        .route("/v1/dry-run/traces", post(dry_run_traces))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(intake)
}

async fn logs(State(intake): State<Arc<Intake>>, headers: HeaderMap, body: Bytes) -> Response {
    let format = match request_format(&headers) {
        Ok(format) => format,
        Err(message) => return (StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response(),
    };
    let result = async {
        let request: ExportLogsServiceRequest = decode(&intake, &headers, format, body).await?;
        intake.logs(request).await
    }
    .await;
    match result {
        Ok(partial) => encode(format, StatusCode::OK, &partial.logs_response()),
        Err(error) => refuse(&intake, "logs", format, error),
    }
}

async fn traces(State(intake): State<Arc<Intake>>, headers: HeaderMap, body: Bytes) -> Response {
    let format = match request_format(&headers) {
        Ok(format) => format,
        Err(message) => return (StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response(),
    };
    let result = async {
        let request: ExportTraceServiceRequest = decode(&intake, &headers, format, body).await?;
        intake.traces(request).await
    }
    .await;
    match result {
        Ok(partial) => encode(format, StatusCode::OK, &partial.traces_response()),
        Err(error) => refuse(&intake, "traces", format, error),
    }
}

async fn dry_run_logs(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    dry_run(&intake, &headers, Signal::Logs, body)
}

async fn dry_run_traces(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    dry_run(&intake, &headers, Signal::Traces, body)
}

/// What an OTLP/JSON request would become, per record; authenticated like ingest, stores
/// nothing and counts nothing.
fn dry_run(intake: &Intake, headers: &HeaderMap, signal: Signal, body: Bytes) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let result = intake
        .authorize(authorization)
        .and_then(|()| match request_format(headers) {
            Ok(Format::Json) => intake.dry_run(signal, &body),
            _ => Err(IntakeError::Invalid(
                "a dry run takes OTLP/JSON: send content-type application/json".into(),
            )),
        });
    match result {
        Ok(report) => axum::Json(report).into_response(),
        Err(error) => {
            let status = match error {
                IntakeError::Unauthenticated => StatusCode::UNAUTHORIZED,
                _ => StatusCode::BAD_REQUEST,
            };
            let body = serde_json::json!({ "error": error.to_string() });
            (status, axum::Json(body)).into_response()
        }
    }
}

fn request_format(headers: &HeaderMap) -> Result<Format, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    match mime {
        "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
        "application/json" => Ok(Format::Json),
        _ => Err(format!(
            "content type {content_type:?} is not supported: send application/x-protobuf or application/json"
        )),
    }
}

async fn decode<T>(
    intake: &Intake,
    headers: &HeaderMap,
    format: Format,
    body: Bytes,
) -> Result<T, IntakeError>
where
    T: prost::Message + Default + DeserializeOwned + Send + 'static,
{
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    intake.authorize(authorization)?;
    intake.check_room(body.len() as u64)?;
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(HeaderValue::to_str)
    {
        None => false,
        Some(Ok("gzip")) => true,
        Some(Ok("identity")) => false,
        Some(other) => {
            return Err(IntakeError::Invalid(format!(
                "content encoding {other:?} is not supported: use gzip or none"
            )));
        }
    };
    let limit = intake.max_request_size;
    let work = move || -> Result<T, IntakeError> {
        let body = if gzip {
            Bytes::from(gunzip(&body, limit)?)
        } else {
            body
        };
        match format {
            Format::Protobuf => T::decode(body)
                .map_err(|e| IntakeError::Invalid(format!("invalid OTLP protobuf: {e}"))),
            Format::Json => serde_json::from_slice(&body)
                .map_err(|e| IntakeError::Invalid(format!("invalid OTLP JSON: {e}"))),
        }
    };
    if body_len(headers) <= DECODE_INLINE_LIMIT {
        work()
    } else {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| IntakeError::Unavailable(e.to_string()))?
    }
}

fn body_len(headers: &HeaderMap) -> usize {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(usize::MAX)
}

/// Decompresses at most `limit` bytes: a small gzip bomb is refused, not inflated.
fn gunzip(body: &[u8], limit: u64) -> Result<Vec<u8>, IntakeError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| IntakeError::Invalid(format!("invalid gzip body: {e}")))?;
    if out.len() as u64 > limit {
        return Err(IntakeError::TooLarge(limit));
    }
    Ok(out)
}

fn encode<M: prost::Message + Serialize>(
    format: Format,
    status: StatusCode,
    message: &M,
) -> Response {
    match format {
        Format::Protobuf => (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            message.encode_to_vec(),
        )
            .into_response(),
        Format::Json => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(message).unwrap_or_default(),
        )
            .into_response(),
    }
}

fn refuse(intake: &Intake, signal: &str, format: Format, error: IntakeError) -> Response {
    intake.refused(signal, &error);
    let (status, code, retry_after) = match &error {
        IntakeError::Unauthenticated => (StatusCode::UNAUTHORIZED, 16, None),
        IntakeError::Invalid(_) => (StatusCode::BAD_REQUEST, 3, None),
        IntakeError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, 8, None),
        IntakeError::Full => (StatusCode::TOO_MANY_REQUESTS, 8, Some("1")),
        IntakeError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, 14, Some("5")),
    };
    let mut response = encode(
        format,
        status,
        &RpcStatus {
            code,
            message: error.to_string(),
        },
    );
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    }
    response
}
