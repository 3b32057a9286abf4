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
    /// A time the protocol gives in nanoseconds (a record's timestamp, a span's start):
    /// taken as it is, without the unit check attributes get.
    Nanos(i64),
    List(Vec<Raw<'a>>),
    Pairs(Vec<(Cow<'a, str>, Raw<'a>)>),
    Id(Uuid),
}

impl Raw<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Raw::Str(_) => "string",
            Raw::Int(_) | Raw::Nanos(_) => "int",
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
            Raw::Int(i) | Raw::Nanos(i) => i.to_string(),
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

    /// Told when the record used a deprecated attribute name or value.
    fn deprecated(&self, _used: super::Deprecated) {}
}

/// A column's Rust type: converted from a [`Raw`] value, written and read as RowBinary.
pub trait FieldValue: Sized + Default {
    /// What values this type takes, for the data dictionary.
    const ACCEPTS: &'static str;

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
    const ACCEPTS: &'static str =
        "a string; an int, double or bool as its text (`502`, `1.5`, `true`)";

    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::Str(s) => Ok(s.into_owned()),
            Raw::Int(_) | Raw::Nanos(_) | Raw::Float(_) | Raw::Bool(_) | Raw::Id(_) => {
                Ok(raw.to_text())
            }
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
            other => Self::from_raw(other).map(|text| row_binary::put_str(out, &text)),
        }
    }
}

/// An integer from an int, a double rounded to the nearest integer (dynamic languages'
/// arithmetic makes doubles: `(t1 - t0) * 1000`) or a numeric string (OTLP/JSON and some
/// SDKs send numbers as strings).
fn whole_number(raw: &Raw<'_>) -> Result<i128, String> {
    match raw {
        Raw::Int(i) | Raw::Nanos(i) => Ok(i128::from(*i)),
        Raw::Float(f) if f.is_finite() && f.abs() < 1e30 => Ok(f.round() as i128),
        Raw::Float(f) => Err(format!("{f} is not a finite number")),
        Raw::Str(s) => match s.trim().parse::<i128>() {
            Ok(i) => Ok(i),
            Err(_) => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => whole_number(&Raw::Float(f)),
                _ => Err(format!("{s:?} is not a number")),
            },
        },
        other => Err(wrong("int", other)),
    }
}

