//! OTLP in, ClickHouse rows out, through a real `logbook serve` and the real engine: every log
//! kind over every transport, bad input, redaction, crashes and ClickHouse outages.

use std::time::{Duration, Instant};

use logbook::schema::{self, ApiCall, LogKind, Source, TableDef, insert};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::harness::{TestDb, test_db};
use crate::logbook::{Logbook, Transport};

pub const FAST: &str = "[batch]\nmax_age = \"200ms\"\n";

pub fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn s(text: &str) -> Value {
    Value::StringValue(text.into())
}

pub fn request(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s(service)),
                    kv("deployment.environment.name", s("test")),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A record of `kind` that fills every column, and (column, SQL, expected text) to check.
fn sample(kind: &TableDef, tenant: &str) -> (LogRecord, Vec<(String, String)>) {
    let mut record = LogRecord {
        time_unix_nano: now_nanos(),
        event_name: kind.event_name.unwrap().into(),
        trace_id: vec![0x5b; 16],
        span_id: vec![0x8e; 8],
        severity_number: 17,
        severity_text: "ERROR".into(),
        attributes: vec![kv("logbook.tenant", s(tenant))],
        ..Default::default()
    };
    let mut checks = vec![
        ("tenant".to_owned(), tenant.to_owned()),
        ("trace_id".to_owned(), "5b".repeat(16)),
        ("service".to_owned(), "sampler".to_owned()),
        ("environment".to_owned(), "test".to_owned()),
    ];
    for column in kind.columns {
        let expression = format!("toString(`{}`)", column.name);
        match column.source.unwrap() {
            Source::Attr(name) => {
                let (value, expected) = match column.type_name() {
                    "UInt8" | "UInt16" | "UInt32" => (Value::IntValue(3), "3".to_owned()),
                    "Bool" => (Value::BoolValue(true), "true".to_owned()),
                    "DateTime64(9, 'UTC')" => {
                        checks.push((
                            format!("toString(toUnixTimestamp64Nano(`{}`))", column.name),
                            "1700000000123456789".into(),
                        ));
                        record
                            .attributes
                            .push(kv(name, Value::IntValue(1_700_000_000_123_456_789)));
                        continue;
                    }
                    t if t.starts_with("Array") => (
                        Value::ArrayValue(ArrayValue {
                            values: vec![
                                AnyValue {
                                    value: Some(s("a1")),
                                },
                                AnyValue {
                                    value: Some(s("b2")),
                                },
                            ],
                        }),
                        "['a1','b2']".to_owned(),
                    ),
                    _ => {
                        let text = column
                            .one_of
                            .first()
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| format!("{}-{tenant}", column.name));
                        (s(&text), text)
                    }
                };
                record.attributes.push(kv(name, value));
                checks.push((expression, expected));
            }
            Source::Body => {
                record.body = Some(AnyValue {
                    value: Some(s("the body")),
                });
                checks.push((expression, "the body".into()));
            }
            Source::SeverityText => checks.push((expression, "error".into())),
            Source::SeverityNumber => checks.push((expression, "17".into())),
            Source::OtherAttributes => {
                record
                    .attributes
                    .push(kv("extra.detail", Value::IntValue(42)));
                checks.push((format!("`{}`['extra.detail']", column.name), "42".into()));
            }
            other => panic!("no sample for {other:?}"),
        }
    }
    (record, checks)
}

pub fn now_nanos() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap()
}

pub async fn send_logs(
    logbook: &Logbook,
    transport: Transport,
    request: &ExportLogsServiceRequest,
) -> u16 {
    logbook
        .endpoints()
        .send(transport, request)
        .await
        .expect("logbook is reachable")
}

/// An api_call record whose end user and body are `n-<n>`: one number per record. Every
/// fifth call failed, so it reaches `errors` too.
pub fn api_call_numbered(bot: &str, n: u64) -> LogRecord {
    let mut record = api_call(bot, &format!("n-{n}"));
    if n.is_multiple_of(5) {
        record.attributes.retain(|kv| kv.key != "logbook.outcome");
        record.attributes.push(kv("logbook.outcome", s("error")));
    }
    record
}

