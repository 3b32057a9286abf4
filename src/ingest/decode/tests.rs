//! Every decoding is checked against prost's decoding of the same bytes: ours is converted into
//! prost's types (`to_prost`), prost's result has the fields we do not keep cleared
//! (`normalize`), and both are compared, value by value and by their encodings (which tells
//! 0.0 from -0.0 and compares NaNs by their bits).

use super::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::logs::v1 as pl;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as pt;
use prost::Message;

// ---- ours → prost ----

fn any_to_prost(value: &AnyValue) -> pc::AnyValue {
    let value = match value {
        AnyValue::Empty => None,
        AnyValue::String(s) => Some(V::StringValue(s.to_string())),
        AnyValue::Bool(b) => Some(V::BoolValue(*b)),
        AnyValue::Int(i) => Some(V::IntValue(*i)),
        AnyValue::Double(d) => Some(V::DoubleValue(*d)),
        AnyValue::Bytes(b) => Some(V::BytesValue(b.to_vec())),
        AnyValue::Array(values) => Some(V::ArrayValue(pc::ArrayValue {
            values: values.iter().map(any_to_prost).collect(),
        })),
        AnyValue::Kvlist(values) => Some(V::KvlistValue(pc::KeyValueList {
            values: kvs_to_prost(values),
        })),
        AnyValue::StringIndex(i) => Some(V::StringValueStrindex(*i)),
    };
    pc::AnyValue { value }
}

fn optional_any_to_prost(value: &AnyValue) -> Option<pc::AnyValue> {
    (*value != AnyValue::Empty).then(|| any_to_prost(value))
}

fn kvs_to_prost(kvs: &[KeyValue]) -> Vec<pc::KeyValue> {
    kvs.iter()
        .map(|kv| pc::KeyValue {
            key: kv.key.to_string(),
            value: optional_any_to_prost(&kv.value),
            key_strindex: 0,
        })
        .collect()
}

fn resource_to_prost(attributes: &[KeyValue]) -> Option<Resource> {
    (!attributes.is_empty()).then(|| Resource {
        attributes: kvs_to_prost(attributes),
        dropped_attributes_count: 0,
        entity_refs: Vec::new(),
    })
}

fn scope_to_prost(scope: &Scope) -> Option<pc::InstrumentationScope> {
    (*scope != Scope::default()).then(|| pc::InstrumentationScope {
        name: scope.name.to_string(),
        version: scope.version.to_string(),
        attributes: kvs_to_prost(&scope.attributes),
        dropped_attributes_count: 0,
    })
}

fn logs_to_prost(request: &LogsRequest) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: request
            .resource_logs
            .iter()
            .map(|rl| pl::ResourceLogs {
                resource: resource_to_prost(&rl.resource),
                scope_logs: rl
                    .scope_logs
                    .iter()
                    .map(|sl| pl::ScopeLogs {
                        scope: scope_to_prost(&sl.scope),
                        log_records: sl.log_records.iter().map(record_to_prost).collect(),
                        schema_url: sl.schema_url.to_string(),
                    })
                    .collect(),
                schema_url: rl.schema_url.to_string(),
            })
            .collect(),
    }
}

fn record_to_prost(record: &LogRecord) -> pl::LogRecord {
    pl::LogRecord {
        time_unix_nano: record.time_unix_nano,
        observed_time_unix_nano: record.observed_time_unix_nano,
        severity_number: record.severity_number,
        severity_text: record.severity_text.to_string(),
        body: optional_any_to_prost(&record.body),
        attributes: kvs_to_prost(&record.attributes),
        dropped_attributes_count: 0,
        flags: record.flags,
        trace_id: record.trace_id.to_vec(),
        span_id: record.span_id.to_vec(),
        event_name: record.event_name.to_string(),
    }
}

fn traces_to_prost(request: &TracesRequest) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: request
            .resource_spans
            .iter()
            .map(|rs| pt::ResourceSpans {
                resource: resource_to_prost(&rs.resource),
                scope_spans: rs
                    .scope_spans
                    .iter()
                    .map(|ss| pt::ScopeSpans {
                        scope: scope_to_prost(&ss.scope),
                        spans: ss.spans.iter().map(span_to_prost).collect(),
                        schema_url: ss.schema_url.to_string(),
                    })
                    .collect(),
                schema_url: rs.schema_url.to_string(),
            })
            .collect(),
    }
}

fn span_to_prost(span: &Span) -> pt::Span {
    pt::Span {
        trace_id: span.trace_id.to_vec(),
        span_id: span.span_id.to_vec(),
        trace_state: span.trace_state.to_string(),
        parent_span_id: span.parent_span_id.to_vec(),
        flags: span.flags,
        name: span.name.to_string(),
        kind: span.kind,
        start_time_unix_nano: span.start_time_unix_nano,
        end_time_unix_nano: span.end_time_unix_nano,
        attributes: kvs_to_prost(&span.attributes),
        dropped_attributes_count: 0,
        events: span
            .events
            .iter()
            .map(|event| pt::span::Event {
                time_unix_nano: event.time_unix_nano,
                name: event.name.to_string(),
                attributes: kvs_to_prost(&event.attributes),
                dropped_attributes_count: 0,
            })
            .collect(),
        dropped_events_count: 0,
        links: span
            .links
            .iter()
            .map(|link| pt::span::Link {
                trace_id: link.trace_id.to_vec(),
                span_id: link.span_id.to_vec(),
                trace_state: link.trace_state.to_string(),
                attributes: kvs_to_prost(&link.attributes),
                dropped_attributes_count: 0,
                flags: link.flags,
            })
            .collect(),
        dropped_links_count: 0,
        status: (span.status != Status::default()).then(|| pt::Status {
            message: span.status.message.to_string(),
            code: span.status.code,
        }),
    }
}

// ---- prost, minus what we do not keep ----
//
// Cleared: dropped counts, `key_strindex`, entity refs. Collapsed to `None`: optional messages
// equal to their default (an empty resource, scope, status, or an AnyValue with no value),
// which our types cannot tell from absent ones.

fn normalize_value(value: &mut Option<pc::AnyValue>) {
    if let Some(any) = value {
        if any.value.is_none() {
            *value = None;
        } else {
            normalize_any(any);
        }
    }
}

fn normalize_any(any: &mut pc::AnyValue) {
    match &mut any.value {
        Some(V::ArrayValue(array)) => array.values.iter_mut().for_each(normalize_any),
        Some(V::KvlistValue(list)) => normalize_kvs(&mut list.values),
        _ => {}
    }
}

