//! Decoding requests whose values nest deeper than the decoders follow.
//!
//! prost refuses a message nested more than 100 messages deep and serde_json a document nested
//! more than 128 containers deep: limits that keep a hostile request from overflowing the
//! stack, but that refuse a whole request for one record whose attribute holds a key-value list
//! about 30 levels deep (each level costs prost 3 messages and JSON 4 containers). So when a
//! request fails to decode, it is rewritten, in one pass with an explicit bound on recursion,
//! with every array or key-value list nested deeper than [`MAX_NESTING`] + 1 replaced by the
//! [`TOO_DEEP`] string, and decoded again. The redactor then cuts what is left at
//! [`MAX_NESTING`] and counts it per record (see `redact`), so a value is cut at the same depth
//! and counted the same way whether or not the decoders could read it whole.
//!
//! The rewrite only runs after a failed decode: requests within the limits cost nothing more.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde::de::DeserializeOwned;

use crate::ingest::redact::{MAX_NESTING, TOO_DEEP};

/// Arrays and key-value lists at this depth or deeper are cut by the rewrite; one level more
/// than the redactor keeps, so that the redactor sees (and counts) every over-deep value.
const CUT: u32 = MAX_NESTING as u32 + 1;

/// An OTLP export request, as the rewrite walks it.
pub trait Otlp: prost::Message + Default + DeserializeOwned {
    #[doc(hidden)]
    const ROOT: Msg;
}

impl Otlp for ExportLogsServiceRequest {
    const ROOT: Msg = Msg::LogsRequest;
}

impl Otlp for ExportTraceServiceRequest {
    const ROOT: Msg = Msg::TracesRequest;
}

/// Decodes OTLP protobuf; a request too deep for prost is decoded with its over-deep values
/// replaced. The error is prost's first one when the rewrite changes nothing.
pub fn protobuf<T: Otlp>(body: &[u8]) -> Result<T, prost::DecodeError> {
    T::decode(body).or_else(|error| match rewrite(T::ROOT, body, 0) {
        Ok(Some(cut)) => T::decode(cut.as_slice()),
        _ => Err(error),
    })
}

/// Decodes OTLP/JSON as [`protobuf`] does protobuf.
pub fn json<T: Otlp>(body: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(body).or_else(|error| match rewrite_json(body) {
        Some(cut) => serde_json::from_slice(&cut),
        None => Err(error),
    })
}

/// The OTLP messages on the way from a request to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    LogsRequest,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    TracesRequest,
    ResourceSpans,
    ScopeSpans,
    Span,
    Event,
    Link,
    Resource,
    Scope,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

impl Msg {
    /// The message a length-delimited field holds, where it leads to values.
    fn child(self, field: u64) -> Option<Msg> {
        use Msg::*;
        Some(match (self, field) {
            (LogsRequest, 1) => ResourceLogs,
            (ResourceLogs | ResourceSpans, 1) => Resource,
            (ResourceLogs, 2) => ScopeLogs,
            (ScopeLogs | ScopeSpans, 1) => Scope,
            (ScopeLogs, 2) => LogRecord,
            (LogRecord, 5) => AnyValue,
            (LogRecord, 6) | (Span, 9) | (Event, 3) | (Link, 4) => KeyValue,
            (Resource | KeyValueList, 1) | (Scope, 3) => KeyValue,
            (TracesRequest, 1) => ResourceSpans,
            (ResourceSpans, 2) => ScopeSpans,
            (ScopeSpans, 2) => Span,
            (Span, 11) => Event,
            (Span, 13) => Link,
            (KeyValue, 2) | (ArrayValue, 1) => AnyValue,
            (AnyValue, 5) => ArrayValue,
            (AnyValue, 6) => KeyValueList,
            _ => return None,
        })
    }
}

/// The malformed wire format: the rewrite gives up and prost's own error stands.
struct Malformed;

/// `message` (a `msg` inside `depth` arrays and key-value lists) with its over-deep values
/// replaced, or `None` when it has none. Recursion stops at [`CUT`] levels of values, so its
/// depth is bounded whatever the input.
fn rewrite(msg: Msg, message: &[u8], depth: u32) -> Result<Option<Vec<u8>>, Malformed> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut at = 0;
    while at < message.len() {
        let start = at;
        let key = varint(message, &mut at)?;
        let (field, wire_type) = (key >> 3, key & 7);
        let end = match wire_type {
            0 => {
                varint(message, &mut at)?;
                at
            }
            1 => at + 8,
            5 => at + 4,
            2 => {
                let len = usize::try_from(varint(message, &mut at)?).map_err(|_| Malformed)?;
                at.checked_add(len).ok_or(Malformed)?
            }
            _ => return Err(Malformed),
        };
        if end > message.len() {
            return Err(Malformed);
        }
        let body = &message[at..end];
        at = end;
        let Some(child) = msg.child(field).filter(|_| wire_type == 2) else {
            continue;
        };
        let replaced = if msg == Msg::AnyValue && depth >= CUT {
            Some(string_field(1, TOO_DEEP.as_bytes()))
        } else {
            let inner = depth + u32::from(matches!(child, Msg::ArrayValue | Msg::KeyValueList));
            rewrite(child, body, inner)?.map(|new| string_field(field, &new))
        };
        if let Some(replaced) = replaced {
            let out = out.get_or_insert_with(|| Vec::with_capacity(message.len()));
            out.extend_from_slice(&message[copied..start]);
            out.extend_from_slice(&replaced);
            copied = end;
        }
    }
    Ok(out.map(|mut out| {
        out.extend_from_slice(&message[copied..]);
        out
    }))
}

