//! The values a router hands to a log kind, and how each column type takes one.
//!
//! The router turns an OTLP record into [`Raw`] values looked up by [`Source`]; a kind's
//! generated `encode_record` converts each with [`FieldValue`] straight into RowBinary, so a
//! wrong type is a named rejection rather than a silently empty column.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::row_binary::{self, read};

/// Where a column's value comes from in an OTLP log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A record attribute (falling back to the resource's attributes), by name.
    Attr(&'static str),
    /// The record's body.
    Body,
    /// The record's severity text (or the text of its severity number when empty).
    SeverityText,
    /// The record's severity number (1–24, OpenTelemetry's scale).
    SeverityNumber,
    /// The record's timestamp (its observed time when the timestamp is unset).
    Time,
    /// The resource's `service.name`.
    ServiceName,
    /// The resource's `deployment.environment.name` (or the older `deployment.environment`).
    Environment,
    /// The record's trace id, as hex.
    TraceId,
    /// The record's span id, as hex.
    SpanId,
    /// `logbook.id` when the sender set one, else an id derived from the record's position
    /// in the durable queue, so a replayed record keeps its id.
    RowId,
    /// Every record attribute not mapped to a column, as strings.
    OtherAttributes,
}

/// Attribute name lookup shorthand for kind definitions.
pub const fn attr(name: &'static str) -> Source {
    Source::Attr(name)
}

/// A value taken from a record, before conversion to a column type.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Raw<'a>>),
    Pairs(Vec<(Cow<'a, str>, Raw<'a>)>),
    Id(Uuid),
}

impl Raw<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Raw::Str(_) => "string",
            Raw::Int(_) => "int",
            Raw::Float(_) => "double",
            Raw::Bool(_) => "bool",
            Raw::List(_) => "array",
            Raw::Pairs(_) => "map",
            Raw::Id(_) => "id",
        }
    }

    /// A scalar rendered as text, for map columns that keep attributes as strings.
    pub fn to_text(&self) -> String {
        match self {
            Raw::Str(s) => s.to_string(),
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => f.to_string(),
            Raw::Bool(b) => b.to_string(),
            Raw::Id(id) => id.to_string(),
            Raw::List(items) => {
                let parts: Vec<_> = items.iter().map(Raw::to_text).collect();
                format!("[{}]", parts.join(","))
            }
            Raw::Pairs(pairs) => {
                let parts: Vec<_> = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.to_text()))
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
        }
    }
}

/// What a record offers to a kind's `encode_record`.
pub trait RecordView {
    fn get(&self, source: Source) -> Option<Raw<'_>>;
}

/// A column's Rust type: converted from a [`Raw`] value, written and read as RowBinary.
pub trait FieldValue: Sized + Default {
    fn from_raw(raw: Raw<'_>) -> Result<Self, String>;

    fn write(&self, out: &mut Vec<u8>);

    fn read(input: &mut &[u8]) -> Option<Self>;

    /// Writes a [`Raw`] value as this type; strings override it to skip the owned copy.
    fn write_raw(raw: Raw<'_>, out: &mut Vec<u8>) -> Result<(), String> {
        Self::from_raw(raw).map(|value| value.write(out))
    }
}

fn wrong(expected: &str, got: &Raw<'_>) -> String {
    format!("expected {expected}, got {}", got.type_name())
}

impl FieldValue for String {
    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::Str(s) => Ok(s.into_owned()),
            other => Err(wrong("string", &other)),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        row_binary::put_str(out, self);
    }

    fn read(input: &mut &[u8]) -> Option<Self> {
        read::str(input).map(str::to_owned)
    }

    fn write_raw(raw: Raw<'_>, out: &mut Vec<u8>) -> Result<(), String> {
        match raw {
            Raw::Str(s) => {
                row_binary::put_str(out, &s);
                Ok(())
            }
            other => Err(wrong("string", &other)),
        }
    }
}

