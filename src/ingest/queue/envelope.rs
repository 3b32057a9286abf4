//! A queued request: one tag byte for its signal, then its OTLP protobuf, already validated
//! and redacted. Protobuf whatever the request arrived as, so replay decodes one format, and
//! the pipeline reads it in place ([`crate::ingest::decode`]) without copying its strings.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::ingest::decode::{DecodeError, LogsRequest, TracesRequest};

const LOGS: u8 = 1;
const TRACES: u8 = 2;

#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    Logs(ExportLogsServiceRequest),
    Traces(ExportTraceServiceRequest),
}

/// A queued request read in place: its strings borrow the queued bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum View<'a> {
    Logs(LogsRequest<'a>),
    Traces(TracesRequest<'a>),
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("empty queued request")]
    Empty,
    #[error("unknown signal tag {0}")]
    UnknownTag(u8),
    #[error("queued request does not decode: {0}")]
    Decode(#[from] DecodeError),
}

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        let (tag, len) = match self {
            Envelope::Logs(r) => (LOGS, r.encoded_len()),
            Envelope::Traces(r) => (TRACES, r.encoded_len()),
        };
        let mut out = Vec::with_capacity(len + 1);
        out.push(tag);
        match self {
            Envelope::Logs(r) => r.encode_raw(&mut out),
            Envelope::Traces(r) => r.encode_raw(&mut out),
        }
        out
    }

    pub fn view(bytes: &[u8]) -> Result<View<'_>, EnvelopeError> {
        let (&tag, body) = bytes.split_first().ok_or(EnvelopeError::Empty)?;
        Ok(match tag {
            LOGS => View::Logs(LogsRequest::decode(body)?),
            TRACES => View::Traces(TracesRequest::decode(body)?),
            other => return Err(EnvelopeError::UnknownTag(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

    #[test]
    fn round_trip_and_damage_is_an_error() {
        let envelope = Envelope::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                schema_url: "https://example.com/schema".into(),
                ..Default::default()
            }],
        });
        let bytes = envelope.encode();
        let View::Traces(view) = Envelope::view(&bytes).unwrap() else {
            panic!("a traces envelope read as another signal")
        };
        assert_eq!(
            view.resource_spans[0].schema_url,
            "https://example.com/schema"
        );
        assert!(matches!(
            Envelope::view(&[9, 1]),
            Err(EnvelopeError::UnknownTag(9))
        ));
        assert!(matches!(Envelope::view(&[]), Err(EnvelopeError::Empty)));
        assert!(Envelope::view(&[LOGS, 0xff, 0xff]).is_err());
    }
}