fn normalize_kvs(kvs: &mut [pc::KeyValue]) {
    for kv in kvs {
        kv.key_strindex = 0;
        normalize_value(&mut kv.value);
    }
}

fn normalize_resource(resource: &mut Option<Resource>) {
    if let Some(r) = resource {
        r.dropped_attributes_count = 0;
        r.entity_refs.clear();
        normalize_kvs(&mut r.attributes);
        if r.attributes.is_empty() {
            *resource = None;
        }
    }
}

fn normalize_scope(scope: &mut Option<pc::InstrumentationScope>) {
    if let Some(s) = scope {
        s.dropped_attributes_count = 0;
        normalize_kvs(&mut s.attributes);
        if *s == pc::InstrumentationScope::default() {
            *scope = None;
        }
    }
}

fn normalize_logs(mut request: ExportLogsServiceRequest) -> ExportLogsServiceRequest {
    for rl in &mut request.resource_logs {
        normalize_resource(&mut rl.resource);
        for sl in &mut rl.scope_logs {
            normalize_scope(&mut sl.scope);
            for record in &mut sl.log_records {
                record.dropped_attributes_count = 0;
                normalize_value(&mut record.body);
                normalize_kvs(&mut record.attributes);
            }
        }
    }
    request
}

fn normalize_traces(mut request: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    for rs in &mut request.resource_spans {
        normalize_resource(&mut rs.resource);
        for ss in &mut rs.scope_spans {
            normalize_scope(&mut ss.scope);
            for span in &mut ss.spans {
                span.dropped_attributes_count = 0;
                span.dropped_events_count = 0;
                span.dropped_links_count = 0;
                normalize_kvs(&mut span.attributes);
                for event in &mut span.events {
                    event.dropped_attributes_count = 0;
                    normalize_kvs(&mut event.attributes);
                }
                for link in &mut span.links {
                    link.dropped_attributes_count = 0;
                    normalize_kvs(&mut link.attributes);
                }
                if span.status == Some(pt::Status::default()) {
                    span.status = None;
                }
            }
        }
    }
    request
}

/// Equal values with equal encodings (the encodings tell -0.0 from 0.0 and compare NaNs).
fn assert_same<M: Message + PartialEq + std::fmt::Debug>(ours: &M, expected: &M) {
    if ours.encode_to_vec() != expected.encode_to_vec() {
        assert_eq!(ours, expected);
        panic!("equal values with different encodings: {ours:?}");
    }
}

/// Decodes `bytes` with both decoders, which must both succeed with the same request.
fn check_logs(bytes: &[u8]) -> LogsRequest<'_> {
    let expected = normalize_logs(ExportLogsServiceRequest::decode(bytes).expect("prost decodes"));
    let ours = LogsRequest::decode(bytes).expect("ours decodes");
    let converted = logs_to_prost(&ours);
    assert_eq!(converted, expected);
    assert_same(&converted, &expected);
    ours
}

fn check_traces(bytes: &[u8]) -> TracesRequest<'_> {
    let expected =
        normalize_traces(ExportTraceServiceRequest::decode(bytes).expect("prost decodes"));
    let ours = TracesRequest::decode(bytes).expect("ours decodes");
    let converted = traces_to_prost(&ours);
    assert_eq!(converted, expected);
    assert_same(&converted, &expected);
    ours
}

// ---- building prost values ----

fn any(value: V) -> pc::AnyValue {
    pc::AnyValue { value: Some(value) }
}

fn string(s: &str) -> pc::AnyValue {
    any(V::StringValue(s.to_string()))
}

fn kv(key: &str, value: pc::AnyValue) -> pc::KeyValue {
    pc::KeyValue {
        key: key.to_string(),
        value: Some(value),
        key_strindex: 0,
    }
}

fn array(values: Vec<pc::AnyValue>) -> pc::AnyValue {
    any(V::ArrayValue(pc::ArrayValue { values }))
}

fn kvlist(values: Vec<pc::KeyValue>) -> pc::AnyValue {
    any(V::KvlistValue(pc::KeyValueList { values }))
}

/// One KeyValue of each AnyValue variant, with nesting, empty and non-ASCII strings.
fn every_value() -> Vec<pc::KeyValue> {
    vec![
        kv("string", string("héllo wörld ✓ 日本")),
        kv("empty string", string("")),
        kv("", string("empty key")),
        kv("bool true", any(V::BoolValue(true))),
        kv("bool false", any(V::BoolValue(false))),
        kv("int", any(V::IntValue(42))),
        kv("negative int", any(V::IntValue(-1))),
        kv("min int", any(V::IntValue(i64::MIN))),
        kv("zero int", any(V::IntValue(0))),
        kv("double", any(V::DoubleValue(-2.5e-300))),
        kv("zero double", any(V::DoubleValue(0.0))),
        kv("infinite", any(V::DoubleValue(f64::INFINITY))),
        kv("bytes", any(V::BytesValue(vec![0, 0xff, 0x80, 1]))),
        kv("empty bytes", any(V::BytesValue(Vec::new()))),
        kv("strindex", any(V::StringValueStrindex(-7))),
        kv(
            "array",
            array(vec![
                string("a"),
                any(V::IntValue(-3)),
                pc::AnyValue { value: None },
                array(vec![array(vec![]), string("deep")]),
                kvlist(vec![kv("in array", any(V::BoolValue(true)))]),
            ]),
        ),
        kv("empty array", array(vec![])),
        kv(
            "kvlist",
            kvlist(vec![
                kv("nested", kvlist(vec![kv("x", any(V::DoubleValue(1.5)))])),
                kv("list", array(vec![string("ü")])),
                pc::KeyValue {
                    key: "no value".to_string(),
                    value: None,
                    key_strindex: 0,
                },
            ]),
        ),
        kv("empty kvlist", kvlist(vec![])),
        pc::KeyValue {
            key: "absent value".to_string(),
            value: None,
            key_strindex: 0,
        },
        pc::KeyValue {
            key: "unset value".to_string(),
            value: Some(pc::AnyValue { value: None }),
            key_strindex: 0,
        },
        pc::KeyValue {
            key: "with strindex".to_string(),
            value: Some(string("s")),
            key_strindex: 9,
        },
    ]
}