macro_rules! unsigned_field {
    ($($t:ty),*) => {$(
        impl FieldValue for $t {
            fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
                match raw {
                    Raw::Int(i) => <$t>::try_from(i)
                        .map_err(|_| format!("{i} is out of range for {}", stringify!($t))),
                    // OTLP/JSON and some SDKs send numbers as strings.
                    Raw::Str(s) => s.trim().parse().map_err(|_| format!("{s:?} is not a number")),
                    other => Err(wrong("int", &other)),
                }
            }

            fn write(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }

            fn read(input: &mut &[u8]) -> Option<Self> {
                read::array(input).map(<$t>::from_le_bytes)
            }
        }
    )*};
}
unsigned_field!(u8, u16, u32, u64);

impl FieldValue for bool {
    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::Bool(b) => Ok(b),
            Raw::Str(s) if s == "true" || s == "false" => Ok(s == "true"),
            other => Err(wrong("bool", &other)),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }

    fn read(input: &mut &[u8]) -> Option<Self> {
        read::array::<1>(input).map(|[b]| b != 0)
    }
}

impl FieldValue for Vec<String> {
    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::List(items) => items
                .into_iter()
                .map(|item| match item {
                    Raw::Str(s) => Ok(s.into_owned()),
                    Raw::Int(i) => Ok(i.to_string()),
                    other => Err(wrong("array of strings", &other)),
                })
                .collect(),
            // A single id is a list of one.
            Raw::Str(s) => Ok(vec![s.into_owned()]),
            other => Err(wrong("array", &other)),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        row_binary::put_varint(out, self.len() as u64);
        for item in self {
            row_binary::put_str(out, item);
        }
    }

    fn read(input: &mut &[u8]) -> Option<Self> {
        let len = read::varint(input)?;
        (0..len).map(|_| String::read(input)).collect()
    }
}

impl FieldValue for Vec<(String, String)> {
    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::Pairs(pairs) => Ok(pairs
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.to_text()))
                .collect()),
            other => Err(wrong("map", &other)),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        row_binary::put_varint(out, self.len() as u64);
        for (key, value) in self {
            row_binary::put_str(out, key);
            row_binary::put_str(out, value);
        }
    }

    fn read(input: &mut &[u8]) -> Option<Self> {
        let len = read::varint(input)?;
        (0..len)
            .map(|_| Some((String::read(input)?, String::read(input)?)))
            .collect()
    }

    fn write_raw(raw: Raw<'_>, out: &mut Vec<u8>) -> Result<(), String> {
        let Raw::Pairs(pairs) = raw else {
            return Err(wrong("map", &raw));
        };
        row_binary::put_varint(out, pairs.len() as u64);
        for (key, value) in pairs {
            row_binary::put_str(out, &key);
            match value {
                Raw::Str(s) => row_binary::put_str(out, &s),
                other => row_binary::put_str(out, &other.to_text()),
            }
        }
        Ok(())
    }
}

/// Nanoseconds since the Unix epoch, stored as `DateTime64(9, 'UTC')`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ts(pub i64);

impl Ts {
    pub fn now() -> Ts {
        Ts::from(time::OffsetDateTime::now_utc())
    }
}

impl From<time::OffsetDateTime> for Ts {
    fn from(t: time::OffsetDateTime) -> Ts {
        Ts(i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX))
    }
}

impl FieldValue for Ts {
    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::Int(ns) => Ok(Ts(ns)),
            Raw::Str(s) => {
                time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                    .map(Ts::from)
                    .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
            }
            other => Err(wrong("time", &other)),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }

    fn read(input: &mut &[u8]) -> Option<Self> {
        read::array(input).map(|b| Ts(i64::from_le_bytes(b)))
    }
}

/// A row's unique id, stored as `UUID` (v7, so ids sort by time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RowId(pub Uuid);

