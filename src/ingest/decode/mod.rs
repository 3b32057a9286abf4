//! Zero-copy decoding of queued OTLP protobuf requests: every string and byte field borrows from
//! the input buffer, where prost's generated types copy each one into its own `String`/`Vec`.
//! It reads only the subset of OTLP logs and traces the router uses and skips unknown fields;
//! known fields it does not keep are still checked, so it rejects whatever prost rejects.

/// Why a buffer is not a well-formed OTLP request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed OTLP protobuf: {0}")]
pub struct DecodeError(&'static str);

const TRUNCATED_VARINT: DecodeError = DecodeError("truncated varint");
const VARINT_OVERFLOW: DecodeError = DecodeError("varint longer than 64 bits");
const INVALID_KEY: DecodeError = DecodeError("invalid field key");
const PAST_END: DecodeError = DecodeError("field length past the end");
const TRUNCATED_FIXED: DecodeError = DecodeError("truncated fixed-width field");
const INVALID_UTF8: DecodeError = DecodeError("invalid UTF-8");
const TOO_DEEP: DecodeError = DecodeError("nesting too deep");
/// Groups (wire types 3 and 4): deprecated, never produced by OTLP encoders.
const UNSUPPORTED_WIRE_TYPE: DecodeError = DecodeError("unsupported wire type");
const INVALID_WIRE_TYPE: DecodeError = DecodeError("invalid wire type");
const UNEXPECTED_WIRE_TYPE: DecodeError = DecodeError("unexpected wire type for a known field");

/// How many arrays and key-value lists may nest inside one another, like prost's recursion limit.
const MAX_NESTING: u32 = 100;

const VARINT: u32 = 0;
const I64: u32 = 1;
const LEN: u32 = 2;
const I32: u32 = 5;

/// An attribute value, or a log body. `Empty` when the value is absent or its oneof unset.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum AnyValue<'a> {
    #[default]
    Empty,
    String(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    Array(Vec<AnyValue<'a>>),
    Kvlist(Vec<KeyValue<'a>>),
    /// `string_value_strindex`: used by profiles only.
    StringIndex(i32),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeyValue<'a> {
    pub key: &'a str,
    pub value: AnyValue<'a>,
}

/// An `InstrumentationScope`; the default when absent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scope<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub attributes: Vec<KeyValue<'a>>,
}

/// `ExportLogsServiceRequest`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogsRequest<'a> {
    pub resource_logs: Vec<ResourceLogs<'a>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceLogs<'a> {
    /// The resource's attributes; empty when the resource is absent.
    pub resource: Vec<KeyValue<'a>>,
    pub scope_logs: Vec<ScopeLogs<'a>>,
    pub schema_url: &'a str,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScopeLogs<'a> {
    pub scope: Scope<'a>,
    pub log_records: Vec<LogRecord<'a>>,
    pub schema_url: &'a str,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogRecord<'a> {
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub severity_number: i32,
    pub severity_text: &'a str,
    pub body: AnyValue<'a>,
    pub attributes: Vec<KeyValue<'a>>,
    pub flags: u32,
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub event_name: &'a str,
}

/// `ExportTraceServiceRequest`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TracesRequest<'a> {
    pub resource_spans: Vec<ResourceSpans<'a>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceSpans<'a> {
    /// The resource's attributes; empty when the resource is absent.
    pub resource: Vec<KeyValue<'a>>,
    pub scope_spans: Vec<ScopeSpans<'a>>,
    pub schema_url: &'a str,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScopeSpans<'a> {
    pub scope: Scope<'a>,
    pub spans: Vec<Span<'a>>,
    pub schema_url: &'a str,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Span<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub trace_state: &'a str,
    pub parent_span_id: &'a [u8],
    pub flags: u32,
    pub name: &'a str,
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub attributes: Vec<KeyValue<'a>>,
    pub events: Vec<Event<'a>>,
    pub links: Vec<Link<'a>>,
    /// The default (code 0, empty message) when absent.
    pub status: Status<'a>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event<'a> {
    pub time_unix_nano: u64,
    pub name: &'a str,
    pub attributes: Vec<KeyValue<'a>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Link<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub trace_state: &'a str,
    pub attributes: Vec<KeyValue<'a>>,
    pub flags: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status<'a> {
    pub message: &'a str,
    pub code: i32,
}

impl<'a> LogsRequest<'a> {
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut request = LogsRequest::default();
        let mut r = Reader::new(bytes);
        while let Some(key) = r.key()? {
            match split(key) {
                (1, LEN) => push(&mut request.resource_logs, &mut r, key, merge_resource_logs)?,
                (1, _) => return Err(UNEXPECTED_WIRE_TYPE),
                _ => r.skip(key)?,
            }
        }
        Ok(request)
    }
}

impl<'a> TracesRequest<'a> {
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut request = TracesRequest::default();
        let mut r = Reader::new(bytes);
        while let Some(key) = r.key()? {
            match split(key) {
                (1, LEN) => push(
                    &mut request.resource_spans,
                    &mut r,
                    key,
                    merge_resource_spans,
                )?,
                (1, _) => return Err(UNEXPECTED_WIRE_TYPE),
                _ => r.skip(key)?,
            }
        }
        Ok(request)
    }
}

/// A field key as (field number, wire type).
#[inline]
fn split(key: u32) -> (u32, u32) {
    (key >> 3, key & 7)
}

/// A cursor over the body of one message.
struct Reader<'a> {
    buf: &'a [u8],
    /// All of the message body as text, when it is valid UTF-8: string fields are then sliced
    /// from it rather than validated one by one. `buf` is always a suffix of its bytes.
    text: Option<&'a str>,
}

impl<'a> Reader<'a> {
    #[inline]
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, text: None }
    }

    /// A reader of `text`'s bytes that takes its string fields from `text`.
    #[inline]
    fn text(text: &'a str) -> Self {
        Reader {
            buf: text.as_bytes(),
            text: Some(text),
        }
    }

    /// The next field's key, or `None` at the end of the message.
    #[inline]
    fn key(&mut self) -> Result<Option<u32>, DecodeError> {
        match self.buf.split_first() {
            None => Ok(None),
            // One byte: fields 1 to 15; field number 0 is invalid.
            Some((&byte @ 8..0x80, rest)) => {
                self.buf = rest;
                Ok(Some(u32::from(byte)))
            }
            Some(_) => self.key_slow().map(Some),
        }
    }

    #[inline(never)]
    fn key_slow(&mut self) -> Result<u32, DecodeError> {
        let key = u32::try_from(self.varint()?).map_err(|_| INVALID_KEY)?;
        if key >> 3 == 0 {
            return Err(INVALID_KEY);
        }
        Ok(key)
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        if let Some((&byte, rest)) = self.buf.split_first()
            && byte < 0x80
        {
            self.buf = rest;
            return Ok(u64::from(byte));
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                // The tenth byte holds only bit 63.
                if i == 9 && byte > 1 {
                    return Err(VARINT_OVERFLOW);
                }
                self.buf = self.buf.get(i + 1..).ok_or(TRUNCATED_VARINT)?;
                return Ok(value);
            }
        }
        Err(if self.buf.len() >= 10 {
            VARINT_OVERFLOW
        } else {
            TRUNCATED_VARINT
        })
    }

    #[inline]
    fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let (head, rest) = self.buf.split_first_chunk::<8>().ok_or(TRUNCATED_FIXED)?;
        self.buf = rest;
        Ok(u64::from_le_bytes(*head))
    }

    #[inline]
    fn fixed32(&mut self) -> Result<u32, DecodeError> {
        let (head, rest) = self.buf.split_first_chunk::<4>().ok_or(TRUNCATED_FIXED)?;
        self.buf = rest;
        Ok(u32::from_le_bytes(*head))
    }

    /// A length-delimited field's contents.
    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(self.varint()?).map_err(|_| PAST_END)?;
        let (head, rest) = self.buf.split_at_checked(len).ok_or(PAST_END)?;
        self.buf = rest;
        Ok(head)
    }

    #[inline]
    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let (bytes, text) = self.bytes_and_text()?;
        match text {
            Some(text) => Ok(text),
            None => std::str::from_utf8(bytes).map_err(|_| INVALID_UTF8),
        }
    }

    /// A length-delimited field's contents, and the same as text if the whole message is text
    /// and the field starts and ends on character boundaries.
    #[inline]
    fn bytes_and_text(&mut self) -> Result<(&'a [u8], Option<&'a str>), DecodeError> {
        let bytes = self.bytes()?;
        let text = self.text.and_then(|text| {
            // `bytes` ends where the rest of the buffer starts.
            let end = text.len().checked_sub(self.buf.len())?;
            text.get(end.checked_sub(bytes.len())?..end)
        });
        Ok((bytes, text))
    }

    /// Skips a field that the message does not define (callers reject known fields with the
    /// wrong wire type before calling this).
    #[inline(never)]
    fn skip(&mut self, key: u32) -> Result<(), DecodeError> {
        match key & 7 {
            VARINT => self.varint().map(drop),
            I64 => self.fixed64().map(drop),
            LEN => self.bytes().map(drop),
            I32 => self.fixed32().map(drop),
            3 | 4 => Err(UNSUPPORTED_WIRE_TYPE),
            _ => Err(INVALID_WIRE_TYPE),
        }
    }
}