pub async fn post(
    logbook: &Logbook,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    gzip: bool,
) -> (u16, String) {
    let mut builder = reqwest::Client::new()
        .post(format!("{}{path}", logbook.http))
        .header("content-type", content_type);
    let body = if gzip {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&body).unwrap();
        builder = builder.header("content-encoding", "gzip");
        encoder.finish().unwrap()
    } else {
        body
    };
    let response = builder.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

pub async fn count_where(db: &TestDb, table: &str, condition: &str) -> u64 {
    db.client
        .query(&format!("SELECT count() FROM `{table}` WHERE {condition}"))
        .fetch_one::<u64>()
        .await
        .unwrap()
}

/// Waits until `table` has `want` rows matching `condition`.
pub async fn wait_for(
    db: &TestDb,
    table: &str,
    condition: &str,
    want: u64,
    within: Duration,
) -> u64 {
    let started = Instant::now();
    loop {
        let have = count_where(db, table, condition).await;
        if have >= want || started.elapsed() > within {
            return have;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_log_kind_round_trips_over_every_transport() {
    let db = test_db("ingest_every_kind").await;
    let logbook = Logbook::start(&db, FAST).await;
    let transports = [
        Transport::HttpProtobuf,
        Transport::HttpProtobufGzip,
        Transport::HttpJson,
        Transport::Grpc,
    ];
    let mut expectations = Vec::new();
    for (t, transport) in transports.iter().enumerate() {
        let tenant = format!("tenant{t}");
        let mut records = Vec::new();
        for kind in schema::KINDS {
            let (record, checks) = sample(kind, &tenant);
            records.push(record);
            expectations.push((kind.name, tenant.clone(), checks));
        }
        let status = send_logs(&logbook, *transport, &request("sampler", records)).await;
        assert_eq!(status, 200, "{transport:?}");
    }
    let total = (schema::KINDS.len() * transports.len()) as u64;
    assert_eq!(
        wait_for(&db, "otel_logs", "1", total, Duration::from_secs(20)).await,
        total
    );
    for (table, tenant, checks) in expectations {
        let condition = format!("tenant = '{tenant}'");
        assert_eq!(
            wait_for(&db, table, &condition, 1, Duration::from_secs(10)).await,
            1,
            "{table} {tenant}"
        );
        for (expression, expected) in checks {
            let sql = format!("SELECT {expression} FROM `{table}` WHERE {condition}");
            let got: String = db.client.query(&sql).fetch_one().await.unwrap();
            assert_eq!(got, expected, "{table}: {expression} for {tenant}");
        }
    }
    // Each kind with an error outcome in its sample also reached `errors` (through a view,
    // whose part can become visible a moment after the table's).
    let errors = transports.len() as u64;
    let condition = "kind = 'integration_errors'";
    assert_eq!(
        wait_for(&db, "errors", condition, errors, Duration::from_secs(10)).await,
        errors
    );
}

#[tokio::test]
async fn standard_otlp_json_is_accepted() {
    let db = test_db("ingest_otlp_json").await;
    let logbook = Logbook::start(&db, FAST).await;
    // As the OTLP/JSON specification writes it: camelCase, hex ids, 64-bit ints as strings.
    let body = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"bots"}}}}]}},
        "scopeLogs":[{{"scope":{{"name":"s"}},"logRecords":[{{"timeUnixNano":"{}","eventName":"logbook.api_call",
        "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","severityNumber":9,
        "body":{{"stringValue":"called"}},
        "attributes":[{{"key":"logbook.bot.name","value":{{"stringValue":"json-bot"}}}},
        {{"key":"http.request.method","value":{{"stringValue":"GET"}}}},
        {{"key":"url.full","value":{{"stringValue":"https://x.example/y"}}}},
        {{"key":"http.response.status_code","value":{{"intValue":"404"}}}},
        {{"key":"logbook.outcome","value":{{"stringValue":"error"}}}}]}}]}}]}}]}}"#,
        now_nanos()
    );
    let (status, text) = post(
        &logbook,
        "/v1/logs",
        "application/json",
        body.into_bytes(),
        false,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let condition =
        "bot = 'json-bot' AND status_code = 404 AND trace_id = '5b8efff798038103d269b633813fc60c'";
    assert_eq!(
        wait_for(&db, "api_calls", condition, 1, Duration::from_secs(10)).await,
        1
    );
}

