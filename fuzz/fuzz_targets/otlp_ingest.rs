//! Arbitrary bytes through everything a request meets before it is stored: the OTLP protobuf
//! and JSON decoders (logs and traces), redaction, the queue envelope, the pipeline's
//! borrowing decoder, and routing into rows. Nothing may panic, and the pipeline must read
//! every envelope the receivers write.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use logbook::ingest::decode::{LogsRequest, TracesRequest};
use logbook::ingest::queue::envelope::{Envelope, View};
use logbook::ingest::redact::{RedactionConfig, Redactor};
use logbook::ingest::route::{self, Origin, Rows};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

fn redactor() -> &'static Redactor {
    static REDACTOR: OnceLock<Redactor> = OnceLock::new();
    REDACTOR.get_or_init(|| Redactor::new(&RedactionConfig::default()).expect("default config"))
}

const ORIGIN: Origin = Origin {
    queue_id: 1,
    position: 0,
};

fn logs(mut request: ExportLogsServiceRequest) {
    redactor().logs(&mut request);
    let bytes = Envelope::Logs(request).encode();
    let View::Logs(view) = Envelope::view(&bytes).expect("an envelope decodes") else {
        panic!("a logs envelope decoded as another signal")
    };
    route::logs(&view, ORIGIN, &mut Rows::default());
}

fn traces(mut request: ExportTraceServiceRequest) {
    redactor().traces(&mut request);
    let bytes = Envelope::Traces(request).encode();
    let View::Traces(view) = Envelope::view(&bytes).expect("an envelope decodes") else {
        panic!("a traces envelope decoded as another signal")
    };
    route::traces(&view, ORIGIN, &mut Rows::default());
}

fuzz_target!(|data: &[u8]| {
    // A damaged queued request meets the borrowing decoder directly.
    if let Ok(request) = LogsRequest::decode(data) {
        route::logs(&request, ORIGIN, &mut Rows::default());
    }
    if let Ok(request) = TracesRequest::decode(data) {
        route::traces(&request, ORIGIN, &mut Rows::default());
    }
    if let Ok(request) = ExportLogsServiceRequest::decode(data) {
        logs(request);
    }
    if let Ok(request) = ExportTraceServiceRequest::decode(data) {
        traces(request);
    }
    if let Ok(request) = serde_json::from_slice::<ExportLogsServiceRequest>(data) {
        logs(request);
    }
    if let Ok(request) = serde_json::from_slice::<ExportTraceServiceRequest>(data) {
        traces(request);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = redactor().text(text);
    }
});