/// Appends a default `T` to `values` and merges the length-delimited field at `r` (whose key
/// was `key`) into it with `merge`: decoding in place saves moving every element, and
/// `resize_with` builds the default in place where `push` would copy it from the stack. When
/// `values` is full, first reserves room for the whole run of fields with this key that starts
/// here (encoders write a repeated field's elements together), so that a Vec is allocated once
/// rather than grown 4, 8, 16...
#[inline(always)]
fn push<'a, T: Default>(
    values: &mut Vec<T>,
    r: &mut Reader<'a>,
    key: u32,
    merge: impl FnOnce(&mut T, &'a [u8]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    if values.len() == values.capacity() {
        values.reserve(run_len(r.buf, key));
    }
    let body = r.bytes()?;
    values.resize_with(values.len() + 1, T::default);
    match values.last_mut() {
        Some(value) => merge(value, body),
        None => Ok(()),
    }
}

/// How many length-delimited fields with key `key` follow one another from `rest`, which starts
/// with the first one's length, just after its key. Only a capacity hint: at least 1, at most
/// `rest.len()`; it stops at anything malformed.
#[inline(never)]
fn run_len(mut rest: &[u8], key: u32) -> usize {
    let Ok(key) = u8::try_from(key) else {
        return 1;
    };
    let mut n = 1;
    loop {
        let mut r = Reader::new(rest);
        if r.bytes().is_err() {
            return n;
        }
        match r.buf.split_first() {
            Some((&next, tail)) if next == key => {
                rest = tail;
                n += 1;
            }
            _ => return n,
        }
    }
}

