//! The fast pre-check: which rule families a string may need, found by one case-insensitive
//! multi-word scan. Nearly every value holds no trigger word and skips the regexes entirely.

use aho_corasick::{AhoCorasick, AhoCorasickKind, packed};

use super::RedactError;

/// Lowercased window the SIMD searcher scans at a time.
const CHUNK: usize = 512;
/// Below this the automaton is as fast as lowercasing plus the SIMD searcher.
const SHORT: usize = 64;

#[derive(Debug)]
pub(super) struct Triggers {
    /// Case-insensitive automaton, for short values and machines without SIMD.
    automaton: AhoCorasick,
    /// SIMD (Teddy) searcher over lowercase words; it has no case-insensitive mode, so the
    /// haystack is lowercased chunk by chunk first. `None` without SIMD or with > 64 words.
    packed: Option<packed::Searcher>,
    /// Bit flags each word enables, by pattern id.
    flags: Vec<u8>,
    all: u8,
    longest: usize,
}

impl Triggers {
    /// `words` must be lowercase and non-empty.
    pub(super) fn new(words: &[(String, u8)]) -> Result<Self, RedactError> {
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .kind(Some(AhoCorasickKind::DFA))
            .build(words.iter().map(|(w, _)| w))
            .map_err(|e| RedactError::Keys {
                reason: e.to_string(),
            })?;
        let longest = words.iter().map(|(w, _)| w.len()).max().unwrap_or(0);
        // Huge configured keys would leave no room for chunks to advance.
        let packed = (longest <= CHUNK / 2)
            .then(|| {
                packed::Config::new()
                    .builder()
                    .extend(words.iter().map(|(w, _)| w))
                    .build()
            })
            .flatten();
        let flags: Vec<u8> = words.iter().map(|(_, f)| *f).collect();
        Ok(Triggers {
            automaton,
            packed,
            all: flags.iter().fold(0, |a, f| a | f),
            flags,
            longest,
        })
    }

    /// The union of the flags of every word found in `value`.
    pub(super) fn scan(&self, value: &str) -> u8 {
        let mut found = 0;
        match &self.packed {
            Some(packed) if value.len() >= SHORT => {
                let mut lower = [0u8; CHUNK];
                // Chunks overlap by `longest - 1` bytes so no word is split between two.
                let step = CHUNK - self.longest.saturating_sub(1);
                let mut start = 0;
                while start < value.len() {
                    let chunk = &value.as_bytes()[start..value.len().min(start + CHUNK)];
                    let lower = &mut lower[..chunk.len()];
                    lower.copy_from_slice(chunk);
                    lower.make_ascii_lowercase();
                    for m in packed.find_iter(&*lower) {
                        found |= self.flags[m.pattern().as_usize()];
                    }
                    if found == self.all || start + CHUNK >= value.len() {
                        break;
                    }
                    start += step;
                }
            }
            // `is_match` alone is about half the cost of setting up `find_iter`.
            _ if !self.automaton.is_match(value) => {}
            _ => {
                for m in self.automaton.find_iter(value) {
                    found |= self.flags[m.pattern().as_usize()];
                    if found == self.all {
                        break;
                    }
                }
            }
        }
        found
    }
}