fn full_logs() -> ExportLogsServiceRequest {
    let record = |n: u64| pl::LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000 + n,
        observed_time_unix_nano: u64::MAX - n,
        severity_number: 17,
        severity_text: "ERROR".to_string(),
        body: Some(string(&format!("record {n}: ça va?"))),
        attributes: every_value(),
        dropped_attributes_count: 3,
        flags: 0x0000_0101,
        trace_id: (0..16).collect(),
        span_id: vec![0xff; 8],
        event_name: "event.ü".to_string(),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![
            pl::ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", string("checkout")),
                        kv("host.cpus", any(V::IntValue(8))),
                    ],
                    dropped_attributes_count: 1,
                    entity_refs: vec![pc::EntityRef {
                        schema_url: "https://example.com".to_string(),
                        r#type: "service".to_string(),
                        id_keys: vec!["service.name".to_string()],
                        description_keys: vec!["a".to_string(), "b".to_string()],
                    }],
                }),
                scope_logs: vec![
                    pl::ScopeLogs {
                        scope: Some(pc::InstrumentationScope {
                            name: "my.scope".to_string(),
                            version: "1.2.3".to_string(),
                            attributes: vec![kv("scope.attr", any(V::BoolValue(true)))],
                            dropped_attributes_count: 2,
                        }),
                        log_records: vec![record(1), record(2), pl::LogRecord::default()],
                        schema_url: "https://opentelemetry.io/schemas/1.21.0".to_string(),
                    },
                    pl::ScopeLogs {
                        scope: None,
                        log_records: vec![pl::LogRecord {
                            severity_number: -5,
                            body: Some(kvlist(every_value())),
                            ..Default::default()
                        }],
                        schema_url: String::new(),
                    },
                ],
                schema_url: "resource schema ✓".to_string(),
            },
            pl::ResourceLogs::default(),
            pl::ResourceLogs {
                resource: Some(Resource::default()),
                scope_logs: vec![pl::ScopeLogs {
                    scope: Some(pc::InstrumentationScope::default()),
                    log_records: vec![pl::LogRecord {
                        body: Some(array(vec![any(V::BytesValue(b"\xff\xfe".to_vec()))])),
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            },
        ],
    }
}

fn full_traces() -> ExportTraceServiceRequest {
    let span = |n: u8| pt::Span {
        trace_id: vec![n; 16],
        span_id: vec![n; 8],
        trace_state: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".to_string(),
        parent_span_id: vec![n + 1; 8],
        flags: 0x301,
        name: format!("GET /items/{n} — ü"),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_123_456_789,
        attributes: every_value(),
        dropped_attributes_count: 4,
        events: vec![
            pt::span::Event {
                time_unix_nano: 5,
                name: "exception".to_string(),
                attributes: vec![kv("exception.message", string("boom ✗"))],
                dropped_attributes_count: 1,
            },
            pt::span::Event::default(),
        ],
        dropped_events_count: 2,
        links: vec![
            pt::span::Link {
                trace_id: vec![7; 16],
                span_id: vec![8; 8],
                trace_state: "k=v".to_string(),
                attributes: vec![kv("link.attr", any(V::IntValue(-99)))],
                dropped_attributes_count: 1,
                flags: 0x100,
            },
            pt::span::Link::default(),
        ],
        dropped_links_count: 3,
        status: Some(pt::Status {
            message: "not found ✗".to_string(),
            code: 2,
        }),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            pt::ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", string("api"))],
                    dropped_attributes_count: 0,
                    entity_refs: Vec::new(),
                }),
                scope_spans: vec![
                    pt::ScopeSpans {
                        scope: Some(pc::InstrumentationScope {
                            name: "tracer".to_string(),
                            version: String::new(),
                            attributes: Vec::new(),
                            dropped_attributes_count: 0,
                        }),
                        spans: vec![span(1), span(2)],
                        schema_url: "s".to_string(),
                    },
                    pt::ScopeSpans {
                        scope: None,
                        spans: vec![
                            pt::Span {
                                status: Some(pt::Status::default()),
                                ..Default::default()
                            },
                            pt::Span {
                                kind: -1,
                                status: Some(pt::Status {
                                    message: String::new(),
                                    code: 1,
                                }),
                                ..Default::default()
                            },
                        ],
                        schema_url: String::new(),
                    },
                ],
                schema_url: "https://opentelemetry.io/schemas/1.21.0".to_string(),
            },
            pt::ResourceSpans::default(),
        ],
    }
}

// ---- 1. conformance ----

#[test]
fn logs_match_prost() {
    let request = full_logs();
    let bytes = request.encode_to_vec();
    let ours = check_logs(&bytes);
    // Everything but the fields we do not keep survives.
    assert_same(&logs_to_prost(&ours), &normalize_logs(request));

    let record = &ours.resource_logs[0].scope_logs[0].log_records[1];
    assert_eq!(record.time_unix_nano, 1_700_000_000_000_000_002);
    assert_eq!(record.body, AnyValue::String("record 2: ça va?"));
    assert_eq!(record.attributes.len(), every_value().len());
    assert_eq!(record.attributes[6].value, AnyValue::Int(-1));
    assert_eq!(record.event_name, "event.ü");
    assert_eq!(ours.resource_logs[0].resource.len(), 2);
    assert_eq!(ours.resource_logs[0].scope_logs[0].scope.name, "my.scope");
    assert_eq!(
        ours.resource_logs[0].scope_logs[1].log_records[0].severity_number,
        -5
    );
}

#[test]
fn traces_match_prost() {
    let request = full_traces();
    let bytes = request.encode_to_vec();
    let ours = check_traces(&bytes);
    assert_same(&traces_to_prost(&ours), &normalize_traces(request));

    let span = &ours.resource_spans[0].scope_spans[0].spans[1];
    assert_eq!(span.name, "GET /items/2 — ü");
    assert_eq!(span.flags, 0x301);
    assert_eq!(span.events[0].name, "exception");
    assert_eq!(span.links[0].attributes[0].value, AnyValue::Int(-99));
    assert_eq!(
        span.status,
        Status {
            message: "not found ✗",
            code: 2
        }
    );
    assert_eq!(ours.resource_spans[0].scope_spans[1].spans[1].kind, -1);
}

#[test]
fn strings_and_bytes_borrow_from_the_input() {
    let bytes = full_logs().encode_to_vec();
    let ours = LogsRequest::decode(&bytes).unwrap();
    let inside = |s: &[u8]| bytes.as_ptr_range().contains(&s.as_ptr());
    let record = &ours.resource_logs[0].scope_logs[0].log_records[0];
    assert!(inside(record.severity_text.as_bytes()));
    assert!(inside(record.trace_id));
    assert!(inside(record.attributes[0].key.as_bytes()));
    let AnyValue::String(s) = record.attributes[0].value else {
        panic!("not a string: {:?}", record.attributes[0].value);
    };
    assert!(inside(s.as_bytes()));
}

