//! The simulated services' spans, made the way instrumented services make them: an integration
//! sync run is a trace (a root span per run, a child per entity, an HTTP client span per
//! outbound request), bot API calls and integration webhooks are HTTP spans (OpenTelemetry HTTP
//! semantic conventions), mail processing and automations have spans. Every typed row of an
//! event gets the trace and span id of the span it happened in before it is emitted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;

use crate::schema::{Ts, TypedRow};

const MS: i64 = 1_000_000;

pub(super) struct Spans {
    tracer: SdkTracer,
}

/// A span being built: started under a parent, ended at a simulated time.
struct Open(Context);

impl Open {
    /// The span's ids, as the typed tables store them (lowercase hex).
    fn ids(&self) -> (String, String) {
        let span = self.0.span();
        let context = span.span_context();
        (
            context.trace_id().to_string(),
            context.span_id().to_string(),
        )
    }

    fn end(self, at: Ts, error: Option<&str>) {
        let span = self.0.span();
        match error {
            Some(message) => span.set_status(Status::error(message.to_owned())),
            None => span.set_status(Status::Ok),
        }
        span.end_with_timestamp(system_time(at));
    }
}

impl Spans {
    pub(super) fn new(tracer: SdkTracer) -> Spans {
        Spans { tracer }
    }

    fn start(
        &self,
        parent: &Context,
        name: String,
        kind: SpanKind,
        at: Ts,
        attributes: Vec<KeyValue>,
    ) -> Open {
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_start_time(system_time(at))
            .with_attributes(attributes)
            .start_with_context(&self.tracer, parent);
        Open(parent.with_span(span))
    }

    /// Gives the rows of one simulated event their spans and ends the spans; returns how many
    /// spans were made.
    pub(super) fn trace(&self, rows: &mut [TypedRow]) -> u64 {
        match rows.first() {
            Some(TypedRow::IntegrationSyncRun(_)) => self.sync_run(rows),
            Some(TypedRow::ApiCall(_)) => self.api_call(&mut rows[0]),
            Some(TypedRow::IntegrationRequest(_)) => self.integration_request(&mut rows[0]),
            Some(TypedRow::MailMessage(_)) => self.mail(rows),
            Some(TypedRow::AutomationRun(_)) => self.automation(&mut rows[0]),
            _ => 0,
        }
    }

    /// created → pending → running → completed/error: the root span covers the run, the
    /// entity's span the running part, with the outbound API request inside it.
    fn sync_run(&self, rows: &mut [TypedRow]) -> u64 {
        let runs: Vec<_> = rows
            .iter()
            .filter_map(|r| match r {
                TypedRow::IntegrationSyncRun(run) => Some(run.clone()),
                _ => None,
            })
            .collect();
        let (Some(first), Some(last)) = (runs.first(), runs.last()) else {
            return 0;
        };
        let failure = (last.status == "error").then_some(last.error_message.as_str());
        let integration = KeyValue::new("logbook.integration.name", first.integration.clone());
        let root = self.start(
            &Context::new(),
            format!("integration sync {}", first.integration),
            SpanKind::Internal,
            first.time,
            vec![integration.clone()],
        );
        let executing = runs
            .iter()
            .find(|r| r.status == "running")
            .map_or(first.time, |r| r.time);
        let entity = self.start(
            &root.0,
            format!("sync {}", first.entity),
            SpanKind::Internal,
            executing,
            vec![
                integration,
                KeyValue::new("logbook.integration.entity", first.entity.clone()),
            ],
        );
        let host = format!(
            "api.{}.example",
            first.integration.to_lowercase().replace(' ', "-")
        );
        let status = if failure.is_some() { 401 } else { 200 };
        let mut attributes = http_client(
            "GET",
            &format!("https://{host}/v2/{}?page=1", first.entity),
            &host,
            status,
        );
        attributes.push(KeyValue::new(
            "logbook.sync.found",
            i64::from(last.found.max(1)),
        ));
        let request = self.start(
            &entity.0,
            "GET".into(),
            SpanKind::Client,
            Ts(executing.0 + 20 * MS),
            attributes,
        );
        request.end(
            Ts(executing.0 + 420 * MS),
            failure.map(|_| "401 Unauthorized"),
        );
        let (root_ids, entity_ids) = (root.ids(), entity.ids());
        for row in rows.iter_mut() {
            if let TypedRow::IntegrationSyncRun(run) = row {
                let (trace, span) = if matches!(run.status.as_str(), "created" | "pending") {
                    &root_ids
                } else {
                    &entity_ids
                };
                set_ids(row, trace, span);
            }
        }
        let end = Ts(last.time.0 + 200 * MS);
        entity.end(end, failure);
        root.end(end, failure);
        3
    }

