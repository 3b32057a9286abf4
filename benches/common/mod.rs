//! The workload both benches send: OTLP log requests shaped like logbook's real traffic.
//!
//! Per 10 records: 4 `logbook.api_call` (request and response bodies of a few hundred bytes,
//! one in four with a secret in a body and one in eight with an API key in the URL), 2
//! `logbook.server_log`, 1 record of one of the other log kinds (in turn, every attribute of
//! the kind filled), 3 plain log records with 8 attributes. The resource names the service,
//! environment, version, host and pod.

#![allow(dead_code)]

use logbook::schema::{KINDS, Source, TableDef};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

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

pub fn now_nanos() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap()
}

/// Cheap deterministic pseudo-random numbers (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn id(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

const BOTS: &[&str] = &[
    "billing-bot",
    "crm-sync",
    "helpdesk-ai",
    "invoice-runner",
    "lead-scorer",
];
const APPS: &[&str] = &[
    "Salesforce",
    "Zendesk",
    "Google Sheets",
    "JSON API",
    "Xero",
    "HubSpot",
];
const CATEGORIES: &[&str] = &[
    "application",
    "email",
    "database",
    "access",
    "scheduler",
    "crm",
];
const WORDS: &[&str] = &[
    "ticket",
    "customer",
    "invoice",
    "sync",
    "completed",
    "queued",
    "retrying",
    "agent",
    "mailbox",
    "webhook",
    "payload",
    "contact",
    "status",
    "updated",
    "record",
    "tenant",
    "schedule",
];

fn words(rng: &mut Rng, n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    out
}

fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
    from[rng.below(from.len() as u64) as usize]
}

fn api_call(rng: &mut Rng, time: u64, n: u64) -> LogRecord {
    let secret = rng.below(4) == 0;
    let curl = rng.below(2) == 0;
    let request_body = if curl {
        format!(
            "curl -X POST 'https://api.example.com/v2/tickets/{n}/notes' \\\n  -H 'Content-Type: application/json' \\\n  {}-d '{{\"note\": \"{}\", \"ticket\": {n}, \"visibility\": \"internal\", \"author\": \"agent-{}\", \"tags\": [\"{}\", \"{}\"]}}'",
            if secret {
                "-H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U' \\\n  "
            } else {
                ""
            },
            words(rng, 12),
            rng.below(500),
            pick(rng, WORDS),
            pick(rng, WORDS),
        )
    } else {
        format!(
            "{{\"customer_id\": {}, \"email\": \"user{}@example.com\", \"name\": \"{}\", {}\"items\": [{{\"sku\": \"SKU-{}\", \"qty\": {}}}, {{\"sku\": \"SKU-{}\", \"qty\": 1}}], \"comment\": \"{}\"}}",
            rng.below(1_000_000),
            rng.below(10_000),
            words(rng, 2),
            if secret {
                "\"password\": \"hunter2-Secret!\", "
            } else {
                ""
            },
            rng.below(9999),
            rng.below(5) + 1,
            rng.below(9999),
            words(rng, 10),
        )
    };
    let status = [200, 200, 200, 201, 204, 400, 404, 500][rng.below(8) as usize];
    let response_body = format!(
        "{{\"id\": \"{:016x}\", \"status\": \"{}\", \"updated_at\": \"2025-06-01T12:{:02}:{:02}Z\", \"result\": {{\"message\": \"{}\", \"links\": {{\"self\": \"https://api.example.com/v2/objects/{}\"}}}}, \"warnings\": []}}",
        rng.next(),
        if status < 300 { "ok" } else { "failed" },
        rng.below(60),
        rng.below(60),
        words(rng, 14),
        rng.below(100_000),
    );
    let url = if rng.below(8) == 0 {
        format!(
            "https://api.example.com/v2/tickets/{n}/notes?api_key=sk_live_51Habc{:x}",
            rng.next()
        )
    } else {
        format!("https://api.example.com/v2/tickets/{n}/notes")
    };
    let mut attributes = vec![
        kv("logbook.tenant", s(&format!("tenant-{}", rng.below(50)))),
        kv("logbook.bot.name", s(pick(rng, BOTS))),
        kv("logbook.application", s(pick(rng, APPS))),
        kv(
            "logbook.source",
            s(&format!("flow/main/node-{}", rng.below(40))),
        ),
        kv(
            "user.name",
            s(&format!("user{}@example.com", rng.below(10_000))),
        ),
        kv("http.request.method", s(if curl { "POST" } else { "PUT" })),
        kv("url.full", s(&url)),
        kv("http.response.status_code", Value::IntValue(status)),
        kv(
            "logbook.outcome",
            s(if status < 400 { "success" } else { "error" }),
        ),
        kv(
            "logbook.duration_ms",
            Value::IntValue(rng.below(3000) as i64),
        ),
        kv("logbook.request.body", s(&request_body)),
        kv("logbook.response.body", s(&response_body)),
    ];
    if status >= 400 {
        attributes.push(kv(
            "exception.message",
            s(&format!("HTTP {status}: {}", words(rng, 5))),
        ));
    }
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time,
        event_name: "logbook.api_call".into(),
        severity_number: if status < 400 { 9 } else { 17 },
        severity_text: if status < 400 { "INFO" } else { "ERROR" }.into(),
        trace_id: rng.id(16),
        span_id: rng.id(8),
        flags: 1,
        body: Some(AnyValue {
            value: Some(s(&format!(
                "api call {} {}",
                if curl { "POST" } else { "PUT" },
                url
            ))),
        }),
        attributes,
        ..Default::default()
    }
}

