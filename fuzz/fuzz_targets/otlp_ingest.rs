//! Arbitrary bytes through everything a request meets before it is stored: the OTLP protobuf
//! and JSON decoders (logs and traces), redaction, the queue envelope, and routing into rows.
//! Nothing may panic, and an envelope must decode to what was encoded.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use logbook::envelope::Envelope;
use logbook::redact::{RedactionConfig, Redactor};
use logbook::route::{self, Origin, Rows};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

fn redactor() -> &'static Redactor {
    static REDACTOR: OnceLock<Redactor> = OnceLock::new();
    REDACTOR.get_or_init(|| Redactor::new(&RedactionConfig::default()).expect("default config"))
}

fn logs(mut request: ExportLogsServiceRequest) {
    redactor().logs(&mut request);
    let bytes = Envelope::Logs(request).encode();
    let decoded = Envelope::decode(&bytes).expect("an envelope decodes");
    // Compared as bytes: a NaN double is not equal to itself.
    assert_eq!(decoded.encode(), bytes);
    let Envelope::Logs(request) = decoded else {
        panic!("a logs envelope decoded as another signal")
    };
    route::logs(
        request,
        Origin {
            queue_id: 1,
            position: 0,
        },
        &mut Rows::default(),
    );
}

fn traces(mut request: ExportTraceServiceRequest) {
    redactor().traces(&mut request);
    route::traces(
        request,
        Origin {
            queue_id: 1,
            position: 0,
        },
        &mut Rows::default(),
    );
}

fuzz_target!(|data: &[u8]| {
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