#[test]
fn empty_input_is_an_empty_request() {
    assert_eq!(LogsRequest::decode(&[]), Ok(LogsRequest::default()));
    assert_eq!(TracesRequest::decode(&[]), Ok(TracesRequest::default()));
}

// ---- 1b. generated variety ----

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A number that is often 0 (so left out of the encoding), else small or anything.
    fn number(&mut self) -> u64 {
        match self.below(4) {
            0 => 0,
            1 => self.below(300),
            _ => self.next(),
        }
    }

    fn string(&mut self) -> String {
        const WORDS: &[&str] = &[
            "",
            "a",
            "service.name",
            "http.request.method",
            "héllo",
            "日本語",
            "🦀",
            " ",
            "\0",
            "ünïcödé wörds",
        ];
        let n = self.below(4);
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(WORDS[self.below(WORDS.len() as u64) as usize]);
        }
        if self.chance(5) {
            s.push_str(&"long ".repeat(40));
        }
        s
    }

    fn bytes(&mut self) -> Vec<u8> {
        let len = [0, 8, 16, 3][self.below(4) as usize];
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn double(&mut self) -> f64 {
        match self.below(6) {
            0 => 0.0,
            1 => -0.0,
            2 => f64::NEG_INFINITY,
            3 => f64::MIN_POSITIVE / 4.0,
            _ => (self.next() as i64) as f64 / 1024.0,
        }
    }

    fn any(&mut self, depth: u32) -> pc::AnyValue {
        let kinds = if depth >= 3 { 7 } else { 9 };
        let value = match self.below(kinds) {
            0 => None,
            1 => Some(V::StringValue(self.string())),
            2 => Some(V::BoolValue(self.chance(50))),
            3 => Some(V::IntValue(self.number() as i64)),
            4 => Some(V::DoubleValue(self.double())),
            5 => Some(V::BytesValue(self.bytes())),
            6 => Some(V::StringValueStrindex(self.number() as i32)),
            7 => Some(V::ArrayValue(pc::ArrayValue {
                values: (0..self.below(4)).map(|_| self.any(depth + 1)).collect(),
            })),
            _ => Some(V::KvlistValue(pc::KeyValueList {
                values: self.kvs(depth + 1),
            })),
        };
        pc::AnyValue { value }
    }

    fn value(&mut self, depth: u32) -> Option<pc::AnyValue> {
        if self.chance(10) {
            None
        } else {
            Some(self.any(depth))
        }
    }

    fn kvs(&mut self, depth: u32) -> Vec<pc::KeyValue> {
        (0..self.below(5))
            .map(|_| pc::KeyValue {
                key: self.string(),
                value: self.value(depth),
                key_strindex: if self.chance(10) {
                    self.number() as i32
                } else {
                    0
                },
            })
            .collect()
    }

    fn resource(&mut self) -> Option<Resource> {
        self.chance(80).then(|| Resource {
            attributes: self.kvs(0),
            dropped_attributes_count: self.number() as u32,
            entity_refs: (0..self.below(2))
                .map(|_| pc::EntityRef {
                    schema_url: self.string(),
                    r#type: self.string(),
                    id_keys: vec![self.string()],
                    description_keys: Vec::new(),
                })
                .collect(),
        })
    }

    fn scope(&mut self) -> Option<pc::InstrumentationScope> {
        self.chance(80).then(|| pc::InstrumentationScope {
            name: self.string(),
            version: self.string(),
            attributes: self.kvs(0),
            dropped_attributes_count: self.number() as u32,
        })
    }

    fn logs(&mut self) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: (0..self.below(3))
                .map(|_| pl::ResourceLogs {
                    resource: self.resource(),
                    scope_logs: (0..self.below(3))
                        .map(|_| pl::ScopeLogs {
                            scope: self.scope(),
                            log_records: (0..self.below(4)).map(|_| self.record()).collect(),
                            schema_url: self.string(),
                        })
                        .collect(),
                    schema_url: self.string(),
                })
                .collect(),
        }
    }

    fn record(&mut self) -> pl::LogRecord {
        pl::LogRecord {
            time_unix_nano: self.number(),
            observed_time_unix_nano: self.number(),
            severity_number: self.number() as i32,
            severity_text: self.string(),
            body: self.value(0),
            attributes: self.kvs(0),
            dropped_attributes_count: self.number() as u32,
            flags: self.number() as u32,
            trace_id: self.bytes(),
            span_id: self.bytes(),
            event_name: self.string(),
        }
    }

    fn traces(&mut self) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: (0..self.below(3))
                .map(|_| pt::ResourceSpans {
                    resource: self.resource(),
                    scope_spans: (0..self.below(3))
                        .map(|_| pt::ScopeSpans {
                            scope: self.scope(),
                            spans: (0..self.below(4)).map(|_| self.span()).collect(),
                            schema_url: self.string(),
                        })
                        .collect(),
                    schema_url: self.string(),
                })
                .collect(),
        }
    }

    fn span(&mut self) -> pt::Span {
        pt::Span {
            trace_id: self.bytes(),
            span_id: self.bytes(),
            trace_state: self.string(),
            parent_span_id: self.bytes(),
            flags: self.number() as u32,
            name: self.string(),
            kind: self.number() as i32,
            start_time_unix_nano: self.number(),
            end_time_unix_nano: self.number(),
            attributes: self.kvs(0),
            dropped_attributes_count: self.number() as u32,
            events: (0..self.below(3))
                .map(|_| pt::span::Event {
                    time_unix_nano: self.number(),
                    name: self.string(),
                    attributes: self.kvs(0),
                    dropped_attributes_count: self.number() as u32,
                })
                .collect(),
            dropped_events_count: self.number() as u32,
            links: (0..self.below(3))
                .map(|_| pt::span::Link {
                    trace_id: self.bytes(),
                    span_id: self.bytes(),
                    trace_state: self.string(),
                    attributes: self.kvs(0),
                    dropped_attributes_count: self.number() as u32,
                    flags: self.number() as u32,
                })
                .collect(),
            dropped_links_count: self.number() as u32,
            status: self.chance(70).then(|| pt::Status {
                message: self.string(),
                code: self.number() as i32,
            }),
        }
    }
}

