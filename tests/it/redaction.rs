//! Credentials known by their shape (card numbers, cloud and SaaS keys, private keys, JWTs)
//! never reach a table or the on-disk queue, whichever signal carries them.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use crate::harness::test_db;
use crate::ingest::{
    FAST, api_call, count_where, kv, now_nanos, post, request, s, send_logs, wait_for, walk,
};
use crate::logbook::{Logbook, Transport};

const CARD: &str = "4111111111111111";
const SPACED_CARD: &str = "5555 5555 5555 4444";
const AWS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const GITHUB: &str = "ghp_R2d2C3poLuke0Leia1Han2Chewie3Yoda456";
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QtNDIifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV";
const KEY_BODY: &str = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0t";
const STRIPE: &str = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";

#[tokio::test]
async fn shaped_credentials_are_redacted_in_every_table_and_in_the_queue() {
    let db = test_db("redaction_shaped").await;
    let logbook = Logbook::start(&db, FAST).await;
    let mut call = api_call("shape-bot", "bob");
    call.attributes
        .retain(|kv| kv.key != "logbook.outcome" && kv.key != "url.full");
    call.attributes.extend([
        kv("logbook.outcome", s("error")),
        kv("url.full", s(&format!("https://api.example.com/v1?id_token={JWT}"))),
        kv(
            "logbook.request.body",
            s(&format!(
                r#"{{"card":"{CARD}","billing":"card {SPACED_CARD}","aws":{{"id":"{AWS_KEY_ID}","secret":"{AWS_SECRET}"}}}}"#
            )),
        ),
        kv(
            "logbook.response.body",
            s(&format!("upstream rejected {GITHUB} and {STRIPE}")),
        ),
        kv(
            "exception.message",
            s(&format!(
                "bad key -----BEGIN RSA PRIVATE KEY-----\n{KEY_BODY}\n-----END RSA PRIVATE KEY-----"
            )),
        ),
    ]);
    assert_eq!(
        send_logs(
            &logbook,
            Transport::HttpProtobuf,
            &request("bots", vec![call])
        )
        .await,
        200
    );
    let spans = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("shape-svc"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![0x44; 16],
                    span_id: vec![0x45; 8],
                    name: "charge".into(),
                    start_time_unix_nano: now_nanos(),
                    end_time_unix_nano: now_nanos() + 1_000_000,
                    attributes: vec![
                        kv("payment.card", s(SPACED_CARD)),
                        kv("aws.credentials", s(&format!("{AWS_KEY_ID}:{AWS_SECRET}"))),
                    ],
                    status: Some(Status {
                        message: format!("declined {CARD} for {JWT}"),
                        code: 2,
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (status, body) = post(
        &logbook,
        "/v1/traces",
        "application/x-protobuf",
        spans.encode_to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let within = Duration::from_secs(10);
    let stored = [
        ("api_calls", "bot = 'shape-bot'"),
        ("errors", "source = 'shape-bot'"),
        ("otel_logs", "ServiceName = 'bots'"),
        ("otel_traces", &format!("TraceId = '{}'", "44".repeat(16))),
    ];
    for (table, condition) in stored {
        assert_eq!(
            wait_for(&db, table, condition, 1, within).await,
            1,
            "{table}"
        );
    }
    let secrets = [
        CARD,
        SPACED_CARD,
        AWS_KEY_ID,
        AWS_SECRET,
        GITHUB,
        JWT,
        KEY_BODY,
        STRIPE,
    ];
    for (table, _) in stored {
        for secret in secrets {
            let leaked = count_where(
                &db,
                table,
                &format!("position(formatRow('TSV', *), '{secret}') > 0"),
            )
            .await;
            assert_eq!(leaked, 0, "{secret} reached {table}");
        }
        let marked = count_where(
            &db,
            table,
            "position(formatRow('TSV', *), '[REDACTED]') > 0",
        );
        assert!(marked.await >= 1, "{table} holds the marker");
    }
    let files = walk(logbook.dir.path());
    assert!(!files.is_empty());
    for entry in files {
        let bytes = std::fs::read(&entry).unwrap();
        for secret in secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} is on disk in {}",
                entry.display()
            );
        }
    }
    // The text around each secret is kept.
    let body: String = db
        .client
        .query("SELECT request_body FROM api_calls WHERE bot = 'shape-bot'")
        .fetch_one()
        .await
        .unwrap();
    assert!(body.contains(r#""billing":"card [REDACTED]""#), "{body}");
}