fn server_log(rng: &mut Rng, time: u64) -> LogRecord {
    let severity = [5, 9, 9, 9, 13, 17][rng.below(6) as usize];
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time,
        event_name: "logbook.server_log".into(),
        severity_number: severity,
        severity_text: ["DEBUG", "INFO", "WARN", "ERROR"][(severity as usize - 5) / 4].into(),
        trace_id: rng.id(16),
        span_id: rng.id(8),
        body: Some(AnyValue {
            value: Some(s(&format!(
                "{} id={} took {}ms: {}",
                words(rng, 3),
                rng.below(1_000_000),
                rng.below(2000),
                words(rng, 12)
            ))),
        }),
        attributes: vec![
            kv("logbook.tenant", s(&format!("tenant-{}", rng.below(50)))),
            kv("logbook.server_log.category", s(pick(rng, CATEGORIES))),
            kv(
                "code.function.name",
                s(&format!(
                    "Halo.Services.{}Service",
                    pick(rng, APPS).replace(' ', "")
                )),
            ),
            kv("thread.id", Value::IntValue(rng.below(64) as i64)),
            kv("request.id", s(&format!("{:016x}", rng.next()))),
        ],
        ..Default::default()
    }
}

fn plain(rng: &mut Rng, time: u64) -> LogRecord {
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time,
        severity_number: 9,
        severity_text: "INFO".into(),
        trace_id: rng.id(16),
        span_id: rng.id(8),
        flags: 1,
        body: Some(AnyValue {
            value: Some(s(&format!("{} {}", words(rng, 10), rng.below(1_000_000)))),
        }),
        attributes: vec![
            kv("code.function", s("handle_request")),
            kv("code.function.name", s("app.handlers.tickets")),
            kv("http.route", s("/api/tickets/{id}")),
            kv("http.request.method", s("GET")),
            kv("http.response.status_code", Value::IntValue(200)),
            kv("user.id", s(&format!("u-{}", rng.below(10_000)))),
            kv("thread.name", s(&format!("worker-{}", rng.below(16)))),
            kv(
                "duration_ms",
                Value::DoubleValue(rng.below(5000) as f64 / 10.0),
            ),
        ],
        ..Default::default()
    }
}