#[test]
fn generated_logs_match_prost() {
    let mut rng = Rng(1);
    let mut records = 0;
    for _ in 0..400 {
        let request = rng.logs();
        let bytes = request.encode_to_vec();
        let ours = check_logs(&bytes);
        assert_same(&logs_to_prost(&ours), &normalize_logs(request));
        records += ours
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .map(|sl| sl.log_records.len())
            .sum::<usize>();
    }
    assert!(records > 400, "only {records} records generated");
}

#[test]
fn generated_traces_match_prost() {
    let mut rng = Rng(2);
    let mut spans = 0;
    for _ in 0..400 {
        let request = rng.traces();
        let bytes = request.encode_to_vec();
        let ours = check_traces(&bytes);
        assert_same(&traces_to_prost(&ours), &normalize_traces(request));
        spans += ours
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum::<usize>();
    }
    assert!(spans > 400, "only {spans} spans generated");
}

// ---- hand encoding ----

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    put_varint(out, u64::from(field << 3 | wire_type));
}

fn put_len(out: &mut Vec<u8>, field: u32, body: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn put_message(out: &mut Vec<u8>, field: u32, message: &impl Message) {
    put_len(out, field, &message.encode_to_vec());
}

/// `body` followed by unknown fields of wire types 0, 1, 2 and 5, with one- to five-byte keys.
fn with_unknowns(mut body: Vec<u8>, first: u32) -> Vec<u8> {
    put_key(&mut body, first, 0);
    put_varint(&mut body, u64::MAX);
    put_key(&mut body, 17, 1);
    body.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    put_len(&mut body, 2047, b"\xff not even UTF-8");
    put_key(&mut body, (1 << 29) - 1, 5);
    body.extend_from_slice(&[9, 9, 9, 9]);
    put_len(&mut body, 100_000, &[]);
    body
}

// ---- 2. unknown fields ----

#[test]
fn unknown_fields_are_skipped_in_logs() {
    let value = with_unknowns(string("v").encode_to_vec(), 9);
    let mut attribute = Vec::new();
    put_len(&mut attribute, 1, b"key");
    put_len(&mut attribute, 2, &value);
    let attribute = with_unknowns(attribute, 4);

    let mut inner = Vec::new();
    put_len(&mut inner, 1, &attribute);
    let inner = with_unknowns(inner, 2);
    let mut body = Vec::new();
    put_len(&mut body, 6, &inner); // kvlist_value
    let body = with_unknowns(body, 9);

    let mut record = pl::LogRecord {
        time_unix_nano: 7,
        severity_text: "INFO".to_string(),
        ..Default::default()
    }
    .encode_to_vec();
    put_len(&mut record, 5, &body);
    put_len(&mut record, 6, &attribute);
    put_len(&mut record, 6, &attribute);
    let record = with_unknowns(record, 4); // 4 is reserved in LogRecord

    let scope = with_unknowns(
        pc::InstrumentationScope {
            name: "scope".to_string(),
            ..Default::default()
        }
        .encode_to_vec(),
        5,
    );
    let mut scope_logs = Vec::new();
    put_len(&mut scope_logs, 1, &scope);
    put_len(&mut scope_logs, 2, &record);
    put_len(&mut scope_logs, 2, &record);
    let scope_logs = with_unknowns(scope_logs, 4);

    let mut resource = Vec::new();
    put_len(&mut resource, 1, &attribute);
    let resource = with_unknowns(resource, 4);
    let mut resource_logs = Vec::new();
    put_len(&mut resource_logs, 1, &resource);
    put_len(&mut resource_logs, 2, &scope_logs);
    let resource_logs = with_unknowns(resource_logs, 1000);

    let mut request = with_unknowns(Vec::new(), 2);
    put_len(&mut request, 1, &resource_logs);
    let request = with_unknowns(request, 3);

    let ours = check_logs(&request);
    let record = &ours.resource_logs[0].scope_logs[0].log_records[1];
    let attribute = KeyValue {
        key: "key",
        value: AnyValue::String("v"),
    };
    assert_eq!(record.time_unix_nano, 7);
    assert_eq!(
        record.attributes,
        vec![attribute.clone(), attribute.clone()]
    );
    assert_eq!(record.body, AnyValue::Kvlist(vec![attribute.clone()]));
    assert_eq!(ours.resource_logs[0].resource, vec![attribute]);
    assert_eq!(ours.resource_logs[0].scope_logs[0].scope.name, "scope");
}

#[test]
fn unknown_fields_are_skipped_in_traces() {
    let mut status = Vec::new();
    put_len(&mut status, 1, b"reserved field 1"); // reserved: skipped by prost too
    put_len(&mut status, 2, b"oops");
    let status = with_unknowns(status, 4);
    let event = with_unknowns(
        pt::span::Event {
            name: "event".to_string(),
            ..Default::default()
        }
        .encode_to_vec(),
        5,
    );
    let link = with_unknowns(
        pt::span::Link {
            trace_state: "state".to_string(),
            flags: 3,
            ..Default::default()
        }
        .encode_to_vec(),
        7,
    );
    let mut span = pt::Span {
        name: "span".to_string(),
        flags: 0x100,
        ..Default::default()
    }
    .encode_to_vec();
    put_len(&mut span, 11, &event);
    put_len(&mut span, 13, &link);
    put_len(&mut span, 15, &status);
    let span = with_unknowns(span, 17);

    let mut scope_spans = Vec::new();
    put_len(&mut scope_spans, 2, &span);
    let scope_spans = with_unknowns(scope_spans, 4);
    let mut resource_spans = Vec::new();
    put_len(&mut resource_spans, 2, &scope_spans);
    let resource_spans = with_unknowns(resource_spans, 4);
    let mut request = Vec::new();
    put_len(&mut request, 1, &resource_spans);
    let request = with_unknowns(request, 2);

    let ours = check_traces(&request);
    let span = &ours.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.name, "span");
    assert_eq!(span.flags, 0x100);
    assert_eq!(span.events[0].name, "event");
    assert_eq!(span.links[0].trace_state, "state");
    assert_eq!(span.links[0].flags, 3);
    assert_eq!(
        span.status,
        Status {
            message: "oops",
            code: 0
        }
    );
}

// ---- 3. fields seen twice ----

