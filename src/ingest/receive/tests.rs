//! The receivers as senders meet them, in process: codes, retry hints, refusal bodies,
//! authentication before the body, and the shared bound on requests in flight.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_types::StatusExt;

use super::http::RpcStatus;
use super::*;
use crate::ingest::queue::{FsyncPolicy, QueueOptions};
use crate::ingest::redact::RedactionConfig;

const LIMIT: u64 = 16 * 1024;

struct Receivers {
    http: String,
    grpc: String,
    intake: Arc<Intake>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Receivers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(tokens: &[&str], queue_max_bytes: u64, max_concurrent: usize) -> Receivers {
    let dir = tempfile::tempdir().unwrap();
    let mut options = QueueOptions::new(dir.path().join("queue"));
    options.max_bytes = queue_max_bytes;
    options.fsync = FsyncPolicy::Never;
    let queue = Queue::open(options).unwrap();
    let tokens = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("svc{i}"), Secret::new(*t)))
        .collect();
    let intake = Arc::new(Intake::new(
        queue,
        Redactor::new(&RedactionConfig::default()).unwrap(),
        &tokens,
        Arc::new(Metrics::new()),
        LIMIT,
        queue_max_bytes,
    ));
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (grpc_at, http_at) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(serve(
        intake.clone(),
        grpc,
        http,
        max_concurrent,
        stop.clone(),
    ));
    Receivers {
        http: format!("http://{http_at}/v1/logs"),
        grpc: format!("http://{grpc_at}"),
        intake,
        stop,
        _dir: dir,
    }
}

/// One log record whose body is `size` bytes.
fn request(size: usize) -> ExportLogsServiceRequest {
    let record = LogRecord {
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue("x".repeat(size))),
        }),
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A message that is not a valid `ExportLogsServiceRequest`: field 1 holds garbage.
#[derive(Clone, PartialEq, prost::Message)]
struct Malformed {
    #[prost(bytes = "vec", tag = "1")]
    resource_logs: Vec<u8>,
}

async fn grpc_client(at: &str) -> LogsServiceClient<tonic::transport::Channel> {
    LogsServiceClient::connect(at.to_owned())
        .await
        .unwrap()
        .max_encoding_message_size(usize::MAX)
}

async fn grpc_send<M: prost::Message + Send + Sync + 'static>(
    at: &str,
    message: M,
    token: Option<&str>,
) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(at.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", token.parse().unwrap());
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    );
    let codec = tonic_prost::ProstCodec::<M, ExportLogsServiceResponse>::default();
    grpc.unary(request, path, codec).await.map(drop)
}

async fn http_send(at: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(at)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn refused(intake: &Intake, reason: &str) -> u64 {
    intake
        .metrics
        .refused_requests
        .with_label_values(&["logs", reason])
        .get()
}

#[tokio::test]
async fn a_full_queue_asks_senders_to_retry_later_on_both_transports() {
    let receivers = start(&[], 64 * 1024, 8).await;
    let mut client = grpc_client(&receivers.grpc).await;
    let full = loop {
        match client.export(request(8 * 1024)).await {
            Ok(_) => continue,
            Err(status) => break status,
        }
    };
    assert_eq!(full.code(), tonic::Code::ResourceExhausted, "{full:?}");
    let retry = full.get_details_retry_info().expect("RetryInfo detail");
    let delay = retry.retry_delay.expect("a delay");
    // The queue is at least 3/4 full: 1 s + 29 s × (3/4)² ≈ 17 s at the least.
    assert!(
        (Duration::from_secs(17)..=Duration::from_secs(30)).contains(&delay),
        "{delay:?}"
    );
    let accepted = receivers
        .intake
        .metrics
        .accepted_records
        .with_label_values(&["logs"])
        .get();
    assert!(accepted >= 6, "{accepted}");
    let refused_records = receivers
        .intake
        .metrics
        .refused_records
        .with_label_values(&["logs", "queue_full"])
        .get();
    assert_eq!(refused_records, 1);

    let response = http_send(
        &receivers.http,
        "application/x-protobuf",
        request(8 * 1024).encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), 429);
    let seconds: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((17..=30).contains(&seconds), "{seconds}");
    let status = RpcStatus::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 8, "{status:?}");
    assert_eq!(refused(&receivers.intake, "queue_full"), 2);
}