/// A length-delimited field.
fn string_field(field: u64, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 12);
    prost::encoding::encode_key(
        field as u32,
        prost::encoding::WireType::LengthDelimited,
        &mut out,
    );
    prost::encoding::encode_varint(contents.len() as u64, &mut out);
    out.extend_from_slice(contents);
    out
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, Malformed> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or(Malformed)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(Malformed)
}

/// OTLP/JSON with every `"kvlistValue"` or `"arrayValue"` nested in [`CUT`] or more others
/// replaced by `"stringValue": "[truncated: …]"`; `None` when there is none, or the text is
/// not JSON. One pass with an explicit stack: any depth of brackets is safe.
fn rewrite_json(text: &[u8]) -> Option<Vec<u8>> {
    // For each open container, how many `kvlistValue`/`arrayValue` members enclose it.
    let mut depths: Vec<u32> = Vec::new();
    let mut out = Vec::with_capacity(text.len());
    let mut changed = false;
    // The member just read names an array or key-value list.
    let mut nested_member = false;
    let mut at = 0;
    while at < text.len() {
        match text[at] {
            b'"' => {
                let end = string_end(text, at)?;
                let colon = skip_whitespace(text, end);
                let name = &text[at + 1..end - 1];
                if text.get(colon) == Some(&b':') && matches!(name, b"kvlistValue" | b"arrayValue")
                {
                    if depths.last().copied().unwrap_or(0) >= CUT {
                        out.extend_from_slice(b"\"stringValue\":\"");
                        out.extend_from_slice(TOO_DEEP.as_bytes());
                        out.push(b'"');
                        at = value_end(text, skip_whitespace(text, colon + 1))?;
                        changed = true;
                        continue;
                    }
                    nested_member = true;
                }
                out.extend_from_slice(&text[at..end]);
                at = end;
                continue;
            }
            open @ (b'{' | b'[') => {
                let outer = depths.last().copied().unwrap_or(0);
                depths.push(outer + u32::from(std::mem::take(&mut nested_member)));
                out.push(open);
            }
            close @ (b'}' | b']') => {
                depths.pop()?;
                nested_member = false;
                out.push(close);
            }
            b',' => {
                nested_member = false;
                out.push(b',');
            }
            other => out.push(other),
        }
        at += 1;
    }
    changed.then_some(out)
}

