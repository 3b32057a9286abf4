//! A table's rows of a batch as they wait for ClickHouse: cut into pieces of [`PIECE_BYTES`]
//! while the batch is routed, each piece compressed as soon as it is cut when inserts are
//! compressed.
//!
//! A batch waits in memory until ClickHouse has stored it (every attempt sends the same
//! bytes, and its deduplication token names them). Held as plain RowBinary, a 32 MiB batch
//! was ≈ 60 MiB per batch in memory, and two are in memory at once (one routed, one inserted);
//! held compressed, as the insert sends it anyway, it is a fraction of that. A piece is one
//! block of ClickHouse's compressed framing, the body format of a `decompress=1` insert
//! (<https://clickhouse.com/docs/native-protocol/compression>): the server decompresses the
//! blocks back into the very byte stream it would have received uncompressed, so the rows,
//! the blocks the server forms from them and the deduplication of a resent insert are those
//! of an uncompressed insert.

use bytes::{BufMut, Bytes};

/// The size of the pieces a table's rows are cut into (the last one of a batch may be
/// smaller): the `clickhouse` crate's own `Insert` buffer size. 1 MiB pieces measured 7 %
/// slower per record (each piece's compression buffer is fresh memory), 64 KiB ones 5 %
/// slower.
pub const PIECE_BYTES: usize = 1 << 18;

const CHECKSUM_BYTES: usize = 16;
const HEADER_BYTES: usize = 9;
const META_BYTES: usize = CHECKSUM_BYTES + HEADER_BYTES;
/// The method byte of an LZ4 block in ClickHouse's framing.
const LZ4: u8 = 0x82;

/// How pieces are encoded: `clickhouse.compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Lz4,
}

impl From<crate::config::Compression> for Codec {
    fn from(compression: crate::config::Compression) -> Codec {
        match compression {
            crate::config::Compression::None => Codec::None,
            crate::config::Compression::Lz4 => Codec::Lz4,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PieceError {
    #[error("not a compressed block: {0}")]
    Framing(&'static str),
    #[error("lz4: {0}")]
    Lz4(#[from] lz4_flex::block::DecompressError),
}

/// One table's rows of a batch, in pieces, in order.
#[derive(Debug, Default)]
pub struct Pieces {
    pub pieces: Vec<Bytes>,
    /// Rows in all pieces.
    pub rows: usize,
}

impl Codec {
    /// `data` as one piece: a copy, or one LZ4 block in ClickHouse's framing (checksum,
    /// method, sizes, block) that takes no more memory than it needs.
    pub fn encode(self, data: &[u8]) -> Bytes {
        match self {
            Codec::None => Bytes::copy_from_slice(data),
            Codec::Lz4 => SCRATCH.with_borrow_mut(|scratch| {
                let bound = lz4_flex::block::get_maximum_output_size(data.len());
                scratch.clear();
                scratch.resize(META_BYTES + bound, 0);
                let compressed = lz4_flex::block::compress_into(data, &mut scratch[META_BYTES..])
                    .expect("the buffer has the size lz4 asks for");
                let block = &mut scratch[..META_BYTES + compressed];
                let (mut checksum, rest) = block.split_at_mut(CHECKSUM_BYTES);
                let mut header = &mut rest[..HEADER_BYTES];
                header.put_u8(LZ4);
                header.put_u32_le(size_u32(HEADER_BYTES + compressed));
                header.put_u32_le(size_u32(data.len()));
                checksum.put_u128_le(cityhash_rs::cityhash_102_128(rest).rotate_right(64));
                Bytes::copy_from_slice(block)
            }),
        }
    }

    /// Appends what `piece` holds to `out`: for the dead-letter file, which keeps rows
    /// uncompressed.
    pub fn decode(self, piece: &[u8], out: &mut Vec<u8>) -> Result<(), PieceError> {
        if self == Codec::None {
            out.extend_from_slice(piece);
            return Ok(());
        }
        let meta = piece
            .get(CHECKSUM_BYTES..META_BYTES)
            .ok_or(PieceError::Framing("shorter than its header"))?;
        if meta[0] != LZ4 {
            return Err(PieceError::Framing("not lz4"));
        }
        let size = |at: usize| u32::from_le_bytes(meta[at..at + 4].try_into().unwrap()) as usize;
        let (compressed, uncompressed) = (size(1), size(5));
        let block = piece
            .get(META_BYTES..CHECKSUM_BYTES + compressed)
            .ok_or(PieceError::Framing("shorter than its size"))?;
        let start = out.len();
        out.resize(start + uncompressed, 0);
        let written = lz4_flex::block::decompress_into(block, &mut out[start..])?;
        out.truncate(start + written);
        Ok(())
    }
}

thread_local! {
    /// Where a piece is compressed before it is copied out at its size: lz4 needs room for
    /// incompressible data.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Pieces are [`PIECE_BYTES`] at most, far below the framing's 4 GiB limit.
fn size_u32(size: usize) -> u32 {
    u32::try_from(size).expect("a piece is smaller than 4 GiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| format!("row {i} of a log line that repeats\n").into_bytes())
            .collect()
    }

    #[test]
    fn an_lz4_piece_decodes_to_its_rows_and_is_smaller() {
        let rows = sample();
        let piece = Codec::Lz4.encode(&rows);
        assert!(
            piece.len() * 3 < rows.len(),
            "{} of {}",
            piece.len(),
            rows.len()
        );
        let mut out = b"before".to_vec();
        Codec::Lz4.decode(&piece, &mut out).unwrap();
        assert_eq!(&out[..6], b"before");
        assert_eq!(&out[6..], &rows[..]);
    }

    #[test]
    fn an_uncompressed_piece_is_the_rows() {
        let piece = Codec::None.encode(b"abc");
        let mut out = Vec::new();
        Codec::None.decode(&piece, &mut out).unwrap();
        assert_eq!((&piece[..], &out[..]), (&b"abc"[..], &b"abc"[..]));
    }

    #[test]
    fn a_truncated_piece_is_an_error() {
        let piece = Codec::Lz4.encode(&sample());
        let mut out = Vec::new();
        assert!(matches!(
            Codec::Lz4.decode(&piece[..piece.len() - 1], &mut out),
            Err(PieceError::Framing(_))
        ));
        assert!(Codec::Lz4.decode(&piece[..10], &mut out).is_err());
    }

    /// The block framing as ClickHouse reads it (the engine checks the checksum) is tested
    /// end to end by every insert of the integration tests; here, the fields.
    #[test]
    fn the_header_names_method_and_sizes() {
        let rows = sample();
        let piece = Codec::Lz4.encode(&rows);
        assert_eq!(piece[16], 0x82);
        let compressed = u32::from_le_bytes(piece[17..21].try_into().unwrap()) as usize;
        let uncompressed = u32::from_le_bytes(piece[21..25].try_into().unwrap()) as usize;
        assert_eq!((compressed + 16, uncompressed), (piece.len(), rows.len()));
    }
}
