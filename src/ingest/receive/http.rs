//! OTLP/HTTP: `POST /v1/logs` and `/v1/traces`, protobuf or JSON, optionally gzip-compressed.
//! Responses use the request's encoding; every error, 413 and 415 included, carries a
//! `google.rpc.Status` body. The token is checked before the body is read, and the body is
//! read no further than the size limit.

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::BytesMut;
use serde::Serialize;
use tokio_stream::StreamExt;

use super::{Intake, IntakeError, Prepared, Signal, nesting};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

/// `google.rpc.Status`, the body OTLP/HTTP error responses carry.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

pub fn router(intake: Arc<Intake>) -> Router {
    Router::new()
        .route("/v1/logs", post(logs))
        .route("/v1/traces", post(traces))
        .route_layer(middleware::from_fn_with_state(intake.clone(), authenticate))
        // A dry run authenticates itself: it stores nothing, so its refusals are not counted.
        .route("/v1/dry-run/logs", post(dry_run_logs))
        .route("/v1/dry-run/traces", post(dry_run_traces))
        // The handlers read the body themselves, up to `max_request_size`.
        .layer(DefaultBodyLimit::disable())
        .with_state(intake)
}

/// Checks the token from the headers alone: an anonymous client costs a header check, not
/// a body read.
async fn authenticate(State(intake): State<Arc<Intake>>, request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match intake.authorize(header) {
        Ok(()) => next.run(request).await,
        Err(error) => {
            let signal = if request.uri().path() == "/v1/logs" {
                "logs"
            } else {
                "traces"
            };
            refuse(&intake, signal, reply_format(request.headers()), error)
        }
    }
}

async fn logs(State(intake): State<Arc<Intake>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let prepared = prepare(&intake, &headers, body, Intake::prepare_logs).await?;
        intake.accept(prepared).await
    }
    .await;
    let format = reply_format(&headers);
    match result {
        Ok(partial) => encode(format, StatusCode::OK, &partial.logs_response()),
        Err(error) => refuse(&intake, "logs", format, error),
    }
}

async fn traces(State(intake): State<Arc<Intake>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let prepared = prepare(&intake, &headers, body, Intake::prepare_traces).await?;
        intake.accept(prepared).await
    }
    .await;
    let format = reply_format(&headers);
    match result {
        Ok(partial) => encode(format, StatusCode::OK, &partial.traces_response()),
        Err(error) => refuse(&intake, "traces", format, error),
    }
}

async fn dry_run_logs(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    dry_run(&intake, &headers, Signal::Logs, body).await
}

async fn dry_run_traces(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    dry_run(&intake, &headers, Signal::Traces, body).await
}

/// What an OTLP/JSON request would become, per record; authenticated like ingest (before the
/// body is read), stores nothing and counts nothing.
async fn dry_run(intake: &Intake, headers: &HeaderMap, signal: Signal, body: Body) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let result = async {
        intake.authorize(authorization)?;
        if request_format(headers)? != Format::Json {
            return Err(IntakeError::Invalid(
                "a dry run takes OTLP/JSON: send content-type application/json".into(),
            ));
        }
        let body = read_body(body, intake.max_request_size, body_len(headers)).await?;
        intake.dry_run(signal, &body)
    }
    .await;
    match result {
        Ok(report) => axum::Json(report).into_response(),
        Err(error) => {
            let status = match error {
                IntakeError::Unauthenticated => StatusCode::UNAUTHORIZED,
                IntakeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                IntakeError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                _ => StatusCode::BAD_REQUEST,
            };
            let body = serde_json::json!({ "error": error.to_string() });
            (status, axum::Json(body)).into_response()
        }
    }
}

fn request_format(headers: &HeaderMap) -> Result<Format, IntakeError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    match mime {
        "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
        "application/json" => Ok(Format::Json),
        _ => Err(IntakeError::UnsupportedMediaType(format!(
            "content type {content_type:?} is not supported: send application/x-protobuf or application/json"
        ))),
    }
}

/// The encoding of the reply: the request's, protobuf when it has none logbook speaks.
fn reply_format(headers: &HeaderMap) -> Format {
    request_format(headers).unwrap_or(Format::Protobuf)
}

/// Reads a request's body and decodes and prepares it ([`super::decode_and_prepare`]).
async fn prepare<T>(
    intake: &Arc<Intake>,
    headers: &HeaderMap,
    body: Body,
    prepare: fn(&Intake, T) -> Prepared,
) -> Result<Prepared, IntakeError>
where
    T: nesting::Otlp + Send + 'static,
{
    let format = request_format(headers)?;
    let limit = intake.max_request_size;
    let declared = body_len(headers);
    if declared.is_some_and(|len| len as u64 > limit) {
        return Err(IntakeError::TooLarge(limit));
    }
    // Refused before the body is read when the declared size does not fit.
    intake.check_room(declared.unwrap_or(0) as u64)?;
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
    let body = read_body(body, limit, declared).await?;
    intake.check_room(body.len() as u64)?;
    let decode = move |body: Bytes| -> Result<T, IntakeError> {
        let body = if gzip {
            Bytes::from(gunzip(&body, limit)?)
        } else {
            body
        };
        match format {
            Format::Protobuf => super::protobuf(body),
            Format::Json => nesting::json(&body)
                .map_err(|e| IntakeError::Invalid(format!("invalid OTLP JSON: {e}"))),
        }
    };
    super::decode_and_prepare(intake, body, decode, prepare).await
}

fn body_len(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

/// Reads the body, refusing it as soon as it passes `limit` bytes. A body that states its
/// length is read into a buffer of that size (at most `limit`): growing one by doubling held
/// up to twice a body's size, and copied it at each step.
async fn read_body(body: Body, limit: u64, length: Option<usize>) -> Result<Bytes, IntakeError> {
    let mut stream = body.into_data_stream();
    let reserve = length
        .unwrap_or(0)
        .min(usize::try_from(limit).unwrap_or(usize::MAX));
    let mut buffer = BytesMut::with_capacity(reserve);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| IntakeError::Invalid(format!("cannot read the request body: {e}")))?;
        if (buffer.len() + chunk.len()) as u64 > limit {
            return Err(IntakeError::TooLarge(limit));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
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

/// The response to a refusal, counted once: the status, a `google.rpc.Status` body (with the
/// gRPC code of the same refusal), and `Retry-After` where a retry can succeed.
fn refuse(intake: &Intake, signal: &str, format: Format, error: IntakeError) -> Response {
    intake.refused(signal, &error);
    let (status, code, retry_after) = match &error {
        IntakeError::Unauthenticated => (StatusCode::UNAUTHORIZED, 16, None),
        IntakeError::Invalid(_) => (StatusCode::BAD_REQUEST, 3, None),
        IntakeError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, 3, None),
        IntakeError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, 8, None),
        IntakeError::Full { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            8,
            Some(retry_after.as_secs()),
        ),
        IntakeError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, 14, Some(5)),
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
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