/// The index after the string that opens at `at`.
fn string_end(text: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index after the JSON value that starts at `at`.
fn value_end(text: &[u8], at: usize) -> Option<usize> {
    match text.get(at)? {
        b'"' => string_end(text, at),
        b'{' | b'[' => {
            let mut open = 0usize;
            let mut i = at;
            while i < text.len() {
                match text[i] {
                    b'"' => {
                        i = string_end(text, i)?;
                        continue;
                    }
                    b'{' | b'[' => open += 1,
                    b'}' | b']' => {
                        open -= 1;
                        if open == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => Some(
            (at..text.len())
                .find(|&i| matches!(text[i], b',' | b'}' | b']') || text[i].is_ascii_whitespace())
                .unwrap_or(text.len()),
        ),
    }
}

fn skip_whitespace(text: &[u8], at: usize) -> usize {
    (at..text.len())
        .find(|&i| !text[i].is_ascii_whitespace())
        .unwrap_or(text.len())
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    use super::*;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn kvlist(levels: usize) -> Value {
        (0..levels).fold(Value::StringValue("bottom".into()), |value, _| {
            Value::KvlistValue(KeyValueList {
                values: vec![kv("l", value)],
            })
        })
    }

    fn array(levels: usize) -> Value {
        (0..levels).fold(Value::IntValue(7), |value, _| {
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue { value: Some(value) }],
            })
        })
    }

    /// How many arrays and key-value lists nest in `value`.
    fn levels(value: &Value) -> usize {
        match value {
            Value::KvlistValue(list) => {
                1 + levels(
                    list.values[0]
                        .value
                        .as_ref()
                        .unwrap()
                        .value
                        .as_ref()
                        .unwrap(),
                )
            }
            Value::ArrayValue(array) => 1 + levels(array.values[0].value.as_ref().unwrap()),
            _ => 0,
        }
    }

    fn logs(attributes: Vec<KeyValue>) -> ExportLogsServiceRequest {
        let record = |body: &str| LogRecord {
            body: Some(AnyValue {
                value: Some(Value::StringValue(body.into())),
            }),
            attributes: attributes.clone(),
            ..Default::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![record("before"), record("deep"), record("after")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// The deepest kvlist each decoder takes whole, measured on the deepest path of each
    /// signal: this is why logbook cuts at 20 and rewrites only after a failed decode.
    #[test]
    fn decoders_refuse_kvlists_about_thirty_levels_deep() {
        let deepest = |fits: &dyn Fn(usize) -> bool| (1..64).take_while(|&n| fits(n)).last();
        let log = |n| logs(vec![kv("a", kvlist(n))]);
        let span = |n| ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        events: vec![Event {
                            attributes: vec![kv("a", kvlist(n))],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let prost_logs = deepest(&|n| {
            ExportLogsServiceRequest::decode(log(n).encode_to_vec().as_slice()).is_ok()
        });
        let prost_spans = deepest(&|n| {
            ExportTraceServiceRequest::decode(span(n).encode_to_vec().as_slice()).is_ok()
        });
        let json_logs = deepest(&|n| {
            serde_json::from_slice::<ExportLogsServiceRequest>(
                &serde_json::to_vec(&log(n)).unwrap(),
            )
            .is_ok()
        });
        let json_spans = deepest(&|n| {
            serde_json::from_slice::<ExportTraceServiceRequest>(
                &serde_json::to_vec(&span(n)).unwrap(),
            )
            .is_ok()
        });
        assert_eq!(
            (prost_logs, prost_spans, json_logs, json_spans),
            (Some(31), Some(31), Some(29), Some(28))
        );
    }

    #[test]
    fn a_request_too_deep_for_prost_decodes_with_the_deep_part_cut_below_the_redactor() {
        let request = logs(vec![
            kv("deep", kvlist(40)),
            kv("array", array(300)),
            kv("fine", kvlist(3)),
        ]);
        let bytes = request.encode_to_vec();
        assert!(ExportLogsServiceRequest::decode(bytes.as_slice()).is_err());
        let decoded: ExportLogsServiceRequest = protobuf(&bytes).unwrap();
        let records = &decoded.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(records.len(), 3);
        for record in records {
            let value = |i: usize| {
                record.attributes[i]
                    .value
                    .as_ref()
                    .unwrap()
                    .value
                    .as_ref()
                    .unwrap()
            };
            assert_eq!(levels(value(0)), CUT as usize);
            assert_eq!(levels(value(1)), CUT as usize);
            assert_eq!(value(2), &kvlist(3));
        }
        assert_eq!(
            records.iter().map(|r| r.body.clone()).collect::<Vec<_>>(),
            request.resource_logs[0].scope_logs[0]
                .log_records
                .iter()
                .map(|r| r.body.clone())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_request_too_deep_for_serde_json_decodes_with_the_deep_part_cut_below_the_redactor() {
        let request = logs(vec![
            kv("deep", kvlist(40)),
            kv("array", array(300)),
            kv("fine", kvlist(3)),
        ]);
        let text = serde_json::to_vec(&request).unwrap();
        assert!(serde_json::from_slice::<ExportLogsServiceRequest>(&text).is_err());
        let decoded: ExportLogsServiceRequest = json(&text).unwrap();
        for record in &decoded.resource_logs[0].scope_logs[0].log_records {
            let value = |i: usize| {
                record.attributes[i]
                    .value
                    .as_ref()
                    .unwrap()
                    .value
                    .as_ref()
                    .unwrap()
            };
            assert_eq!(levels(value(0)), CUT as usize);
            assert_eq!(levels(value(1)), CUT as usize);
            assert_eq!(value(2), &kvlist(3));
        }
    }

    #[test]
    fn span_event_and_link_attributes_are_cut_in_both_encodings() {
        let deep = || vec![kv("deep", kvlist(40))];
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        name: "deep".into(),
                        attributes: deep(),
                        events: vec![Event {
                            attributes: deep(),
                            ..Default::default()
                        }],
                        links: vec![Link {
                            attributes: deep(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let from_protobuf: ExportTraceServiceRequest = protobuf(&request.encode_to_vec()).unwrap();
        let from_json: ExportTraceServiceRequest =
            json(&serde_json::to_vec(&request).unwrap()).unwrap();
        for decoded in [from_protobuf, from_json] {
            let span = &decoded.resource_spans[0].scope_spans[0].spans[0];
            assert_eq!(span.name, "deep");
            for attributes in [
                &span.attributes,
                &span.events[0].attributes,
                &span.links[0].attributes,
            ] {
                let value = attributes[0]
                    .value
                    .as_ref()
                    .unwrap()
                    .value
                    .as_ref()
                    .unwrap();
                assert_eq!(levels(value), CUT as usize);
            }
        }
    }

    #[test]
    fn malformed_input_keeps_the_decoders_own_error() {
        let garbage = [0x0a, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(
            protobuf::<ExportLogsServiceRequest>(&garbage).unwrap_err(),
            ExportLogsServiceRequest::decode(garbage.as_slice()).unwrap_err()
        );
        let brackets = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(json::<ExportLogsServiceRequest>(brackets.as_bytes()).is_err());
        assert!(json::<ExportLogsServiceRequest>(b"{\"resourceLogs\": [").is_err());
    }
}
