//! OTLP `AnyValue`s as logbook's [`Raw`] values, as map-column strings, and ids as hex.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

use crate::schema::Raw;

/// A borrowed view of an `AnyValue`; `None` for an empty value.
pub fn any_to_raw(value: &AnyValue) -> Option<Raw<'_>> {
    Some(match value.value.as_ref()? {
        Value::StringValue(s) => Raw::Str(s.as_str().into()),
        Value::BoolValue(b) => Raw::Bool(*b),
        Value::IntValue(i) => Raw::Int(*i),
        Value::DoubleValue(d) => Raw::Float(*d),
        Value::BytesValue(b) => Raw::Str(hex_id(b).into()),
        Value::ArrayValue(array) => Raw::List(array.values.iter().filter_map(any_to_raw).collect()),
        Value::KvlistValue(list) => Raw::Pairs(
            list.values
                .iter()
                .filter_map(|kv| Some((kv.key.as_str().into(), any_to_raw(kv.value.as_ref()?)?)))
                .collect(),
        ),
        // Indexes into a profiles dictionary: meaningless in logs and spans.
        Value::StringValueStrindex(_) => return None,
    })
}

/// A value as the Collector's exporter writes it into a `Map(…, String)` or `Body`: strings
/// as they are, scalars as text, arrays and maps as JSON.
pub fn any_to_string(value: &AnyValue) -> String {
    match value.value.as_ref() {
        None | Some(Value::StringValueStrindex(_)) => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex_id(b),
        Some(_) => to_json(value).to_string(),
    }
}

fn to_json(value: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match value.value.as_ref() {
        None | Some(Value::StringValueStrindex(_)) => J::Null,
        Some(Value::StringValue(s)) => J::String(s.clone()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        Some(Value::DoubleValue(d)) => J::from(*d),
        Some(Value::BytesValue(b)) => J::String(hex_id(b)),
        Some(Value::ArrayValue(array)) => J::Array(array.values.iter().map(to_json).collect()),
        Some(Value::KvlistValue(list)) => J::Object(
            list.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map(to_json).unwrap_or(J::Null),
                    )
                })
                .collect(),
        ),
    }
}

/// Attributes moved into the pairs of a map column: keys and string values without a copy.
pub fn attributes_into_map(attributes: Vec<KeyValue>) -> Vec<(String, String)> {
    attributes
        .into_iter()
        .map(|kv| (kv.key, kv.value.map(any_into_string).unwrap_or_default()))
        .collect()
}

/// [`any_to_string`] of a value the caller gives up: a string value is moved, not copied.
pub fn any_into_string(value: AnyValue) -> String {
    match value.value {
        Some(Value::StringValue(s)) => s,
        _ => any_to_string(&value),
    }
}

/// Attributes as the `(key, value)` pairs of a `Map(LowCardinality(String), String)` column.
pub fn attributes_to_map(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| {
            let value = kv.value.as_ref().map(any_to_string).unwrap_or_default();
            (kv.key.clone(), value)
        })
        .collect()
}

/// Lowercase hex of a trace or span id; empty for an absent or all-zero id.
pub fn hex_id(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    if bytes.iter().all(|b| *b == 0) {
        return String::new();
    }
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.extend([DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]);
    }
    String::from_utf8(out).expect("hex digits are ASCII")
}