fn trace_request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s(service))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn spans_reach_otel_traces_and_the_trace_id_lookup() {
    let db = test_db("ingest_spans").await;
    let logbook = Logbook::start(&db, FAST).await;
    let start = now_nanos();
    let request = trace_request(
        "integrator",
        (0..3u8)
            .map(|i| Span {
                trace_id: vec![0x11; 16],
                span_id: vec![i + 1; 8],
                name: format!("sync step {i}"),
                kind: 1,
                start_time_unix_nano: start + u64::from(i) * 1_000_000,
                end_time_unix_nano: start + 5_000_000,
                ..Default::default()
            })
            .collect(),
    );
    let (status, _) = post(
        &logbook,
        "/v1/traces",
        "application/x-protobuf",
        request.encode_to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 200);
    let mut client = TraceServiceClient::connect(logbook.grpc.clone())
        .await
        .unwrap();
    let mut second = request.clone();
    second.resource_spans[0].scope_spans[0].spans.truncate(1);
    second.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![0x22; 16];
    client.export(second).await.unwrap();
    let trace = "11".repeat(16);
    assert_eq!(
        wait_for(
            &db,
            "otel_traces",
            &format!("TraceId = '{trace}'"),
            3,
            Duration::from_secs(10)
        )
        .await,
        3
    );
    assert_eq!(
        wait_for(
            &db,
            "otel_traces",
            "TraceId = '2222222222222222'",
            0,
            Duration::ZERO
        )
        .await,
        0
    );
    assert_eq!(
        wait_for(
            &db,
            "otel_traces",
            &format!("TraceId = '{}'", "22".repeat(16)),
            1,
            Duration::from_secs(10)
        )
        .await,
        1
    );
    let kind: String = db
        .client
        .query("SELECT SpanKind FROM otel_traces WHERE SpanName = 'sync step 0' AND TraceId = ?")
        .bind(&trace)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(kind, "Internal");
    // The view's part can become visible a moment after the table's: wait for it too.
    assert!(
        wait_for(
            &db,
            "otel_traces_trace_id_ts",
            &format!("TraceId = '{trace}'"),
            1,
            Duration::from_secs(10)
        )
        .await
            >= 1
    );
}