/// A record of `kind` with every column filled (like the integration tests' `sample`).
fn other_kind(rng: &mut Rng, kind: &TableDef, time: u64) -> LogRecord {
    let mut record = LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time,
        event_name: kind.event_name.unwrap().into(),
        trace_id: rng.id(16),
        span_id: rng.id(8),
        severity_number: 17,
        severity_text: "ERROR".into(),
        attributes: vec![kv(
            "logbook.tenant",
            s(&format!("tenant-{}", rng.below(50))),
        )],
        ..Default::default()
    };
    for column in kind.columns {
        match column.source.unwrap() {
            Source::Attr(name) => {
                let value = match column.type_name() {
                    "UInt8" | "UInt16" | "UInt32" => Value::IntValue(rng.below(200) as i64),
                    "Bool" => Value::BoolValue(rng.below(2) == 0),
                    "DateTime64(9, 'UTC')" => Value::IntValue(time as i64),
                    t if t.starts_with("Array") => Value::ArrayValue(ArrayValue {
                        values: (0..3)
                            .map(|_| AnyValue {
                                value: Some(s(pick(rng, WORDS))),
                            })
                            .collect(),
                    }),
                    _ => match column.one_of.first() {
                        Some(v) => s(v),
                        None => s(&format!("{}-{}", column.name, words(rng, 3))),
                    },
                };
                record.attributes.push(kv(name, value));
            }
            Source::Body => {
                record.body = Some(AnyValue {
                    value: Some(s(&words(rng, 15))),
                })
            }
            Source::OtherAttributes => record
                .attributes
                .push(kv("extra.detail", Value::IntValue(42))),
            _ => {}
        }
    }
    record
}

/// A request of `records` log records; `seed` varies the content.
pub fn request(records: usize, seed: u64) -> ExportLogsServiceRequest {
    let mut rng = Rng(seed);
    let others: Vec<&TableDef> = KINDS
        .iter()
        .copied()
        .filter(|k| !matches!(k.name, "api_calls" | "server_logs"))
        .collect();
    let base = now_nanos();
    let log_records = (0..records)
        .map(|i| {
            let time = base + i as u64 * 1000;
            match i % 10 {
                0..=3 => api_call(&mut rng, time, seed * 100_000 + i as u64),
                4 | 5 => server_log(&mut rng, time),
                6 => {
                    let kind = others[(i / 10 + seed as usize) % others.len()];
                    other_kind(&mut rng, kind, time)
                }
                _ => plain(&mut rng, time),
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("halo-backend")),
                    kv("service.version", s("2.214.7")),
                    kv("deployment.environment.name", s("production")),
                    kv("host.name", s("app-server-03")),
                    kv("k8s.pod.name", s("halo-backend-7d9f8c6b5-x2k4q")),
                    kv(
                        "service.instance.id",
                        s("a3c1e5f0-1b2d-4e6f-8a9b-0c1d2e3f4a5b"),
                    ),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "halo.logging".into(),
                    version: "1.4.0".into(),
                    ..Default::default()
                }),
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A request of `records` records that name no log kind (only `otel_logs` is written), each
/// like `plain` with a body of `body_words` words: 25 words make records of about 450 bytes.
pub fn plain_request(records: usize, seed: u64, body_words: usize) -> ExportLogsServiceRequest {
    let mut rng = Rng(seed);
    let base = now_nanos();
    let mut request = request(0, seed);
    request.resource_logs[0].scope_logs[0].log_records = (0..records)
        .map(|i| {
            let mut record = plain(&mut rng, base + i as u64 * 1000);
            record.body = Some(AnyValue {
                value: Some(s(&format!(
                    "{} {}",
                    words(&mut rng, body_words),
                    rng.below(1_000_000)
                ))),
            });
            record
        })
        .collect();
    request
}

/// Log records in a request.
pub fn count(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}