    fn api_call(&self, row: &mut TypedRow) -> u64 {
        let TypedRow::ApiCall(call) = &*row else {
            return 0;
        };
        let host = host_of(&call.url);
        let mut attributes = http_client(&call.method, &call.url, &host, call.status_code);
        attributes.push(KeyValue::new("logbook.bot.name", call.bot.clone()));
        let span = self.start(
            &Context::new(),
            call.method.clone(),
            SpanKind::Client,
            call.time,
            attributes,
        );
        let end = Ts(call.time.0 + i64::from(call.duration_ms.max(1)) * MS);
        let error = (call.outcome == "error").then(|| call.error_message.clone());
        let (trace, span_id) = span.ids();
        span.end(end, error.as_deref());
        set_ids(row, &trace, &span_id);
        1
    }

    /// Inbound webhooks are server spans, outbound requests client spans.
    fn integration_request(&self, row: &mut TypedRow) -> u64 {
        let TypedRow::IntegrationRequest(request) = &*row else {
            return 0;
        };
        let (name, kind, attributes) = if request.direction == "inbound" {
            let route = "/webhooks/{integration}";
            let mut attributes = vec![
                KeyValue::new("http.request.method", request.method.clone()),
                KeyValue::new("http.route", route),
                KeyValue::new("url.path", format!("/webhooks/{}", request.integration)),
                KeyValue::new("url.scheme", "https"),
            ];
            if request.status_code != 0 {
                attributes.push(KeyValue::new(
                    "http.response.status_code",
                    i64::from(request.status_code),
                ));
            }
            let name = format!("{} {route}", request.method);
            (name, SpanKind::Server, attributes)
        } else {
            let host = host_of(&request.url);
            let attributes = http_client(&request.method, &request.url, &host, request.status_code);
            (request.method.clone(), SpanKind::Client, attributes)
        };
        let span = self.start(&Context::new(), name, kind, request.time, attributes);
        let error = (request.status == "error").then(|| request.error_message.clone());
        let (trace, span_id) = span.ids();
        span.end(Ts(request.time.0 + 150 * MS), error.as_deref());
        set_ids(row, &trace, &span_id);
        1
    }

    /// One mail: a span over its processing, a child per attempt.
    fn mail(&self, rows: &mut [TypedRow]) -> u64 {
        let Some(TypedRow::MailMessage(first)) = rows.first() else {
            return 0;
        };
        let root = self.start(
            &Context::new(),
            format!("process {} mail", first.direction),
            SpanKind::Internal,
            first.time,
            vec![
                KeyValue::new("logbook.mail.mailbox", first.mailbox.clone()),
                KeyValue::new("logbook.mail.message_id", first.message_id.clone()),
            ],
        );
        let mut spans = 1;
        let (mut end, mut failure) = (first.time, None);
        for row in rows.iter_mut() {
            let TypedRow::MailMessage(mail) = &*row else {
                continue;
            };
            let attempt = self.start(
                &root.0,
                format!("mail attempt {}", mail.attempt),
                if mail.direction == "outbound" {
                    SpanKind::Client
                } else {
                    SpanKind::Consumer
                },
                mail.time,
                vec![KeyValue::new("logbook.attempt", i64::from(mail.attempt))],
            );
            end = Ts(mail.time.0 + 800 * MS);
            failure = (mail.status == "error").then(|| mail.error_message.clone());
            let (trace, span) = attempt.ids();
            attempt.end(end, failure.as_deref());
            set_ids(row, &trace, &span);
            spans += 1;
        }
        root.end(end, failure.as_deref());
        spans
    }

    fn automation(&self, row: &mut TypedRow) -> u64 {
        let TypedRow::AutomationRun(run) = &*row else {
            return 0;
        };
        let span = self.start(
            &Context::new(),
            format!("automation {}", run.action),
            SpanKind::Internal,
            run.time,
            vec![
                KeyValue::new("logbook.automation.action", run.action.clone()),
                KeyValue::new("logbook.automation.workflow_id", run.workflow_id.clone()),
            ],
        );
        let error = (run.status == "error").then(|| run.error_message.clone());
        let (trace, span_id) = span.ids();
        span.end(Ts(run.time.0 + 300 * MS), error.as_deref());
        set_ids(row, &trace, &span_id);
        1
    }
}

