//! OTLP values as logbook's [`Raw`] values, as map-column text, and ids as hex.

use std::borrow::Cow;

use crate::ingest::decode::{AnyValue, KeyValue};
use crate::schema::Raw;
use crate::schema::hex::HexId;
use crate::schema::row_binary::{put_str, put_varint};

/// A borrowed view of a value; `None` for an empty value.
pub fn any_to_raw<'a>(value: &AnyValue<'a>) -> Option<Raw<'a>> {
    Some(match value {
        AnyValue::String(s) => Raw::Str(Cow::Borrowed(s)),
        AnyValue::Bool(b) => Raw::Bool(*b),
        AnyValue::Int(i) => Raw::Int(*i),
        AnyValue::Double(d) => Raw::Float(*d),
        AnyValue::Bytes(b) => Raw::Str(hex_id(b).into()),
        AnyValue::Array(values) => Raw::List(values.iter().filter_map(any_to_raw).collect()),
        AnyValue::Kvlist(pairs) => Raw::Pairs(
            pairs
                .iter()
                .filter_map(|kv| Some((Cow::Borrowed(kv.key), any_to_raw(&kv.value)?)))
                .collect(),
        ),
        // Indexes into a profiles dictionary: meaningless in logs and spans.
        AnyValue::Empty | AnyValue::StringIndex(_) => return None,
    })
}

/// A value as the Collector's exporter writes it into a `Map(…, String)` or `Body`: strings
/// as they are, scalars as text, arrays and maps as JSON.
pub fn any_to_text<'a>(value: &AnyValue<'a>) -> Cow<'a, str> {
    match value {
        AnyValue::Empty | AnyValue::StringIndex(_) => Cow::Borrowed(""),
        AnyValue::String(s) => Cow::Borrowed(s),
        AnyValue::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        AnyValue::Int(i) => i.to_string().into(),
        AnyValue::Double(d) => d.to_string().into(),
        AnyValue::Bytes(b) => hex_id(b).into(),
        AnyValue::Array(_) | AnyValue::Kvlist(_) => to_json(value).to_string().into(),
    }
}

fn to_json(value: &AnyValue<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        AnyValue::Empty | AnyValue::StringIndex(_) => J::Null,
        AnyValue::String(s) => J::String((*s).to_owned()),
        AnyValue::Bool(b) => J::Bool(*b),
        AnyValue::Int(i) => J::from(*i),
        AnyValue::Double(d) => J::from(*d),
        AnyValue::Bytes(b) => J::String(hex_id(b)),
        AnyValue::Array(values) => J::Array(values.iter().map(to_json).collect()),
        AnyValue::Kvlist(pairs) => J::Object(
            pairs
                .iter()
                .map(|kv| (kv.key.to_owned(), to_json(&kv.value)))
                .collect(),
        ),
    }
}

/// Attributes as a `Map(LowCardinality(String), String)` value in RowBinary.
pub fn put_attributes(out: &mut Vec<u8>, attributes: &[KeyValue<'_>]) {
    put_varint(out, attributes.len() as u64);
    for kv in attributes {
        put_str(out, kv.key);
        put_text(out, &kv.value);
    }
}

/// Attributes as [`put_attributes`] writes them, plus `extra` pairs (logbook's own notes on
/// the record). Attributes the sender gave the same names are left out.
pub fn put_attributes_and(
    out: &mut Vec<u8>,
    attributes: &[KeyValue<'_>],
    extra: &[(&str, String)],
) {
    if extra.is_empty() {
        return put_attributes(out, attributes);
    }
    let kept = || {
        attributes
            .iter()
            .filter(|kv| !extra.iter().any(|(key, _)| *key == kv.key))
    };
    put_varint(out, (kept().count() + extra.len()) as u64);
    for kv in kept() {
        put_str(out, kv.key);
        put_text(out, &kv.value);
    }
    for (key, value) in extra {
        put_str(out, key);
        put_str(out, value);
    }
}

/// [`any_to_text`] as a RowBinary `String`; strings and integers (most values) without an
/// intermediate `String`.
pub fn put_text(out: &mut Vec<u8>, value: &AnyValue<'_>) {
    match value {
        AnyValue::String(s) => put_str(out, s),
        AnyValue::Int(i) => {
            let mut digits = [0u8; 20];
            let mut rest = i.unsigned_abs();
            let mut start = digits.len();
            loop {
                start -= 1;
                digits[start] = b'0' + (rest % 10) as u8;
                rest /= 10;
                if rest == 0 {
                    break;
                }
            }
            let sign: &[u8] = if *i < 0 { b"-" } else { b"" };
            put_varint(out, (sign.len() + digits.len() - start) as u64);
            out.extend_from_slice(sign);
            out.extend_from_slice(&digits[start..]);
        }
        other => put_str(out, &any_to_text(other)),
    }
}

/// Lowercase hex of a trace or span id or bytes value; empty for an absent or all-zero id.
fn hex_id(bytes: &[u8]) -> String {
    HexId::new(bytes).as_str().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_written_as_the_collector_formats_it() {
        let values = [
            AnyValue::Int(0),
            AnyValue::Int(-42),
            AnyValue::Int(i64::MIN),
            AnyValue::Int(i64::MAX),
            AnyValue::String("s"),
            AnyValue::Double(1.5),
            AnyValue::Bool(false),
            AnyValue::Empty,
        ];
        for value in values {
            let (mut direct, mut via_text) = (Vec::new(), Vec::new());
            put_text(&mut direct, &value);
            put_str(&mut via_text, &any_to_text(&value));
            assert_eq!(direct, via_text, "{value:?}");
        }
        assert_eq!(
            any_to_text(&AnyValue::Int(i64::MIN)),
            "-9223372036854775808"
        );
    }
}