#[test]
fn duplicate_fields_merge_like_prost() {
    // A record: scalars twice (last wins), body twice (last wins, arrays append).
    let mut record = Vec::new();
    record.extend(
        pl::LogRecord {
            time_unix_nano: 1,
            severity_number: 5,
            severity_text: "first".to_string(),
            body: Some(array(vec![string("a")])),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    record.extend(
        pl::LogRecord {
            time_unix_nano: 2,
            severity_text: "second".to_string(),
            body: Some(array(vec![string("b")])),
            attributes: vec![kv("x", string("y"))],
            ..Default::default()
        }
        .encode_to_vec(),
    );
    // A KeyValue whose value comes twice: an int, then an empty AnyValue (which keeps the int).
    let mut twice = Vec::new();
    put_len(&mut twice, 1, b"twice");
    put_message(&mut twice, 2, &any(V::IntValue(-4)));
    put_message(&mut twice, 2, &pc::AnyValue { value: None });
    put_len(&mut record, 6, &twice);
    // A kvlist body after the arrays replaces them; a second kvlist appends to it.
    let mut record2 = Vec::new();
    put_message(&mut record2, 5, &array(vec![string("gone")]));
    put_message(&mut record2, 5, &kvlist(vec![kv("k1", string("1"))]));
    put_message(&mut record2, 5, &kvlist(vec![kv("k2", string("2"))]));
    // And a string body replaced by an int, in the same AnyValue message.
    let mut value = Vec::new();
    put_len(&mut value, 1, b"text");
    put_key(&mut value, 3, 0);
    put_varint(&mut value, 12);
    let mut record3 = Vec::new();
    put_len(&mut record3, 5, &value);

    let mut scope_logs = Vec::new();
    put_message(
        &mut scope_logs,
        1,
        &pc::InstrumentationScope {
            name: "n1".to_string(),
            version: "v1".to_string(),
            attributes: vec![kv("s1", string("1"))],
            dropped_attributes_count: 0,
        },
    );
    put_message(
        &mut scope_logs,
        1,
        &pc::InstrumentationScope {
            name: "n2".to_string(),
            version: String::new(), // absent: "v1" stays
            attributes: vec![kv("s2", string("2"))],
            dropped_attributes_count: 0,
        },
    );
    put_len(&mut scope_logs, 2, &record);
    put_len(&mut scope_logs, 2, &record2);
    put_len(&mut scope_logs, 3, b"url 1");
    put_len(&mut scope_logs, 2, &record3);
    put_len(&mut scope_logs, 3, b"url 2");

    let mut resource_logs = Vec::new();
    put_message(
        &mut resource_logs,
        1,
        &Resource {
            attributes: vec![kv("r1", string("1"))],
            ..Default::default()
        },
    );
    put_len(&mut resource_logs, 2, &scope_logs);
    put_message(
        &mut resource_logs,
        1,
        &Resource {
            attributes: vec![kv("r2", string("2"))],
            ..Default::default()
        },
    );
    let mut request = Vec::new();
    put_len(&mut request, 1, &resource_logs);

    let ours = check_logs(&request);
    let rl = &ours.resource_logs[0];
    fn keys<'a>(kvs: &[KeyValue<'a>]) -> Vec<&'a str> {
        kvs.iter().map(|kv| kv.key).collect()
    }
    assert_eq!(keys(&rl.resource), ["r1", "r2"]);
    let sl = &rl.scope_logs[0];
    assert_eq!((sl.scope.name, sl.scope.version), ("n2", "v1"));
    assert_eq!(keys(&sl.scope.attributes), ["s1", "s2"]);
    assert_eq!(sl.schema_url, "url 2");
    let [r1, r2, r3] = &sl.log_records[..] else {
        panic!("{} records", sl.log_records.len());
    };
    assert_eq!((r1.time_unix_nano, r1.severity_number), (2, 5));
    assert_eq!(r1.severity_text, "second");
    assert_eq!(
        r1.body,
        AnyValue::Array(vec![AnyValue::String("a"), AnyValue::String("b")])
    );
    assert_eq!(r1.attributes[1].value, AnyValue::Int(-4));
    assert_eq!(
        keys(match &r2.body {
            AnyValue::Kvlist(kvs) => kvs,
            other => panic!("{other:?}"),
        }),
        ["k1", "k2"]
    );
    assert_eq!(r3.body, AnyValue::Int(12));
}