#[tokio::test]
async fn a_bot_call_span_becomes_an_api_calls_row_and_an_error() {
    use opentelemetry_proto::tonic::trace::v1::{Status, span::Event};
    let db = test_db("ingest_span_kinds").await;
    let logbook = Logbook::start(&db, FAST).await;
    let start = now_nanos();
    let span = |n: u8, failed: bool| Span {
        trace_id: vec![0x33; 16],
        span_id: vec![n; 8],
        name: "GET".into(),
        kind: 3,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 40_000_000,
        attributes: vec![
            kv("event.name", s("logbook.api_call")),
            kv("logbook.bot.name", s("span-bot")),
            kv("http.request.method", s("GET")),
            kv(
                "url.full",
                s(&format!("https://crm.example.com/contacts/{n}")),
            ),
            kv(
                "http.response.status_code",
                Value::IntValue(if failed { 503 } else { 200 }),
            ),
        ],
        status: failed.then(|| Status {
            code: 2,
            message: "service unavailable".into(),
        }),
        events: if failed {
            vec![Event {
                name: "exception".into(),
                attributes: vec![kv("exception.message", s("crm is down"))],
                ..Default::default()
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let request = trace_request("bots", vec![span(1, false), span(2, true)]);
    let (status, body) = post(
        &logbook,
        "/v1/traces",
        "application/x-protobuf",
        request.encode_to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body:?}");
    // Spans, typed rows and errors are separate inserts: count them once all are stored.
    logbook.stored_all_acknowledged().await;
    let rows: Vec<(String, u16, u32, String)> = db
        .client
        .query(
            "SELECT outcome, status_code, duration_ms, error_message FROM api_calls \
             WHERE bot = 'span-bot' ORDER BY span_id",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            ("success".into(), 200, 40, String::new()),
            ("error".into(), 503, 40, "crm is down".into()),
        ]
    );
    assert_eq!(count_where(&db, "errors", "source = 'span-bot'").await, 1);
    assert_eq!(
        count_where(
            &db,
            "otel_traces",
            &format!("TraceId = '{}'", "33".repeat(16))
        )
        .await,
        2
    );
}

pub fn api_call(bot: &str, user: &str) -> LogRecord {
    LogRecord {
        time_unix_nano: now_nanos(),
        event_name: "logbook.api_call".into(),
        body: Some(AnyValue {
            value: Some(s(user)),
        }),
        attributes: vec![
            kv("logbook.bot.name", s(bot)),
            kv("user.name", s(user)),
            kv("http.request.method", s("POST")),
            kv("url.full", s("https://api.example.com/v1")),
            kv("http.response.status_code", Value::IntValue(200)),
            kv("logbook.outcome", s("success")),
        ],
        ..Default::default()
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_valid_requests_around_it_are_stored() {
    let db = test_db("ingest_bad_input").await;
    let logbook = Logbook::start(
        &db,
        &format!("{FAST}[ingest]\nmax_request_size = \"64 KiB\"\n"),
    )
    .await;
    let valid = |i: usize| request("bad-input", vec![api_call("steady", &format!("valid-{i}"))]);
    let mut sent_valid = 0;
    let check = |status: u16, want: u16, what: &str, body: &str| {
        assert_eq!(status, want, "{what}: {body}");
    };
    let protobuf = "application/x-protobuf";

    let mut cases: Vec<(&str, &str, Vec<u8>, bool, u16)> = vec![
        (
            "malformed protobuf",
            protobuf,
            vec![0xff, 0xff, 0xff, 0x01],
            false,
            400,
        ),
        (
            "invalid JSON",
            "application/json",
            b"{\"resourceLogs\": [".to_vec(),
            false,
            400,
        ),
        (
            "wrong content type",
            "text/plain",
            b"hello".to_vec(),
            false,
            415,
        ),
        (
            "oversized body",
            protobuf,
            vec![0u8; 100 * 1024],
            false,
            413,
        ),
        ("not gzip", protobuf, b"plain".to_vec(), true, 400),
    ];
    // A gzip bomb: small on the wire, far over the limit once inflated.
    {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![0u8; 4 * 1024 * 1024]).unwrap();
        let bomb = encoder.finish().unwrap();
        let response = reqwest::Client::new()
            .post(format!("{}/v1/logs", logbook.http))
            .header("content-type", protobuf)
            .header("content-encoding", "gzip")
            .body(bomb)
            .send()
            .await
            .unwrap();
        check(response.status().as_u16(), 413, "gzip bomb", "");
    }
    // Invalid UTF-8 inside a protobuf string.
    let mut bytes = request("bad-input", vec![api_call("steady", "ZZZZZZZZ")]).encode_to_vec();
    let at = bytes.windows(8).position(|w| w == b"ZZZZZZZZ").unwrap();
    bytes[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xfd, 0xfc]);
    cases.push(("invalid UTF-8", protobuf, bytes, false, 400));
    // Nesting deeper than the decoders follow: stored, the deep part cut (tests/it/nesting.rs).
    let mut deep = AnyValue {
        value: Some(s("bottom")),
    };
    for _ in 0..200 {
        deep = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue { values: vec![deep] })),
        };
    }
    let mut record = api_call("nested", "deep");
    record.attributes.push(KeyValue {
        key: "deep".into(),
        value: Some(deep),
        ..Default::default()
    });
    cases.push((
        "deep protobuf nesting",
        protobuf,
        request("bad-input", vec![record]).encode_to_vec(),
        false,
        200,
    ));
    let deep_json = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    cases.push((
        "deep JSON nesting",
        "application/json",
        deep_json.into_bytes(),
        false,
        400,
    ));

    for (i, (what, content_type, body, gzip, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            send_logs(&logbook, Transport::HttpProtobuf, &valid(i)).await,
            200
        );
        sent_valid += 1;
        let (status, text) = post(&logbook, "/v1/logs", content_type, body, gzip).await;
        check(status, want, what, &text);
        assert!(!text.is_empty(), "{what}: the refusal says why");
    }
    // Attribute of the wrong type: stored in otel_logs, refused for api_calls, and said so.
    let mut wrong = api_call("steady", "wrong-type");
    wrong
        .attributes
        .retain(|kv| kv.key != "http.response.status_code");
    wrong
        .attributes
        .push(kv("http.response.status_code", s("two hundred")));
    assert_eq!(
        send_logs(
            &logbook,
            Transport::Grpc,
            &request("bad-input", vec![wrong])
        )
        .await,
        200
    );
    assert_eq!(
        send_logs(&logbook, Transport::HttpJson, &valid(99)).await,
        200
    );
    sent_valid += 1;

    assert_eq!(
        wait_for(
            &db,
            "api_calls",
            "bot = 'steady'",
            sent_valid,
            Duration::from_secs(15)
        )
        .await,
        sent_valid
    );
    assert_eq!(
        wait_for(
            &db,
            "otel_logs",
            "Body = 'wrong-type'",
            1,
            Duration::from_secs(10)
        )
        .await,
        1
    );
    assert_eq!(
        count_where(&db, "api_calls", "end_user = 'wrong-type'").await,
        0
    );
    let condition =
        "log_type = 'logbook.router' AND message LIKE '%from bad-input%api_calls.status_code%'";
    assert_eq!(
        wait_for(
            &db,
            "monitoring_events",
            condition,
            1,
            Duration::from_secs(10)
        )
        .await,
        1
    );
    let metrics = logbook.metrics().await;
    assert!(
        metrics.contains(
            "logbook_typed_rejected_records_total{column=\"status_code\",service=\"bad-input\",table=\"api_calls\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("logbook_refused_requests_total{reason=\"invalid\",signal=\"logs\"}"));
    let health = reqwest::get(format!("{}/healthz", logbook.api))
        .await
        .unwrap();
    assert!(health.status().is_success(), "logbook kept running");
}

#[tokio::test]
async fn secrets_are_redacted_in_every_table_and_in_the_queue() {
    let db = test_db("ingest_redaction").await;
    let logbook = Logbook::start(&db, FAST).await;
    let mut call = api_call("redaction-bot", "alice");
    call.attributes.extend([
        kv("http.request.header.authorization", s("Bearer tok-9c1f2e")),
        kv(
            "logbook.request.body",
            s(r#"curl -X POST https://api.example.com/login -H 'Authorization: Basic dXNlcjpwdy0zMw==' -d '{"user":"alice","password":"pw-hunter2-77"}'"#),
        ),
        kv("logbook.response.body", s(r#"{"access_token":"at-5e6f7a","ok":true}"#)),
        kv("url.full", s("https://api.example.com/v1?api_key=key-31337&page=2")),
        kv("logbook.outcome", s("error")),
    ]);
    call.attributes.retain(|kv| !(kv.key == "url.full" && matches!(&kv.value, Some(AnyValue { value: Some(Value::StringValue(v)) }) if v.ends_with("/v1"))));
    call.attributes.retain(|kv| !(kv.key == "logbook.outcome" && matches!(&kv.value, Some(AnyValue { value: Some(Value::StringValue(v)) }) if v == "success")));
    assert_eq!(
        send_logs(
            &logbook,
            Transport::HttpProtobuf,
            &request("bots", vec![call])
        )
        .await,
        200
    );
    logbook.stored_all_acknowledged().await;
    assert_eq!(
        count_where(&db, "api_calls", "bot = 'redaction-bot'").await,
        1
    );
    assert_eq!(
        count_where(&db, "errors", "source = 'redaction-bot'").await,
        1
    );
    let secrets = [
        "tok-9c1f2e",
        "dXNlcjpwdy0zMw",
        "pw-hunter2-77",
        "at-5e6f7a",
        "key-31337",
    ];
    for table in ["otel_logs", "api_calls", "errors"] {
        for secret in secrets {
            let leaked = count_where(
                &db,
                table,
                &format!("position(formatRow('TSV', *), '{secret}') > 0"),
            )
            .await;
            assert_eq!(leaked, 0, "{secret} reached {table}");
        }
        assert!(
            count_where(
                &db,
                table,
                "position(formatRow('TSV', *), '[REDACTED]') > 0"
            )
            .await
                >= 1,
            "{table}"
        );
    }
    let body: String = db
        .client
        .query("SELECT request_body FROM api_calls WHERE bot = 'redaction-bot'")
        .fetch_one()
        .await
        .unwrap();
    assert!(
        body.contains(r#""user":"alice""#) && body.contains("https://api.example.com/login"),
        "{body}"
    );
    for entry in walk(logbook.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        for secret in secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} is on disk in {}",
                entry.display()
            );
        }
    }
}

pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn bearer_tokens_are_required_when_configured() {
    let db = test_db("ingest_tokens").await;
    let extra =
        format!("{FAST}[ingest.tokens]\nbilling = \"tok-billing-1\"\nmail = \"tok-mail-2\"\n");
    let logbook = Logbook::start(&db, &extra).await;
    let body = request("billing", vec![api_call("token-bot", "with-token")]).encode_to_vec();
    let send = |token: Option<&'static str>| {
        let mut builder = reqwest::Client::new()
            .post(format!("{}/v1/logs", logbook.http))
            .header("content-type", "application/x-protobuf")
            .body(body.clone());
        if let Some(token) = token {
            builder = builder.bearer_auth(token);
        }
        async move { builder.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send(None).await, 401);
    assert_eq!(send(Some("tok-wrong")).await, 401);
    assert_eq!(send(Some("tok-mail-2")).await, 200);
    let mut client = LogsServiceClient::connect(logbook.grpc.clone())
        .await
        .unwrap();
    let unauthenticated = client
        .export(request(
            "billing",
            vec![api_call("token-bot", "grpc-no-token")],
        ))
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
    let mut authed = tonic::Request::new(request(
        "billing",
        vec![api_call("token-bot", "grpc-token")],
    ));
    authed
        .metadata_mut()
        .insert("authorization", "Bearer tok-billing-1".parse().unwrap());
    client.export(authed).await.unwrap();
    assert_eq!(
        wait_for(
            &db,
            "api_calls",
            "bot = 'token-bot'",
            2,
            Duration::from_secs(10)
        )
        .await,
        2
    );
    assert_eq!(
        count_where(&db, "otel_logs", "Body IN ('grpc-no-token')").await,
        0
    );
}

#[tokio::test]
async fn a_batch_clickhouse_refuses_for_good_is_set_aside_and_the_rest_flows() {
    let db = test_db("ingest_dead_letter").await;
    let logbook = Logbook::start(&db, FAST).await;
    // An older table than this logbook expects: inserts into it can never succeed.
    db.client
        .query("ALTER TABLE api_calls DROP COLUMN duration_ms")
        .execute()
        .await
        .unwrap();
    // otel_logs is another table of the same batch: it is stored all the same.
    let records = vec![
        api_call("dead-bot", "first"),
        api_call("dead-bot", "second"),
    ];
    send_and_store(&db, &logbook, Transport::HttpProtobuf, "dl", records).await;
    let data = set_aside_file(&logbook).await;
    // The insert's body as sent: the header naming the columns, then the two rows.
    let bytes = std::fs::read(&data).unwrap();
    let header = insert::header(ApiCall::TABLE);
    assert!(bytes.starts_with(&header));
    let mut input = &bytes[header.len()..];
    let users: Vec<String> = (0..2)
        .map(|_| ApiCall::read_row(&mut input).unwrap().end_user)
        .collect();
    assert!(input.is_empty());
    assert_eq!(users, ["first", "second"]);
    let error = std::fs::read_to_string(data.with_extension("error.json")).unwrap();
    assert!(error.contains("duration_ms"), "{error}");
    // The queue moved on: later requests are stored.
    send_and_store(
        &db,
        &logbook,
        Transport::Grpc,
        "dl-after",
        vec![api_call("x", "y")],
    )
    .await;
    let metrics = logbook.metrics().await;
    assert!(metrics.contains("logbook_dead_letter_batches_total{table=\"api_calls\"}"));
    // Set-aside rows are not counted as stored API calls.
    assert!(!metrics.contains("logbook_api_calls_total{"), "{metrics}");
}

/// Sends `records` as service `service` and waits until their `otel_logs` rows are stored.
async fn send_and_store(
    db: &TestDb,
    logbook: &Logbook,
    transport: Transport,
    service: &str,
    records: Vec<LogRecord>,
) {
    let count = records.len() as u64;
    assert_eq!(
        send_logs(logbook, transport, &request(service, records)).await,
        200
    );
    let condition = format!("ServiceName = '{service}'");
    assert_eq!(
        wait_for(db, "otel_logs", &condition, count, Duration::from_secs(10)).await,
        count
    );
}

/// The data file of the batch logbook set aside, once it and its error file are written.
async fn set_aside_file(logbook: &Logbook) -> std::path::PathBuf {
    let dir = logbook.dir.path().join("queue").join("dead-letter");
    let started = Instant::now();
    loop {
        let data = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "rowbinary"));
        if let Some(data) = data
            && data.with_extension("error.json").exists()
        {
            return data;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing set aside: {}",
            logbook.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rows are sent with their column types (`RowBinaryWithNamesAndTypes`): a table whose column
/// type changed under logbook refuses them instead of reading the bytes as the new type.
#[tokio::test]
async fn rows_whose_column_type_drifted_are_refused_not_misread() {
    let db = test_db("ingest_type_drift").await;
    let logbook = Logbook::start(&db, FAST).await;
    db.client
        .query("ALTER TABLE api_calls MODIFY COLUMN status_code UInt64")
        .execute()
        .await
        .unwrap();
    let records = vec![api_call("drift-bot", "u")];
    send_and_store(&db, &logbook, Transport::HttpProtobuf, "drift", records).await;
    let data = set_aside_file(&logbook).await;
    let error = std::fs::read_to_string(data.with_extension("error.json")).unwrap();
    assert!(error.contains("status_code"), "{error}");
    assert_eq!(count_where(&db, "api_calls", "bot = 'drift-bot'").await, 0);
}

#[tokio::test]
async fn logbook_exports_its_own_logs_when_telemetry_is_on() {
    let db = test_db("ingest_own_telemetry").await;
    // One logbook stores; another sends its own telemetry to it.
    let store = Logbook::start(&db, FAST).await;
    let extra = format!(
        "[telemetry]\nenabled = true\nendpoint = {:?}\nservice_name = \"logbook-self\"\n",
        store.grpc
    );
    let mut sender = Logbook::start(&db, &extra).await;
    // "logbook serving" is logged at start; the graceful stop flushes the exporter.
    sender.stop();
    let condition = "ServiceName = 'logbook-self' AND Body = 'logbook serving'";
    assert_eq!(
        wait_for(&db, "otel_logs", condition, 1, Duration::from_secs(15)).await,
        1,
        "{}",
        sender.stderr()
    );
}