macro_rules! unsigned_field {
    ($($t:ty => $max:literal),*) => {$(
        impl FieldValue for $t {
            const ACCEPTS: &'static str = concat!(
                "an int, a double rounded to the nearest integer (`1234.6` → 1235) or a numeric \
                 string (`\"502\"`), from 0 to ", $max, "; a negative or larger number is rejected"
            );

            fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
                let i = whole_number(&raw)?;
                <$t>::try_from(i).map_err(|_| {
                    format!("{i} is out of range for {} (0 to {})", stringify!($t), <$t>::MAX)
                })
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
unsigned_field!(u8 => "255", u16 => "65535", u32 => "4294967295", u64 => "18446744073709551615");

/// What each column type accepts (its [`FieldValue::ACCEPTS`]), for the data dictionary.
pub const COERCIONS: &[(&str, &str)] = &[
    ("String", String::ACCEPTS),
    ("UInt8", u8::ACCEPTS),
    ("UInt16", u16::ACCEPTS),
    ("UInt32", u32::ACCEPTS),
    ("Bool", bool::ACCEPTS),
    ("DateTime64(9, 'UTC')", Ts::ACCEPTS),
    ("Array(String)", Vec::<String>::ACCEPTS),
    ("Map(String, String)", Vec::<(String, String)>::ACCEPTS),
    ("UUID", RowId::ACCEPTS),
];

impl FieldValue for bool {
    const ACCEPTS: &'static str =
        "a bool, the strings `true`/`false` (any case), or the ints 0 and 1";

    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::Bool(b) => Ok(b),
            Raw::Str(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Raw::Str(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            Raw::Int(0) => Ok(false),
            Raw::Int(1) => Ok(true),
            Raw::Int(i) => Err(format!("{i} is not a bool (0 or 1)")),
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
    const ACCEPTS: &'static str =
        "an array whose items a String column accepts; a single scalar is an array of one";

    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::List(items) => items
                .into_iter()
                .map(|item| String::from_raw(item).map_err(|e| format!("array item: {e}")))
                .collect(),
            // A single id is a list of one.
            Raw::Str(_)
            | Raw::Int(_)
            | Raw::Nanos(_)
            | Raw::Float(_)
            | Raw::Bool(_)
            | Raw::Id(_) => String::from_raw(raw).map(|s| vec![s]),
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
    const ACCEPTS: &'static str = "the record's other attributes, each value as text";

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

/// Nanosecond times before this (1973-03-03) are taken for another unit: a time in
/// seconds, milliseconds or microseconds read as nanoseconds would be stored as 1970.
const EARLIEST_NANOS: i128 = 100_000_000_000_000_000;

/// The unit a too-small epoch time was most likely given in, by its magnitude.
fn likely_unit(value: i128) -> &'static str {
    match value.abs() {
        0..100_000_000_000 => "seconds",
        100_000_000_000..100_000_000_000_000 => "milliseconds",
        _ => "microseconds",
    }
}

impl Ts {
    /// Epoch nanoseconds, refusing a value in another unit (0 stays "unknown").
    fn from_nanos(value: i128) -> Result<Ts, String> {
        if value != 0 && value.abs() < EARLIEST_NANOS {
            return Err(format!(
                "{value} looks like Unix {}, not nanoseconds: send nanoseconds since the epoch \
                 or an ISO-8601 time such as \"2025-01-31T12:00:00Z\"",
                likely_unit(value)
            ));
        }
        i64::try_from(value)
            .map(Ts)
            .map_err(|_| format!("{value} is out of range for a time in nanoseconds"))
    }
}

impl FieldValue for Ts {
    const ACCEPTS: &'static str = "Unix nanoseconds (an int or a numeric string) \
        or an ISO-8601 / RFC 3339 time with its offset (`2025-01-31T12:00:00Z`); 0 means unknown. \
        A number too small to be nanoseconds (seconds, milliseconds, microseconds) is rejected \
        with the unit it looks like, never stored as 1970";

    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::Nanos(nanos) => Ok(Ts(nanos)),
            Raw::Str(s) if s.contains(['-', ':']) => time::OffsetDateTime::parse(
                s.trim(),
                &time::format_description::well_known::Rfc3339,
            )
            .map(Ts::from)
            .map_err(|e| format!("{s:?} is not an ISO-8601 time with an offset: {e}")),
            // A double cannot hold nanoseconds exactly: it is a time in seconds or an error.
            Raw::Float(f) => Err(format!(
                "{f} is a double: send a time as int nanoseconds or an ISO-8601 string{}",
                if f.abs() < 1e11 {
                    " (it looks like Unix seconds)"
                } else {
                    ""
                }
            )),
            other => Ts::from_nanos(whole_number(&other)?),
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
    const ACCEPTS: &'static str = "a UUID in text form (any version; UUIDv7 sorts by time)";

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
        assert!(u8::from_raw(Raw::Int(-1)).unwrap_err().contains("0 to 255"));
        assert_eq!(u8::from_raw(Raw::Str("3".into())), Ok(3));
        assert!(
            u32::from_raw(Raw::Bool(true))
                .unwrap_err()
                .contains("expected int")
        );
    }

    #[test]
    fn doubles_are_rounded_to_integers() {
        assert_eq!(u32::from_raw(Raw::Float(1234.0)), Ok(1234));
        assert_eq!(u32::from_raw(Raw::Float(87.6)), Ok(88));
        assert_eq!(u16::from_raw(Raw::Str("502.0".into())), Ok(502));
        assert!(
            u32::from_raw(Raw::Float(-3.0))
                .unwrap_err()
                .contains("out of range")
        );
        assert!(u32::from_raw(Raw::Float(f64::INFINITY)).is_err());
        assert!(
            u8::from_raw(Raw::Float(300.0))
                .unwrap_err()
                .contains("out of range")
        );
        assert!(u32::from_raw(Raw::Float(f64::NAN)).is_err());
    }

    #[test]
    fn scalars_become_strings_and_bools_take_ints() {
        assert_eq!(String::from_raw(Raw::Int(502)), Ok("502".into()));
        assert_eq!(String::from_raw(Raw::Bool(true)), Ok("true".into()));
        assert!(
            String::from_raw(Raw::List(vec![]))
                .unwrap_err()
                .contains("got array")
        );
        assert_eq!(bool::from_raw(Raw::Int(1)), Ok(true));
        assert_eq!(bool::from_raw(Raw::Str("FALSE".into())), Ok(false));
        assert!(bool::from_raw(Raw::Int(2)).is_err());
        assert_eq!(
            Vec::<String>::from_raw(Raw::List(vec![Raw::Int(7), Raw::Str("a".into())])),
            Ok(vec!["7".to_owned(), "a".to_owned()])
        );
    }

    #[test]
    fn time_from_nanos_and_iso_8601() {
        let nanos = 1_700_000_000_123_456_789;
        assert_eq!(Ts::from_raw(Raw::Int(nanos)), Ok(Ts(nanos)));
        assert_eq!(
            Ts::from_raw(Raw::Str(nanos.to_string().into())),
            Ok(Ts(nanos))
        );
        assert_eq!(Ts::from_raw(Raw::Int(0)), Ok(Ts(0)));
        assert_eq!(
            Ts::from_raw(Raw::Str("2023-11-14T22:13:20.123456789Z".into())),
            Ok(Ts(nanos))
        );
        assert_eq!(
            Ts::from_raw(Raw::Str("2023-11-14T23:13:20.123456789+01:00".into())),
            Ok(Ts(nanos))
        );
        assert!(Ts::from_raw(Raw::Str("2023-11-14T22:13:20".into())).is_err());
    }

    #[test]
    fn times_in_seconds_or_milliseconds_are_refused_with_their_unit() {
        for (value, unit) in [
            (Raw::Int(1_700_000_000), "seconds"),
            (Raw::Float(1_700_000_000.25), "seconds"),
            (Raw::Int(1_700_000_000_123), "milliseconds"),
            (Raw::Str("1700000000123".into()), "milliseconds"),
            (Raw::Int(1_700_000_000_123_456), "microseconds"),
        ] {
            let error = Ts::from_raw(value.clone()).unwrap_err();
            assert!(error.contains(unit), "{value:?}: {error}");
        }
        assert!(
            Ts::from_raw(Raw::Float(1.7e18))
                .unwrap_err()
                .contains("int nanoseconds")
        );
    }

    #[test]
    fn every_column_type_documents_its_coercions() {
        assert!(COERCIONS.iter().all(|(_, accepts)| !accepts.is_empty()));
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
        assert!(String::write_raw(Raw::List(vec![]), &mut direct).is_err());
    }
}
