//! ClickHouse's RowBinary format, written by the router straight from the request's bytes
//! and read back by tests and tools. A table's rows are the concatenation of their columns'
//! encodings in the table's column order; an insert starts with the
//! `RowBinaryWithNamesAndTypes` header, so ClickHouse refuses rows whose column types no
//! longer match the table instead of misreading them.

use super::TableDef;

pub fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Lowercase hex of a trace or span id as a `String` value; empty for an absent or all-zero
/// id, as the Collector's exporter writes them.
pub fn put_hex_id(out: &mut Vec<u8>, id: &[u8]) {
    if id.iter().all(|b| *b == 0) {
        out.push(0);
        return;
    }
    put_varint(out, 2 * id.len() as u64);
    push_hex(out, id);
}

/// Appends the lowercase hex digits of `bytes`.
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(2 * bytes.len());
    for b in bytes {
        out.extend(hex_pair(*b));
    }
}

/// The two lowercase hex digits of a byte.
pub fn hex_pair(byte: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [
        DIGITS[usize::from(byte >> 4)],
        DIGITS[usize::from(byte & 0xf)],
    ]
}

/// A `UUID`: two little-endian 64-bit halves, high half first.
pub fn put_uuid(out: &mut Vec<u8>, id: &uuid::Uuid) {
    let (high, low) = id.as_u64_pair();
    out.extend_from_slice(&high.to_le_bytes());
    out.extend_from_slice(&low.to_le_bytes());
}

/// The columns an insert names: every column but those ClickHouse computes, with `Nested`
/// columns as their sub-column arrays.
pub fn insert_columns(table: &TableDef) -> Vec<(String, String)> {
    let mut columns = Vec::new();
    for column in table.all_columns() {
        if column.ch_type.contains(" DEFAULT ")
            || column.ch_type.contains(" MATERIALIZED ")
            || column.ch_type.contains(" ALIAS ")
        {
            continue;
        }
        let ty = column.type_name();
        match ty.strip_prefix("Nested(").and_then(|t| t.strip_suffix(')')) {
            Some(fields) => {
                for field in split_top_level(fields) {
                    let (name, ty) = field.split_once(' ').expect("a Nested field has a type");
                    columns.push((format!("{}.{name}", column.name), format!("Array({ty})")));
                }
            }
            None => columns.push((column.name.to_owned(), ty.to_owned())),
        }
    }
    columns
}

/// `a T, b Map(K, V)` split at the commas outside parentheses.
fn split_top_level(list: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(list[start..].trim());
    parts
}

/// `INSERT INTO table (columns…) FORMAT RowBinaryWithNamesAndTypes`: naming the columns makes
/// a column missing from the table an error rather than skipped.
pub fn insert_statement(table: &TableDef) -> String {
    let names: Vec<String> = insert_columns(table)
        .into_iter()
        .map(|(name, _)| format!("`{name}`"))
        .collect();
    format!(
        "INSERT INTO `{}` ({}) FORMAT RowBinaryWithNamesAndTypes",
        table.name,
        names.join(", ")
    )
}

/// The `RowBinaryWithNamesAndTypes` header: the column count, the names, the types.
pub fn header(table: &TableDef) -> Vec<u8> {
    let columns = insert_columns(table);
    let mut out = Vec::new();
    put_varint(&mut out, columns.len() as u64);
    for (name, _) in &columns {
        put_str(&mut out, name);
    }
    for (_, ty) in &columns {
        put_str(&mut out, ty);
    }
    out
}

/// Reading RowBinary back: each function takes its value off the front of `input`, or
/// returns `None` when the input ends too early.
pub mod read {
    pub fn varint(input: &mut &[u8]) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = input.split_first()?;
            *input = rest;
            n |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(n);
            }
        }
        None
    }

    pub fn bytes<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = usize::try_from(varint(input)?).ok()?;
        fixed(input, len)
    }

    pub fn str<'a>(input: &mut &'a [u8]) -> Option<&'a str> {
        std::str::from_utf8(bytes(input)?).ok()
    }

    pub fn fixed<'a>(input: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
        if input.len() < len {
            return None;
        }
        let (value, rest) = input.split_at(len);
        *input = rest;
        Some(value)
    }

    pub fn array<const N: usize>(input: &mut &[u8]) -> Option<[u8; N]> {
        fixed(input, N)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{OTEL_LOGS, OTEL_TRACES};

    #[test]
    fn varints_and_strings_round_trip() {
        let mut out = Vec::new();
        for n in [0, 1, 127, 128, 300, u64::MAX] {
            put_varint(&mut out, n);
        }
        put_str(&mut out, "héllo");
        let mut input = out.as_slice();
        for n in [0, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(read::varint(&mut input), Some(n));
        }
        assert_eq!(read::str(&mut input), Some("héllo"));
        assert!(input.is_empty());
        assert_eq!(read::str(&mut &[5, b'a'][..]), None);
    }

    #[test]
    fn hex_ids_and_uuids() {
        let mut out = Vec::new();
        put_hex_id(&mut out, &[0xab, 0x01]);
        put_hex_id(&mut out, &[0, 0]);
        put_hex_id(&mut out, &[]);
        assert_eq!(out, b"\x04ab01\x00\x00");
        let id = uuid::Uuid::parse_str("61f0c404-5cb3-11e7-907b-a6006ad3dba0").unwrap();
        let mut out = Vec::new();
        put_uuid(&mut out, &id);
        assert_eq!(out[..8], 0x61f0c4045cb311e7u64.to_le_bytes());
        assert_eq!(out[8..], 0x907ba6006ad3dba0u64.to_le_bytes());
    }

    #[test]
    fn computed_columns_are_not_sent_and_nested_ones_are_flattened() {
        let logs = insert_columns(&OTEL_LOGS);
        assert!(logs.iter().all(|(name, _)| name != "TimestampTime"));
        assert_eq!(logs[0], ("Timestamp".into(), "DateTime64(9)".into()));
        let spans = insert_columns(&OTEL_TRACES);
        assert!(spans.contains(&(
            "Events.Attributes".into(),
            "Array(Map(LowCardinality(String), String))".into()
        )));
        assert!(spans.contains(&("Links.TraceState".into(), "Array(String)".into())));
        assert!(insert_statement(&OTEL_LOGS).starts_with("INSERT INTO `otel_logs` (`Timestamp`, "));
        let header = header(&OTEL_LOGS);
        assert_eq!(usize::from(header[0]), logs.len());
    }
}