/// The attributes of an HTTP client span (semantic conventions: `http.request.method`,
/// `url.full`, `server.address`, `server.port`, `http.response.status_code`, `error.type`).
fn http_client(method: &str, url: &str, host: &str, status: u16) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.to_owned()),
        KeyValue::new("url.full", url.to_owned()),
        KeyValue::new("server.address", host.to_owned()),
        KeyValue::new("server.port", 443),
    ];
    if status != 0 {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    if status >= 400 {
        attributes.push(KeyValue::new("error.type", status.to_string()));
    }
    attributes
}

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?', ':'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn set_ids(row: &mut TypedRow, trace: &str, span: &str) {
    let common = row.common_mut();
    trace.clone_into(common.trace_id);
    span.clone_into(common.span_id);
}

fn system_time(at: Ts) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(at.0).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

    use super::*;
    use crate::demo::Simulator;

    /// Keeps every exported span.
    #[derive(Debug, Clone, Default)]
    struct Capture(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Capture {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    fn spans_of(slots: usize) -> (Vec<Vec<TypedRow>>, Vec<SpanData>) {
        let exporter = Capture::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let spans = Spans::new(opentelemetry::trace::TracerProvider::tracer(&provider, "t"));
        let mut sim = Simulator::new(5, 2);
        let events: Vec<_> = (0..slots)
            .map(|i| {
                let mut rows = sim.next(Ts(1_700_000_000_000_000_000 + i as i64 * 1_000_000_000));
                spans.trace(&mut rows);
                rows
            })
            .collect();
        let spans = exporter.0.lock().unwrap().clone();
        (events, spans)
    }

    #[test]
    fn a_sync_run_is_a_trace_with_entity_and_request_spans() {
        let (events, spans) = spans_of(15);
        let run = &events[1];
        let TypedRow::IntegrationSyncRun(created) = &run[0] else {
            panic!("the second event is a sync run")
        };
        let trace: Vec<_> = spans
            .iter()
            .filter(|s| s.span_context.trace_id().to_string() == created.trace_id)
            .collect();
        assert_eq!(trace.len(), 3, "{trace:?}");
        let root = trace
            .iter()
            .find(|s| s.name.starts_with("integration sync"))
            .unwrap();
        assert_eq!(root.parent_span_id, opentelemetry::trace::SpanId::INVALID);
        assert_eq!(created.span_id, root.span_context.span_id().to_string());
        let entity = trace.iter().find(|s| s.name.starts_with("sync ")).unwrap();
        assert_eq!(entity.parent_span_id, root.span_context.span_id());
        let request = trace.iter().find(|s| s.name == "GET").unwrap();
        assert_eq!(request.span_kind, SpanKind::Client);
        assert_eq!(request.parent_span_id, entity.span_context.span_id());
        let keys: Vec<_> = request
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        for key in [
            "http.request.method",
            "url.full",
            "server.address",
            "http.response.status_code",
        ] {
            assert!(keys.contains(&key), "{key} missing: {keys:?}");
        }
        let TypedRow::IntegrationSyncRun(done) = run.last().unwrap() else {
            panic!()
        };
        assert_eq!(done.span_id, entity.span_context.span_id().to_string());
    }

    #[test]
    fn api_calls_are_http_client_spans_carrying_their_rows_ids() {
        let (events, spans) = spans_of(15);
        let TypedRow::ApiCall(call) = &events[0][0] else {
            panic!("the first event is an API call")
        };
        let span = spans
            .iter()
            .find(|s| s.span_context.span_id().to_string() == call.span_id)
            .expect("the call's span");
        assert_eq!(span.span_kind, SpanKind::Client);
        assert_eq!(span.name, call.method);
        assert_eq!(span.span_context.trace_id().to_string(), call.trace_id);
        let duration = span.end_time.duration_since(span.start_time).unwrap();
        assert_eq!(duration.as_millis(), u128::from(call.duration_ms));
        // Rows of kinds without spans keep no trace.
        for rows in &events[9..] {
            if let TypedRow::AuditActivity(row) = &rows[0] {
                assert!(row.trace_id.is_empty());
            }
        }
    }
}