/// Text in human-readable formats; in binary ones the two u64 halves, as ClickHouse's
/// RowBinary `UUID` (and the `clickhouse` crate) lay it out.
impl Serialize for RowId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            self.0.to_string().serialize(s)
        } else {
            self.0.as_u64_pair().serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for RowId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text: &str = Deserialize::deserialize(d)?;
            Uuid::parse_str(text)
                .map(RowId)
                .map_err(serde::de::Error::custom)
        } else {
            let (high, low): (u64, u64) = Deserialize::deserialize(d)?;
            Ok(RowId(Uuid::from_u64_pair(high, low)))
        }
    }
}

impl FieldValue for RowId {
    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::Id(id) => Ok(RowId(id)),
            Raw::Str(s) => Uuid::parse_str(&s)
                .map(RowId)
                .map_err(|e| format!("{s:?} is not a UUID: {e}")),
            other => Err(wrong("UUID", &other)),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        row_binary::put_uuid(out, &self.0);
    }

    fn read(input: &mut &[u8]) -> Option<Self> {
        let high = u64::from_le_bytes(read::array(input)?);
        let low = u64::from_le_bytes(read::array(input)?);
        Some(RowId(Uuid::from_u64_pair(high, low)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_range_checked() {
        assert_eq!(u16::from_raw(Raw::Int(404)), Ok(404));
        assert!(
            u16::from_raw(Raw::Int(70000))
                .unwrap_err()
                .contains("out of range")
        );
        assert_eq!(u8::from_raw(Raw::Str("3".into())), Ok(3));
        assert!(
            u32::from_raw(Raw::Bool(true))
                .unwrap_err()
                .contains("expected int")
        );
    }

    #[test]
    fn strings_refuse_other_types() {
        assert!(
            String::from_raw(Raw::Int(1))
                .unwrap_err()
                .contains("got int")
        );
    }

    #[test]
    fn time_from_nanos_and_rfc3339() {
        assert_eq!(Ts::from_raw(Raw::Int(5)), Ok(Ts(5)));
        assert_eq!(
            Ts::from_raw(Raw::Str("1970-01-01T00:00:01Z".into())),
            Ok(Ts(1_000_000_000))
        );
    }

    #[test]
    fn maps_keep_scalars_as_text() {
        let raw = Raw::Pairs(vec![
            ("a".into(), Raw::Int(1)),
            ("b".into(), Raw::Bool(true)),
        ]);
        assert_eq!(
            Vec::<(String, String)>::from_raw(raw).unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "true".into())]
        );
    }

    #[test]
    fn every_field_type_reads_back_what_it_writes() {
        fn round_trip<T: FieldValue + PartialEq + std::fmt::Debug>(value: T) {
            let mut out = Vec::new();
            value.write(&mut out);
            let mut input = out.as_slice();
            assert_eq!(T::read(&mut input), Some(value));
            assert!(input.is_empty());
            // Cut short, it is not read at all.
            assert_eq!(T::read(&mut &out[..out.len() - 1]), None);
        }
        round_trip("héllo".to_owned());
        round_trip(200u8);
        round_trip(65_000u16);
        round_trip(4_000_000_000u32);
        round_trip(u64::MAX);
        round_trip(true);
        round_trip(vec!["a".to_owned(), String::new()]);
        round_trip(vec![("k".to_owned(), "v".to_owned())]);
        round_trip(Ts(-5));
        round_trip(RowId(Uuid::now_v7()));
    }

    #[test]
    fn raw_values_write_like_their_converted_type() {
        let mut direct = Vec::new();
        String::write_raw(Raw::Str("x".into()), &mut direct).unwrap();
        Vec::<(String, String)>::write_raw(
            Raw::Pairs(vec![("n".into(), Raw::Int(3))]),
            &mut direct,
        )
        .unwrap();
        let mut converted = Vec::new();
        "x".to_owned().write(&mut converted);
        vec![("n".to_owned(), "3".to_owned())].write(&mut converted);
        assert_eq!(direct, converted);
        assert!(String::write_raw(Raw::Int(1), &mut direct).is_err());
    }
}
