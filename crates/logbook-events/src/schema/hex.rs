//! Lowercase hex, the one encoder for trace and span ids and bytes values.

/// Bytes as lowercase hex, on the stack up to 32 bytes (W3C trace and span ids are 16 and 8):
/// typed rows take both ids, and allocating them cost more than writing them. All zeros is
/// no id and encodes as empty, as the Collector's ClickHouse exporter writes it.
pub enum HexId {
    Inline([u8; 64], usize),
    Heap(String),
}

impl HexId {
    pub fn new(id: &[u8]) -> HexId {
        if id.iter().all(|b| *b == 0) {
            return HexId::Inline([0; 64], 0);
        }
        let mut buf = [0u8; 64];
        if id.len() > buf.len() / 2 {
            let mut out = Vec::with_capacity(2 * id.len());
            push_hex(&mut out, id);
            return HexId::Heap(String::from_utf8(out).expect("hex digits are ASCII"));
        }
        for (pair, b) in buf.chunks_exact_mut(2).zip(id) {
            pair.copy_from_slice(&hex_pair(*b));
        }
        HexId::Inline(buf, 2 * id.len())
    }

    pub fn as_str(&self) -> &str {
        match self {
            HexId::Inline(buf, len) => std::str::from_utf8(&buf[..*len]).expect("hex digits"),
            HexId::Heap(s) => s,
        }
    }
}

/// Appends the lowercase hex digits of `bytes`.
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(2 * bytes.len());
    for b in bytes {
        out.extend(hex_pair(*b));
    }
}

/// The two lowercase hex digits of a byte.
fn hex_pair(byte: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [
        DIGITS[usize::from(byte >> 4)],
        DIGITS[usize::from(byte & 0xf)],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_hex_and_zero_is_empty() {
        assert_eq!(HexId::new(&[0xab, 0x01]).as_str(), "ab01");
        assert_eq!(HexId::new(&[0, 0]).as_str(), "");
        assert_eq!(HexId::new(&[]).as_str(), "");
        let long = [0xfe; 40];
        assert_eq!(HexId::new(&long).as_str(), "fe".repeat(40));
        let mut out = Vec::new();
        push_hex(&mut out, &[0x00, 0x0f]);
        assert_eq!(out, b"000f");
    }
}
