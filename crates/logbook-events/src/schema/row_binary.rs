//! ClickHouse's RowBinary format, written by the router straight from the request's bytes
//! and read back by tests and tools. A table's rows are the concatenation of their columns'
//! encodings in the table's column order.

use super::hex::HexId;

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
    put_str(out, HexId::new(id).as_str());
}

/// A `UUID`: two little-endian 64-bit halves, high half first.
pub fn put_uuid(out: &mut Vec<u8>, id: &uuid::Uuid) {
    let (high, low) = id.as_u64_pair();
    out.extend_from_slice(&high.to_le_bytes());
    out.extend_from_slice(&low.to_le_bytes());
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
}
