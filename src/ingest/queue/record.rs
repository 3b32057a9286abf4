//! Record framing: a fixed 17-byte header followed by the payload (layout in the module doc of
//! [`crate::ingest::queue`]).

/// Size of the record header in bytes.
pub(crate) const HEADER_LEN: u64 = 17;

/// What a record holds; its byte doubles as the record magic, so zeroed or random bytes are
/// unlikely to parse as a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Data,
    Marker,
}

impl Kind {
    const DATA_BYTE: u8 = 0xD1;
    const MARKER_BYTE: u8 = 0xA7;

    fn byte(self) -> u8 {
        match self {
            Kind::Data => Self::DATA_BYTE,
            Kind::Marker => Self::MARKER_BYTE,
        }
    }

    fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            Self::DATA_BYTE => Some(Kind::Data),
            Self::MARKER_BYTE => Some(Kind::Marker),
            _ => None,
        }
    }
}

/// A decoded record header. The checksum still has to be checked against the payload with
/// [`Header::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: Kind,
    pub len: u32,
    pub crc: u32,
    pub unix_millis: u64,
}

/// Why bytes at a record position are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    UnknownKind,
    CrcMismatch,
}

impl Invalid {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Invalid::UnknownKind => "unknown record kind byte",
            Invalid::CrcMismatch => "crc mismatch",
        }
    }
}

impl Header {
    /// Builds the header of a new record, checksum included.
    pub(crate) fn new(kind: Kind, payload: &[u8], unix_millis: u64) -> Header {
        let len = u32::try_from(payload.len()).expect("payload length checked by the caller");
        let mut header = Header {
            kind,
            len,
            crc: 0,
            unix_millis,
        };
        header.crc = header.checksum(payload);
        header
    }

    /// Total size of the record on disk.
    pub(crate) fn record_len(&self) -> u64 {
        HEADER_LEN + u64::from(self.len)
    }

    pub(crate) fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut buf = [0u8; HEADER_LEN as usize];
        buf[0] = self.kind.byte();
        buf[1..5].copy_from_slice(&self.len.to_le_bytes());
        buf[5..9].copy_from_slice(&self.crc.to_le_bytes());
        buf[9..17].copy_from_slice(&self.unix_millis.to_le_bytes());
        buf
    }

    /// Parses a header; fails only on an unknown kind byte (the checksum needs the payload).
    pub(crate) fn decode(buf: &[u8; HEADER_LEN as usize]) -> Result<Header, Invalid> {
        let kind = Kind::from_byte(buf[0]).ok_or(Invalid::UnknownKind)?;
        Ok(Header {
            kind,
            len: u32::from_le_bytes(buf[1..5].try_into().expect("4 bytes")),
            crc: u32::from_le_bytes(buf[5..9].try_into().expect("4 bytes")),
            unix_millis: u64::from_le_bytes(buf[9..17].try_into().expect("8 bytes")),
        })
    }

    /// Checks the stored checksum against the header fields and `payload`.
    pub(crate) fn verify(&self, payload: &[u8]) -> Result<(), Invalid> {
        if self.checksum(payload) == self.crc {
            Ok(())
        } else {
            Err(Invalid::CrcMismatch)
        }
    }

    /// CRC-32 (IEEE) over kind, length, timestamp and payload: everything but the crc itself.
    fn checksum(&self, payload: &[u8]) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&[self.kind.byte()]);
        hasher.update(&self.len.to_le_bytes());
        hasher.update(&self.unix_millis.to_le_bytes());
        hasher.update(payload);
        hasher.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = Header::new(Kind::Marker, b"cut", 1_700_000_000_123);
        let decoded = Header::decode(&header.encode()).unwrap();
        assert_eq!(decoded, header);
        assert_eq!(decoded.record_len(), HEADER_LEN + 3);
        decoded.verify(b"cut").unwrap();
    }

    #[test]
    fn changed_payload_fails_the_checksum() {
        let header = Header::new(Kind::Data, b"hello", 42);
        assert_eq!(header.verify(b"hellp"), Err(Invalid::CrcMismatch));
    }

    #[test]
    fn changed_header_field_fails_the_checksum() {
        let mut bytes = Header::new(Kind::Data, b"hello", 42).encode();
        bytes[9] ^= 1; // timestamp
        let decoded = Header::decode(&bytes).unwrap();
        assert_eq!(decoded.verify(b"hello"), Err(Invalid::CrcMismatch));
    }

    #[test]
    fn zeroed_bytes_are_not_a_header() {
        assert_eq!(
            Header::decode(&[0; HEADER_LEN as usize]),
            Err(Invalid::UnknownKind)
        );
    }
}