#[test]
fn duplicate_span_fields_merge_like_prost() {
    let mut span = pt::Span {
        name: "first".to_string(),
        status: Some(pt::Status {
            message: "m".to_string(),
            code: 2,
        }),
        ..Default::default()
    }
    .encode_to_vec();
    span.extend(
        pt::Span {
            name: "second".to_string(),
            flags: 1,
            status: Some(pt::Status {
                message: String::new(),
                code: 1,
            }),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let mut scope_spans = Vec::new();
    put_len(&mut scope_spans, 2, &span);
    let mut resource_spans = Vec::new();
    put_len(&mut resource_spans, 2, &scope_spans);
    put_message(
        &mut resource_spans,
        1,
        &Resource {
            attributes: vec![kv("r", string("1"))],
            ..Default::default()
        },
    );
    put_message(&mut resource_spans, 1, &Resource::default());
    let mut request = Vec::new();
    put_len(&mut request, 1, &resource_spans);

    let ours = check_traces(&request);
    let span = &ours.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!((span.name, span.flags), ("second", 1));
    assert_eq!(
        span.status,
        Status {
            message: "m",
            code: 1
        }
    );
    assert_eq!(ours.resource_spans[0].resource.len(), 1);
}

// ---- 4. damage ----

#[derive(Default, Debug)]
struct Outcomes {
    both_ok: usize,
    both_err: usize,
    /// Only ours fails, on a group (which prost skips).
    group: usize,
}

fn compare_damaged_logs(bytes: &[u8], outcomes: &mut Outcomes) {
    let prost = ExportLogsServiceRequest::decode(bytes);
    let ours = LogsRequest::decode(bytes);
    match (ours, prost) {
        (Ok(ours), Ok(prost)) => {
            assert_same(&logs_to_prost(&ours), &normalize_logs(prost));
            outcomes.both_ok += 1;
        }
        (Err(_), Err(_)) => outcomes.both_err += 1,
        (Ok(ours), Err(e)) => panic!("prost fails ({e}) but ours decodes {ours:?}"),
        (Err(e), Ok(_)) => {
            assert_eq!(e, UNSUPPORTED_WIRE_TYPE, "ours fails where prost does not");
            outcomes.group += 1;
        }
    }
}

fn compare_damaged_traces(bytes: &[u8], outcomes: &mut Outcomes) {
    let prost = ExportTraceServiceRequest::decode(bytes);
    let ours = TracesRequest::decode(bytes);
    match (ours, prost) {
        (Ok(ours), Ok(prost)) => {
            assert_same(&traces_to_prost(&ours), &normalize_traces(prost));
            outcomes.both_ok += 1;
        }
        (Err(_), Err(_)) => outcomes.both_err += 1,
        (Ok(ours), Err(e)) => panic!("prost fails ({e}) but ours decodes {ours:?}"),
        (Err(e), Ok(_)) => {
            assert_eq!(e, UNSUPPORTED_WIRE_TYPE, "ours fails where prost does not");
            outcomes.group += 1;
        }
    }
}

/// Every truncation, and every byte changed by each of `MASKS` (0xff flips the byte; 0x07 its
/// wire type if it is a key; 0x80 its continuation bit if it is in a varint; 0x01 its lowest bit).
fn damage(bytes: &[u8], compare: impl Fn(&[u8], &mut Outcomes)) -> Outcomes {
    const MASKS: [u8; 4] = [0xff, 0x07, 0x80, 0x01];
    let mut outcomes = Outcomes::default();
    for n in 0..bytes.len() {
        compare(&bytes[..n], &mut outcomes);
    }
    let mut damaged = bytes.to_vec();
    for i in 0..bytes.len() {
        for mask in MASKS {
            damaged[i] ^= mask;
            compare(&damaged, &mut outcomes);
            damaged[i] ^= mask;
        }
    }
    outcomes
}

#[test]
fn damaged_logs_never_panic_and_fail_where_prost_fails() {
    let mut request = full_logs();
    request.resource_logs.truncate(1);
    request.resource_logs[0].scope_logs[0]
        .log_records
        .truncate(2);
    let bytes = request.encode_to_vec();
    let outcomes = damage(&bytes, compare_damaged_logs);
    assert!(
        outcomes.both_ok > 100 && outcomes.both_err > 1000,
        "{outcomes:?}"
    );
}

#[test]
fn damaged_traces_never_panic_and_fail_where_prost_fails() {
    let mut request = full_traces();
    request.resource_spans[0].scope_spans[0].spans.truncate(1);
    let bytes = request.encode_to_vec();
    let outcomes = damage(&bytes, compare_damaged_traces);
    assert!(
        outcomes.both_ok > 100 && outcomes.both_err > 1000,
        "{outcomes:?}"
    );
}

#[test]
fn damaged_generated_requests_never_panic() {
    let mut rng = Rng(3);
    let (mut logs, mut traces) = (0, 0);
    while logs < 8 || traces < 8 {
        // Small requests only, to keep the test quick in debug builds.
        let bytes = rng.logs().encode_to_vec();
        if logs < 8 && (100..1500).contains(&bytes.len()) {
            let outcomes = damage(&bytes, compare_damaged_logs);
            assert!(
                outcomes.both_ok > 0 && outcomes.both_err > 0,
                "{outcomes:?}"
            );
            logs += 1;
        }
        let bytes = rng.traces().encode_to_vec();
        if traces < 8 && (100..1500).contains(&bytes.len()) {
            let outcomes = damage(&bytes, compare_damaged_traces);
            assert!(
                outcomes.both_ok > 0 && outcomes.both_err > 0,
                "{outcomes:?}"
            );
            traces += 1;
        }
    }
}

#[test]
fn malformed_keys_and_varints_fail_like_prost() {
    let int_attribute = |varint: &[u8]| {
        let mut value = vec![3 << 3];
        value.extend_from_slice(varint);
        let mut attribute = Vec::new();
        put_len(&mut attribute, 2, &value);
        let mut record = Vec::new();
        put_len(&mut record, 6, &attribute);
        let mut scope_logs = Vec::new();
        put_len(&mut scope_logs, 2, &record);
        let mut resource_logs = Vec::new();
        put_len(&mut resource_logs, 2, &scope_logs);
        let mut request = Vec::new();
        put_len(&mut request, 1, &resource_logs);
        request
    };
    let ten_bytes = |last: u8| [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, last];
    let cases: Vec<(Vec<u8>, Result<(), DecodeError>)> = vec![
        (int_attribute(&ten_bytes(0x01)), Ok(())), // -1
        (int_attribute(&ten_bytes(0x00)), Ok(())),
        (int_attribute(&ten_bytes(0x02)), Err(VARINT_OVERFLOW)),
        (int_attribute(&ten_bytes(0x81)), Err(VARINT_OVERFLOW)),
        (int_attribute(&[0x80, 0x80, 0x00]), Ok(())), // overlong but valid
        (int_attribute(&[0x80]), Err(TRUNCATED_VARINT)),
        (vec![0x00], Err(INVALID_KEY)),             // field 0
        (vec![0x80, 0x00], Err(INVALID_KEY)),       // field 0, overlong
        (vec![0x05, 0, 0, 0, 0], Err(INVALID_KEY)), // field 0, 32-bit
        // Key 2^32 + 8: above u32::MAX.
        (vec![0x88, 0x80, 0x80, 0x80, 0x10, 0x00], Err(INVALID_KEY)),
        (vec![0x0e], Err(UNEXPECTED_WIRE_TYPE)), // field 1, wire type 6
        (vec![0x16], Err(INVALID_WIRE_TYPE)),    // field 2, wire type 6
        (vec![0x17], Err(INVALID_WIRE_TYPE)),    // field 2, wire type 7
        (vec![0x14], Err(UNSUPPORTED_WIRE_TYPE)), // field 2, end group
        (vec![0x08, 0x01], Err(UNEXPECTED_WIRE_TYPE)), // field 1 as a varint
        (vec![0x0a, 0x01], Err(PAST_END)),
        (vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], Err(PAST_END)),
        (vec![0x11, 0, 0, 0, 0, 0, 0, 0], Err(TRUNCATED_FIXED)), // unknown 64-bit field
        (vec![0x15, 0, 0, 0], Err(TRUNCATED_FIXED)),             // unknown 32-bit field
        // A nested message's field running past the nested message's end.
        (
            vec![0x0a, 0x02, 0x1a, 0x05, b'a', b'b', b'c'],
            Err(PAST_END),
        ),
    ];
    for (bytes, expected) in cases {
        let ours = LogsRequest::decode(&bytes).map(drop);
        assert_eq!(ours, expected, "{bytes:x?}");
        let prost = ExportLogsServiceRequest::decode(bytes.as_slice());
        assert_eq!(
            prost.is_ok(),
            ours.is_ok(),
            "{bytes:x?}: prost says {prost:?}"
        );
        if ours.is_ok() {
            check_logs(&bytes);
        }
    }
    // Prost skips a well-formed group in an unknown field; we reject groups.
    let group = [0x13, 0x18, 0x01, 0x14]; // field 2: start group, field 3 = 1, end group
    assert_eq!(LogsRequest::decode(&group), Err(UNSUPPORTED_WIRE_TYPE));
    assert!(ExportLogsServiceRequest::decode(group.as_slice()).is_ok());
}

#[test]
fn known_but_unkept_fields_are_checked() {
    // A KeyValue's key_strindex (field 3) as a string, and an entity ref with invalid UTF-8:
    // prost rejects both, so we do.
    let mut attribute = Vec::new();
    put_len(&mut attribute, 3, b"x");
    let mut resource = Vec::new();
    put_len(&mut resource, 1, &attribute);
    let mut resource_logs = Vec::new();
    put_len(&mut resource_logs, 1, &resource);
    let mut request = Vec::new();
    put_len(&mut request, 1, &resource_logs);
    assert_eq!(LogsRequest::decode(&request), Err(UNEXPECTED_WIRE_TYPE));
    assert!(ExportLogsServiceRequest::decode(request.as_slice()).is_err());

    let mut entity = Vec::new();
    put_len(&mut entity, 3, b"\xc3");
    let mut resource = Vec::new();
    put_len(&mut resource, 3, &entity);
    let mut resource_spans = Vec::new();
    put_len(&mut resource_spans, 1, &resource);
    let mut request = Vec::new();
    put_len(&mut request, 1, &resource_spans);
    assert_eq!(TracesRequest::decode(&request), Err(INVALID_UTF8));
    assert!(ExportTraceServiceRequest::decode(request.as_slice()).is_err());
}

// ---- 5. invalid UTF-8, nesting ----

fn logs_with_attribute(attribute: &[u8]) -> Vec<u8> {
    let mut record = Vec::new();
    put_len(&mut record, 6, attribute);
    let mut scope_logs = Vec::new();
    put_len(&mut scope_logs, 2, &record);
    let mut resource_logs = Vec::new();
    put_len(&mut resource_logs, 2, &scope_logs);
    let mut request = Vec::new();
    put_len(&mut request, 1, &resource_logs);
    request
}

#[test]
fn invalid_utf8_is_an_error() {
    let mut bad_key = Vec::new();
    put_len(&mut bad_key, 1, b"k\xff");
    let mut bad_value = Vec::new();
    put_len(&mut bad_value, 1, b"key");
    put_len(&mut bad_value, 2, &[0x0a, 0x03, b'a', 0xc3, 0x28]);
    let mut good = Vec::new();
    put_len(&mut good, 1, "kéy".as_bytes());
    put_len(&mut good, 2, &[0x3a, 0x02, 0xc3, 0x28]); // invalid UTF-8 as bytes: fine
    for (attribute, expected) in [
        (bad_key, Err(INVALID_UTF8)),
        (bad_value, Err(INVALID_UTF8)),
        (good, Ok(())),
    ] {
        let bytes = logs_with_attribute(&attribute);
        assert_eq!(LogsRequest::decode(&bytes).map(drop), expected);
        assert_eq!(
            ExportLogsServiceRequest::decode(bytes.as_slice()).is_ok(),
            expected.is_ok()
        );
    }
    let mut span = Vec::new();
    put_len(&mut span, 5, b"\xed\xa0\x80"); // a UTF-16 surrogate
    let mut scope_spans = Vec::new();
    put_len(&mut scope_spans, 2, &span);
    let mut resource_spans = Vec::new();
    put_len(&mut resource_spans, 2, &scope_spans);
    let mut request = Vec::new();
    put_len(&mut request, 1, &resource_spans);
    assert_eq!(TracesRequest::decode(&request), Err(INVALID_UTF8));
}

/// A log body of `n` arrays nested in one another, every other one a key-value list if `mixed`.
fn nested(n: usize, mixed: bool) -> ExportLogsServiceRequest {
    let mut value = array(vec![]);
    for i in 1..n {
        value = if mixed && i % 2 == 1 {
            kvlist(vec![kv("k", value)])
        } else {
            array(vec![value])
        };
    }
    ExportLogsServiceRequest {
        resource_logs: vec![pl::ResourceLogs {
            scope_logs: vec![pl::ScopeLogs {
                log_records: vec![pl::LogRecord {
                    body: Some(value),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn nesting_is_limited_to_100_levels() {
    for n in [1, 50, 100] {
        for mixed in [false, true] {
            let request = nested(n, mixed);
            let bytes = request.encode_to_vec();
            let ours = LogsRequest::decode(&bytes).unwrap_or_else(|e| panic!("{n} levels: {e}"));
            assert_same(&logs_to_prost(&ours), &request);
        }
    }
    for n in [101, 102] {
        for mixed in [false, true] {
            let bytes = nested(n, mixed).encode_to_vec();
            assert_eq!(LogsRequest::decode(&bytes), Err(TOO_DEEP), "{n} levels");
        }
    }
    // A million nested arrays: an error, not a stack overflow.
    let mut attribute = Vec::new();
    put_len(&mut attribute, 2, &deep_arrays(1_000_000));
    let bytes = logs_with_attribute(&attribute);
    assert_eq!(LogsRequest::decode(&bytes), Err(TOO_DEEP));
    let mut attribute = Vec::new();
    put_len(&mut attribute, 2, &deep_arrays(100));
    assert!(LogsRequest::decode(&logs_with_attribute(&attribute)).is_ok());
}

/// An AnyValue of `levels` arrays nested in one another (the innermost holding one unset
/// value), encoded from the inside out into a reversed buffer so that it takes linear time.
fn deep_arrays(levels: usize) -> Vec<u8> {
    let mut reversed: Vec<u8> = Vec::new();
    for _ in 0..levels {
        // ArrayValue.values (field 1), then AnyValue.array_value (field 5).
        for key in [0x0a, 0x2a] {
            let mut prefix = vec![key];
            put_varint(&mut prefix, reversed.len() as u64);
            reversed.extend(prefix.iter().rev());
        }
    }
    reversed.reverse();
    reversed
}

#[test]
fn error_message_names_the_reason() {
    assert_eq!(
        LogsRequest::decode(&[0x0a, 0x05]).unwrap_err().to_string(),
        "malformed OTLP protobuf: field length past the end"
    );
}
