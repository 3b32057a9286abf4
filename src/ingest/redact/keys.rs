//! Which field names hold secrets.

use super::RedactError;

/// Built-in secret names. A key is secret when it *ends* with one of them, compared
/// ASCII-case-insensitively with `-` and `_` ignored, so `x-api-key`, `X_API_KEY`, `apiKey`,
/// `client_secret`, `accessToken`, `proxy-authorization`, `set-cookie` and
/// `http.request.header.authorization` are all covered, while `token_count`,
/// `gen_ai.usage.input_tokens` and `password_hash` are not (they do not end with a secret word).
const BUILTIN: &[&str] = &[
    "authorization",
    "cookie",
    "api_key",
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "secret_key",
    "secret_access_key",
    "token",
    "private_key",
];

/// Header names whose value runs to the end of the line (`Bearer x`, `a=b; c=d`); for every
/// other secret name in `name: value` text only the first word is the secret.
const WHOLE_LINE: &[&str] = &["authorization", "cookie"];

/// The secret names in effect: built-in plus configured.
#[derive(Debug)]
pub(super) struct SecretKeys {
    /// Names as written (lowercase), for building text searches.
    spellings: Vec<String>,
    /// Names lowercased with `-`/`_` removed, for matching attribute keys.
    normalized: Vec<Vec<u8>>,
    /// The last two bytes of every normalized name: most keys end differently and are
    /// rejected on these alone. `None` when a name is a single byte.
    tails: Option<Vec<[u8; 2]>>,
}

impl SecretKeys {
    pub(super) fn new(extra: &[String]) -> Result<Self, RedactError> {
        let mut spellings: Vec<String> = BUILTIN.iter().map(|w| (*w).to_owned()).collect();
        for key in extra {
            // Text rules find a key's value by the first `:` or `=` after it.
            let valid = key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
            if !valid || normalize(key).is_empty() {
                return Err(RedactError::InvalidKey { key: key.clone() });
            }
            spellings.push(key.to_ascii_lowercase());
        }
        let mut normalized: Vec<Vec<u8>> = spellings.iter().map(|s| normalize(s)).collect();
        normalized.sort();
        normalized.dedup();
        let tails = normalized
            .iter()
            .map(|w| Some([*w.get(w.len().checked_sub(2)?)?, *w.last()?]))
            .collect();
        Ok(SecretKeys {
            spellings,
            normalized,
            tails,
        })
    }

    /// Whether an attribute / JSON / form key names a secret.
    pub(super) fn is_secret(&self, key: &str) -> bool {
        if let Some(tails) = &self.tails {
            let mut rev = key
                .bytes()
                .rev()
                .filter(|b| !matches!(b, b'-' | b'_'))
                .map(|b| b.to_ascii_lowercase());
            let (Some(last), Some(before)) = (rev.next(), rev.next()) else {
                return false;
            };
            if !tails.contains(&[before, last]) {
                return false;
            }
        }
        self.normalized
            .iter()
            .any(|word| ends_with_word(key.as_bytes(), word))
    }

    /// Spellings a trigger-word scan must look for: each name with its separators written as
    /// `_`, `-` or nothing (`api_key`, `api-key`, `apikey`; `apiKey` via case-insensitivity).
    pub(super) fn trigger_words(&self) -> Vec<String> {
        let mut words: Vec<String> = self
            .spellings
            .iter()
            .flat_map(|s| ["_", "-", ""].map(|sep| s.replace(['-', '_'], sep)))
            .collect();
        words.sort();
        words.dedup();
        words
    }

    /// A regex alternation matching any name, a separator optional wherever the name has one.
    pub(super) fn alternation(&self) -> String {
        let words: Vec<String> = self
            .spellings
            .iter()
            .map(|s| {
                s.split(['-', '_'])
                    .map(regex::escape)
                    .collect::<Vec<_>>()
                    .join("[-_]?")
            })
            .collect();
        format!("(?:{})", words.join("|"))
    }
}

/// Whether a `name: value` header's whole value is the secret.
pub(super) fn is_whole_line(name: &str) -> bool {
    WHOLE_LINE
        .iter()
        .any(|word| ends_with_word(name.as_bytes(), word.as_bytes()))
}

fn normalize(key: &str) -> Vec<u8> {
    key.bytes()
        .filter(|b| !matches!(b, b'-' | b'_'))
        .map(|b| b.to_ascii_lowercase())
        .collect()
}

/// `word` must be normalized; compares from the end without allocating.
fn ends_with_word(key: &[u8], word: &[u8]) -> bool {
    let mut key = key
        .iter()
        .rev()
        .filter(|b| !matches!(b, b'-' | b'_'))
        .map(u8::to_ascii_lowercase);
    word.iter().rev().all(|w| key.next() == Some(*w))
}