#[tokio::test]
async fn oversize_and_malformed_requests_get_codes_senders_do_not_retry() {
    let receivers = start(&[], 1 << 20, 8).await;
    let mut client = grpc_client(&receivers.grpc).await;
    let big = request(LIMIT as usize + 1024);
    let status = client.export(big.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.get_details_retry_info().is_none(), "not retryable");
    let malformed = Malformed {
        resource_logs: vec![0xff, 0xff, 0xff, 0x01],
    };
    let status = grpc_send(&receivers.grpc, malformed.clone(), None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    let response = http_send(
        &receivers.http,
        "application/x-protobuf",
        big.encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let status = RpcStatus::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 8, "{status:?}");
    let json = serde_json::to_vec(&big).unwrap();
    let response = http_send(&receivers.http, "application/json", json).await;
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], 8, "{body}");
    let response = http_send(&receivers.http, "text/plain", b"hello".to_vec()).await;
    assert_eq!(response.status(), 415);
    let status = RpcStatus::decode(response.bytes().await.unwrap()).unwrap();
    assert!(status.message.contains("text/plain"), "{status:?}");

    assert_eq!(refused(&receivers.intake, "too_large"), 3);
    assert_eq!(refused(&receivers.intake, "invalid"), 1);
    assert_eq!(refused(&receivers.intake, "unsupported_media_type"), 1);
}

#[tokio::test]
async fn tokens_are_checked_before_the_body_is_read() {
    let receivers = start(&["tok-1"], 1 << 20, 8).await;
    // Headers announcing a large body that never comes: the answer must not wait for it.
    let address = receivers.http.trim_start_matches("http://");
    let (host, _) = address.split_once('/').unwrap();
    let mut socket = tokio::net::TcpStream::connect(host).await.unwrap();
    socket
        .write_all(
            b"POST /v1/logs HTTP/1.1\r\nhost: logbook\r\ncontent-type: application/x-protobuf\r\n\
              content-length: 1000000\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut head))
        .await
        .expect("answered before the body was sent")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 401");

    // Over gRPC, a malformed or oversized message without a token is refused for the token:
    // tonic never read it.
    let malformed = Malformed {
        resource_logs: vec![0xff, 0xff, 0xff, 0x01],
    };
    let status = grpc_send(&receivers.grpc, malformed, None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let big = request(LIMIT as usize + 1024);
    let status = grpc_send(&receivers.grpc, big, None).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(refused(&receivers.intake, "unauthenticated"), 3);

    // The scheme is case-insensitive (RFC 7235).
    grpc_send(&receivers.grpc, request(10), Some("bearer tok-1"))
        .await
        .unwrap();
    let response = reqwest::Client::new()
        .post(&receivers.http)
        .header("content-type", "application/x-protobuf")
        .header("authorization", "BEARER tok-1")
        .body(request(10).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = reqwest::Client::new()
        .post(&receivers.http)
        .header("content-type", "application/x-protobuf")
        .header("authorization", "Bearer tok-2")
        .body(request(10).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn one_bound_on_requests_in_flight_covers_both_receivers() {
    let receivers = start(&[], 1 << 20, 1).await;
    let body = request(100).encode_to_vec();
    let address = receivers.http.trim_start_matches("http://");
    let (host, _) = address.split_once('/').unwrap();
    let mut socket = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nhost: logbook\r\ncontent-type: application/x-protobuf\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&body[..1]).await.unwrap();
    // The HTTP request holds the only slot while its body trickles in: a gRPC request waits.
    let mut client = grpc_client(&receivers.grpc).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let attempt =
            tokio::time::timeout(Duration::from_millis(300), client.export(request(10))).await;
        if attempt.is_err() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gRPC requests went through while the HTTP one held the only slot"
        );
    }
    socket.write_all(&body[1..]).await.unwrap();
    let mut head = [0u8; 12];
    socket.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    tokio::time::timeout(Duration::from_secs(5), client.export(request(10)))
        .await
        .expect("the slot was freed")
        .unwrap();
}

#[test]
fn ids_must_have_otlp_lengths() {
    assert!(valid_ids(&[], &[]));
    assert!(valid_ids(&[1; 16], &[1; 8]));
    assert!(!valid_ids(&[1; 15], &[1; 8]));
    assert!(!valid_ids(&[1; 16], &[1; 4]));
}

#[test]
fn retry_delay_grows_with_fullness() {
    assert_eq!(retry_delay(0, 100), Duration::from_secs(1));
    assert_eq!(retry_delay(50, 100), Duration::from_secs(8));
    assert_eq!(retry_delay(100, 100), Duration::from_secs(30));
    assert_eq!(retry_delay(500, 100), Duration::from_secs(30));
}

#[test]
fn bearer_scheme_is_case_insensitive() {
    assert_eq!(bearer_token("Bearer abc"), Some("abc"));
    assert_eq!(bearer_token("bearer abc"), Some("abc"));
    assert_eq!(bearer_token("BEARER  abc"), Some("abc"));
    assert_eq!(bearer_token("Basic abc"), None);
    assert_eq!(bearer_token("Bearerabc"), None);
}