fn merge_resource_logs<'a>(out: &mut ResourceLogs<'a>, body: &'a [u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    while let Some(key) = r.key()? {
        match split(key) {
            (1, LEN) => merge_resource(&mut out.resource, r.bytes()?)?,
            (2, LEN) => push(&mut out.scope_logs, &mut r, key, merge_scope_logs)?,
            (3, LEN) => out.schema_url = r.str()?,
            (1..=3, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

fn merge_scope_logs<'a>(out: &mut ScopeLogs<'a>, body: &'a [u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    while let Some(key) = r.key()? {
        match split(key) {
            (1, LEN) => merge_scope(&mut out.scope, r.bytes()?)?,
            (2, LEN) => push(&mut out.log_records, &mut r, key, merge_log_record)?,
            (3, LEN) => out.schema_url = r.str()?,
            (1..=3, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

fn merge_log_record<'a>(out: &mut LogRecord<'a>, body: &'a [u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    while let Some(key) = r.key()? {
        match split(key) {
            (1, I64) => out.time_unix_nano = r.fixed64()?,
            (2, VARINT) => out.severity_number = r.varint()? as i32,
            (3, LEN) => out.severity_text = r.str()?,
            (5, LEN) => merge_any_value(&mut out.body, r.bytes()?, None, 0)?,
            (6, LEN) => push(&mut out.attributes, &mut r, key, merge_key_value_top)?,
            // dropped_attributes_count
            (7, VARINT) => _ = r.varint()?,
            (8, I32) => out.flags = r.fixed32()?,
            (9, LEN) => out.trace_id = r.bytes()?,
            (10, LEN) => out.span_id = r.bytes()?,
            (11, I64) => out.observed_time_unix_nano = r.fixed64()?,
            (12, LEN) => out.event_name = r.str()?,
            // Field 4 is reserved, so skipped like any unknown field.
            (1..=3 | 5..=12, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

fn merge_resource_spans<'a>(
    out: &mut ResourceSpans<'a>,
    body: &'a [u8],
) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    while let Some(key) = r.key()? {
        match split(key) {
            (1, LEN) => merge_resource(&mut out.resource, r.bytes()?)?,
            (2, LEN) => push(&mut out.scope_spans, &mut r, key, merge_scope_spans)?,
            (3, LEN) => out.schema_url = r.str()?,
            (1..=3, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

fn merge_scope_spans<'a>(out: &mut ScopeSpans<'a>, body: &'a [u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    while let Some(key) = r.key()? {
        match split(key) {
            (1, LEN) => merge_scope(&mut out.scope, r.bytes()?)?,
            (2, LEN) => push(&mut out.spans, &mut r, key, merge_span)?,
            (3, LEN) => out.schema_url = r.str()?,
            (1..=3, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

fn merge_span<'a>(out: &mut Span<'a>, body: &'a [u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    while let Some(key) = r.key()? {
        match split(key) {
            (1, LEN) => out.trace_id = r.bytes()?,
            (2, LEN) => out.span_id = r.bytes()?,
            (3, LEN) => out.trace_state = r.str()?,
            (4, LEN) => out.parent_span_id = r.bytes()?,
            (5, LEN) => out.name = r.str()?,
            (6, VARINT) => out.kind = r.varint()? as i32,
            (7, I64) => out.start_time_unix_nano = r.fixed64()?,
            (8, I64) => out.end_time_unix_nano = r.fixed64()?,
            (9, LEN) => push(&mut out.attributes, &mut r, key, merge_key_value_top)?,
            (11, LEN) => push(&mut out.events, &mut r, key, merge_event)?,
            (13, LEN) => push(&mut out.links, &mut r, key, merge_link)?,
            (15, LEN) => merge_status(&mut out.status, r.bytes()?)?,
            (16, I32) => out.flags = r.fixed32()?,
            // dropped_attributes_count, dropped_events_count, dropped_links_count
            (10 | 12 | 14, VARINT) => _ = r.varint()?,
            (1..=16, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

fn merge_event<'a>(out: &mut Event<'a>, body: &'a [u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    while let Some(key) = r.key()? {
        match split(key) {
            (1, I64) => out.time_unix_nano = r.fixed64()?,
            (2, LEN) => out.name = r.str()?,
            (3, LEN) => push(&mut out.attributes, &mut r, key, merge_key_value_top)?,
            // dropped_attributes_count
            (4, VARINT) => _ = r.varint()?,
            (1..=4, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

fn merge_link<'a>(out: &mut Link<'a>, body: &'a [u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    while let Some(key) = r.key()? {
        match split(key) {
            (1, LEN) => out.trace_id = r.bytes()?,
            (2, LEN) => out.span_id = r.bytes()?,
            (3, LEN) => out.trace_state = r.str()?,
            (4, LEN) => push(&mut out.attributes, &mut r, key, merge_key_value_top)?,
            // dropped_attributes_count
            (5, VARINT) => _ = r.varint()?,
            (6, I32) => out.flags = r.fixed32()?,
            (1..=6, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

/// Merges a `Status` into `out`, as protobuf merges a singular message seen twice.
fn merge_status<'a>(out: &mut Status<'a>, body: &'a [u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    while let Some(key) = r.key()? {
        match split(key) {
            // Field 1 is reserved, so skipped like any unknown field.
            (2, LEN) => out.message = r.str()?,
            (3, VARINT) => out.code = r.varint()? as i32,
            (2..=3, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

/// Merges a `Resource`'s attributes into `attributes`.
fn merge_resource<'a>(
    attributes: &mut Vec<KeyValue<'a>>,
    body: &'a [u8],
) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    while let Some(key) = r.key()? {
        match split(key) {
            (1, LEN) => push(attributes, &mut r, key, merge_key_value_top)?,
            // dropped_attributes_count
            (2, VARINT) => _ = r.varint()?,
            // entity_refs: not kept, but checked as prost would.
            (3, LEN) => check_entity_ref(r.bytes()?)?,
            (1..=3, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

/// Checks an `EntityRef` (four string fields) without keeping it.
fn check_entity_ref(body: &[u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    while let Some(key) = r.key()? {
        match split(key) {
            (1..=4, LEN) => _ = r.str()?,
            (1..=4, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

/// Merges an `InstrumentationScope` into `out`.
fn merge_scope<'a>(out: &mut Scope<'a>, body: &'a [u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    while let Some(key) = r.key()? {
        match split(key) {
            (1, LEN) => out.name = r.str()?,
            (2, LEN) => out.version = r.str()?,
            (3, LEN) => push(&mut out.attributes, &mut r, key, merge_key_value_top)?,
            // dropped_attributes_count
            (4, VARINT) => _ = r.varint()?,
            (1..=4, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

/// Merges a `KeyValue` outside any array or key-value list into `out`.
#[inline]
fn merge_key_value_top<'a>(out: &mut KeyValue<'a>, body: &'a [u8]) -> Result<(), DecodeError> {
    merge_key_value(out, body, 0)
}

/// Merges a `KeyValue` inside `depth` arrays and key-value lists into `out`.
#[inline(always)]
fn merge_key_value<'a>(
    out: &mut KeyValue<'a>,
    body: &'a [u8],
    depth: u32,
) -> Result<(), DecodeError> {
    // Most attributes are a key and a string value with one-byte lengths, so the whole
    // KeyValue is UTF-8: validating it once is cheaper than validating key and value apart.
    // Only outside key-value lists, so that no byte is validated more than twice.
    let text = if depth == 0 {
        std::str::from_utf8(body).ok()
    } else {
        None
    };
    let mut r = match text {
        Some(text) => Reader::text(text),
        None => Reader::new(body),
    };
    while let Some(key) = r.key()? {
        match split(key) {
            (1, LEN) => out.key = r.str()?,
            (2, LEN) => {
                let (value, text) = r.bytes_and_text()?;
                merge_any_value(&mut out.value, value, text, depth)?;
            }
            // key_strindex: profiles only.
            (3, VARINT) => _ = r.varint()?,
            (1..=3, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

/// Merges an `AnyValue` (inside `depth` arrays and key-value lists) into `out`, as prost does:
/// the last field of the oneof wins, except that an array or key-value list merged into the same
/// kind of value appends to it.
fn merge_any_value<'a>(
    out: &mut AnyValue<'a>,
    body: &'a [u8],
    text: Option<&'a str>,
    depth: u32,
) -> Result<(), DecodeError> {
    let mut r = match text {
        Some(text) => Reader::text(text),
        None => Reader::new(body),
    };
    while let Some(key) = r.key()? {
        match split(key) {
            (1, LEN) => *out = AnyValue::String(r.str()?),
            (2, VARINT) => *out = AnyValue::Bool(r.varint()? != 0),
            (3, VARINT) => *out = AnyValue::Int(r.varint()? as i64),
            (4, I64) => *out = AnyValue::Double(f64::from_bits(r.fixed64()?)),
            (5, LEN) => {
                let body = r.bytes()?;
                if depth >= MAX_NESTING {
                    return Err(TOO_DEEP);
                }
                if !matches!(out, AnyValue::Array(_)) {
                    *out = AnyValue::Array(Vec::new());
                }
                if let AnyValue::Array(values) = out {
                    merge_array(values, body, depth + 1)?;
                }
            }
            (6, LEN) => {
                let body = r.bytes()?;
                if depth >= MAX_NESTING {
                    return Err(TOO_DEEP);
                }
                if !matches!(out, AnyValue::Kvlist(_)) {
                    *out = AnyValue::Kvlist(Vec::new());
                }
                if let AnyValue::Kvlist(values) = out {
                    merge_kvlist(values, body, depth + 1)?;
                }
            }
            (7, LEN) => *out = AnyValue::Bytes(r.bytes()?),
            (8, VARINT) => *out = AnyValue::StringIndex(r.varint()? as i32),
            (1..=8, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

/// Appends an `ArrayValue`'s values to `values`.
fn merge_array<'a>(
    values: &mut Vec<AnyValue<'a>>,
    body: &'a [u8],
    depth: u32,
) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    while let Some(key) = r.key()? {
        match split(key) {
            (1, LEN) => push(values, &mut r, key, |value, body| {
                merge_any_value(value, body, None, depth)
            })?,
            (1, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

/// Appends a `KeyValueList`'s values to `values`.
fn merge_kvlist<'a>(
    values: &mut Vec<KeyValue<'a>>,
    body: &'a [u8],
    depth: u32,
) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    while let Some(key) = r.key()? {
        match split(key) {
            (1, LEN) => push(values, &mut r, key, |kv, body| {
                merge_key_value(kv, body, depth)
            })?,
            (1, _) => return Err(UNEXPECTED_WIRE_TYPE),
            _ => r.skip(key)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
