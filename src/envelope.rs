//! A queued request: one tag byte for its signal, then its OTLP protobuf, already validated
//! and redacted. Protobuf whatever the request arrived as, so replay decodes one format.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

const LOGS: u8 = 1;
const TRACES: u8 = 2;

#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    Logs(ExportLogsServiceRequest),
    Traces(ExportTraceServiceRequest),
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("empty queued request")]
    Empty,
    #[error("unknown signal tag {0}")]
    UnknownTag(u8),
    #[error("queued request does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
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

    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let (&tag, body) = bytes.split_first().ok_or(EnvelopeError::Empty)?;
        Ok(match tag {
            LOGS => Envelope::Logs(ExportLogsServiceRequest::decode(body)?),
            TRACES => Envelope::Traces(ExportTraceServiceRequest::decode(body)?),
            other => return Err(EnvelopeError::UnknownTag(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_an_error() {
        let envelope = Envelope::Traces(ExportTraceServiceRequest::default());
        assert_eq!(Envelope::decode(&envelope.encode()).unwrap(), envelope);
        assert!(matches!(
            Envelope::decode(&[9, 1]),
            Err(EnvelopeError::UnknownTag(9))
        ));
        assert!(matches!(Envelope::decode(&[]), Err(EnvelopeError::Empty)));
        assert!(Envelope::decode(&[LOGS, 0xff, 0xff]).is_err());
    }
}
