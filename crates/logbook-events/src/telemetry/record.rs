//! A row of a log kind as an OpenTelemetry log record, derived from the kind's definition.
//!
//! The row is serialized (serde, as JSON values) and each column is written where its
//! [`Source`] says the router reads it back: an attribute by name, the body, severity, time,
//! trace context. Values keep the JSON type the router converts from (strings, ints, bools,
//! arrays of strings; `DateTime64` columns as int nanoseconds).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::logs::{AnyValue, LogRecord, Severity};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::schema::{LogKind, Presence, Source, severity_number, severity_text};

/// The attribute carrying the row's id, so a resent row keeps it.
const ROW_ID: &str = "logbook.id";

/// OpenTelemetry's severity numbers 1–24, in order.
const SEVERITIES: [Severity; 24] = {
    use Severity::*;
    [
        Trace, Trace2, Trace3, Trace4, Debug, Debug2, Debug3, Debug4, Info, Info2, Info3, Info4,
        Warn, Warn2, Warn3, Warn4, Error, Error2, Error3, Error4, Fatal, Fatal2, Fatal3, Fatal4,
    ]
};

/// Writes `row` into `record` by its kind's column sources. The trace context is the row's
/// own when it has a trace id, else `current`'s when that is valid. Service and environment
/// come from the resource, not the row. A kind without a body column gets its one-line
/// summary as body, and without a severity column the severity of its outcome, so typed
/// events read well in a log viewer.
pub(super) fn fill<T: LogKind>(
    row: &T,
    record: &mut impl LogRecord,
    current: &SpanContext,
) -> Result<(), serde_json::Error> {
    let table = T::TABLE;
    let fields = to_fields(row)?;
    if let Some(event) = table.event_name {
        record.set_event_name(event);
    }
    let (mut level, mut severity) = ("", 0);
    let mut has_body = false;
    let (mut time, mut trace_id, mut span_id) = (0, "", "");
    for column in table.all_columns() {
        let (Some(source), Some(value)) = (column.source, fields.get(column.name)) else {
            continue;
        };
        let optional = column.presence == Presence::Optional;
        match source {
            Source::Attr(name) => {
                if let Some(value) = attribute(value, optional) {
                    record.add_attribute(name, value);
                }
            }
            Source::Body => {
                has_body = true;
                if let Some(value) = attribute(value, optional) {
                    record.set_body(value);
                }
            }
            Source::SeverityText => level = value.as_str().unwrap_or_default(),
            Source::SeverityNumber => severity = value.as_i64().unwrap_or_default(),
            Source::Time => time = value.as_u64().unwrap_or_default(),
            Source::TraceId => trace_id = value.as_str().unwrap_or_default(),
            Source::SpanId => span_id = value.as_str().unwrap_or_default(),
            Source::RowId => {
                if let Some(id) = value.as_str()
                    && Uuid::parse_str(id).is_ok_and(|id| !id.is_nil())
                {
                    record.add_attribute(ROW_ID, id.to_owned());
                }
            }
            Source::OtherAttributes => {
                for pair in value.as_array().into_iter().flatten() {
                    if let Some([Value::String(key), Value::String(value)]) =
                        pair.as_array().map(Vec::as_slice)
                    {
                        record.add_attribute(key.clone(), value.clone());
                    }
                }
            }
            Source::ServiceName | Source::Environment => {}
        }
    }
    if !has_body {
        record.set_body(AnyValue::from(row.summary()));
    }
    // The router's own reading of severities: a number wins, else the level's name; a kind
    // without either is as severe as its outcome.
    let number = i32::try_from(severity).unwrap_or_default();
    let number = severity_number(number, level).unwrap_or_else(|| row.severity());
    if let Some(&severity) = usize::from(number)
        .checked_sub(1)
        .and_then(|i| SEVERITIES.get(i))
    {
        record.set_severity_number(severity);
        // The text SDKs send with the number (`WARN`, not `warning`).
        record.set_severity_text(severity_text(number));
    }
    let now = SystemTime::now();
    record.set_observed_timestamp(now);
    record.set_timestamp(match time {
        0 => now,
        nanos => UNIX_EPOCH + Duration::from_nanos(nanos),
    });
    match TraceId::from_hex(trace_id) {
        Ok(trace) if trace != TraceId::INVALID => {
            let span = SpanId::from_hex(span_id).unwrap_or(SpanId::INVALID);
            record.set_trace_context(trace, span, Some(TraceFlags::SAMPLED));
        }
        _ if current.is_valid() => record.set_trace_context(
            current.trace_id(),
            current.span_id(),
            Some(current.trace_flags()),
        ),
        _ => {}
    }
    Ok(())
}

/// The row's columns by name.
fn to_fields<T: LogKind>(row: &T) -> Result<Map<String, Value>, serde_json::Error> {
    serde_json::from_value(serde_json::to_value(row)?)
}

/// A column value as the attribute the router converts from; `None` for an empty optional.
fn attribute(value: &Value, optional: bool) -> Option<AnyValue> {
    let keep = |empty: bool| !(optional && empty);
    match value {
        Value::String(s) => keep(s.is_empty()).then(|| AnyValue::from(s.clone())),
        Value::Bool(b) => keep(!b).then_some(AnyValue::Boolean(*b)),
        Value::Number(n) => {
            let value = match n.as_i64() {
                Some(i) => AnyValue::Int(i),
                None => AnyValue::Double(n.as_f64()?),
            };
            keep(n.as_f64() == Some(0.0)).then_some(value)
        }
        Value::Array(items) => keep(items.is_empty()).then(|| {
            AnyValue::ListAny(Box::new(
                items.iter().filter_map(|i| attribute(i, false)).collect(),
            ))
        }),
        Value::Null | Value::Object(_) => None,
    }
}
