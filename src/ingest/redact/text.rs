//! Secrets inside one string value: JSON fields, header lines, query strings and form bodies,
//! URL userinfo, bearer tokens and configured patterns; then truncation.
//!
//! Most values hold no secret, so one case-insensitive scan for trigger words (`triggers.rs`)
//! decides which regexes run at all, and nothing is allocated unless something changes.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;

use regex::{Captures, Regex};

use super::detectors::Detectors;
use super::keys::{SecretKeys, is_whole_line};
use super::triggers::Triggers;
use super::{REDACTED, RedactError};

/// Rule families a trigger word enables (bit flags).
const KEYS: u8 = 1;
const BEARER: u8 = 2;
const URL: u8 = 4;
/// The value mentions AWS: a 40-character secret access key may stand in it.
const AWS: u8 = 8;

/// A form / query value: up to the next separator.
const FORM_VALUE: &str = r#"[^&\s"'<>#;,]+"#;
/// HTTP authentication schemes, whose credentials follow after a space.
const SCHEMES: &str = "bearer|basic|digest|negotiate";

const QUOTED_REDACTED: &str = "\"[REDACTED]\"";
const ESCAPED_REDACTED: &str = "\\\"[REDACTED]\\\"";

/// Compiled text rules.
#[derive(Debug)]
pub(super) struct TextRules {
    triggers: Triggers,
    /// `"key": value`, `\"key\": value` (JSON escaped in JSON) and `'key': 'value'`.
    pub(super) json: Regex,
    /// `Name: value` lines (curl `-H`, raw HTTP, YAML-ish log text).
    pub(super) header: Regex,
    /// `key=value` in query strings, form bodies and logfmt.
    pub(super) form: Regex,
    /// `scheme://user:password@host`.
    pub(super) userinfo: Regex,
    /// `Bearer <token>` anywhere.
    pub(super) bearer: Regex,
    /// Credentials recognised by their shape (card numbers, cloud and SaaS keys, JWTs, …).
    detectors: Detectors,
    extra: Vec<Regex>,
    max_bytes: usize,
}

/// One value after redaction.
pub(super) struct Scrubbed<'a> {
    pub(super) text: Cow<'a, str>,
    pub(super) redacted: bool,
    pub(super) truncated: bool,
}

impl TextRules {
    pub(super) fn new(
        keys: &SecretKeys,
        extra_patterns: &[String],
        max_bytes: usize,
    ) -> Result<Self, RedactError> {
        let mut words: Vec<(String, u8)> = keys
            .trigger_words()
            .into_iter()
            .map(|w| (w, KEYS))
            .collect();
        words.extend([
            ("bearer".to_owned(), BEARER),
            ("://".to_owned(), URL),
            ("aws".to_owned(), AWS),
        ]);
        let triggers = Triggers::new(&words)?;

        // Key names: any prefix ending with a secret name (ends-with, as for attributes). ASCII
        // case-insensitivity only: cheaper, and the edits below rely on ASCII key bytes.
        let name = format!(r"(?-u:[a-z0-9_.\-]*{})", keys.alternation());
        // The regexes have no capture groups (resolving captures costs ~10× the search); the
        // edit functions find the value inside the match instead.
        let json = format!(r#"(?i)"{name}"\s*:\s*(?:"(?:[^"\\]|\\.)*"|-?[0-9][0-9.e+\-]*)"#)
            + &format!(
                // In escaped JSON an inner `\\` is `\\\\`, an inner `\"` is `\\\"`, the end is `\"`.
                r#"|\\"{name}\\"\s*:\s*(?:\\"(?:[^"\\]|\\\\\\\\|\\\\\\"|\\\\[^"\\]|\\[^"\\])*\\"|-?[0-9][0-9.e+\-]*)"#
            )
            + &format!(r#"|'{name}'\s*:\s*'(?:[^'\\]|\\.)*'"#);
        // The value may not start with `:` so `auth::token::verify` paths are left alone.
        let header = format!(r#"(?im){name}[ \t]*:[ \t]*["']?[^\r\n'":][^\r\n'"]*"#);
        // `Authorization=Bearer abc`: an auth scheme and its credentials are one value.
        let form = format!(
            r#"(?i){name}\]?(?:%5d)?=(?:"(?:[^"\\]|\\.)*"|(?:{SCHEMES})[ \t]+{FORM_VALUE}|{FORM_VALUE})"#
        );
        let builtin = |pattern: &str| {
            Regex::new(pattern).map_err(|e| RedactError::Keys {
                reason: e.to_string(),
            })
        };
        let extra = extra_patterns
            .iter()
            .map(|pattern| {
                Regex::new(pattern).map_err(|reason| RedactError::Pattern {
                    pattern: pattern.clone(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(TextRules {
            triggers,
            json: builtin(&json)?,
            header: builtin(&header)?,
            form: builtin(&form)?,
            userinfo: builtin(r#"(?i)[a-z][a-z0-9+.\-]*://[^/?#\s:@"'<>]*:[^/?#\s@"'<>]+@"#)?,
            // Eight characters at least, so prose like "bearer of" is left alone.
            bearer: builtin(r"(?i-u)\bbearer\s+[a-z0-9\-._~+/]{8,}=*")?,
            detectors: Detectors::new()?,
            extra,
            max_bytes,
        })
    }

    pub(super) fn scrub<'a>(&self, value: &'a str) -> Scrubbed<'a> {
        let mut text = Cow::Borrowed(value);
        let mut redacted = false;
        let found = self.triggers.scan(value);
        if found & KEYS != 0 {
            text = rewrite(text, &self.json, &mut redacted, json_edit);
            text = rewrite(text, &self.header, &mut redacted, header_edit);
            text = rewrite(text, &self.form, &mut redacted, form_edit);
        }
        if found & URL != 0 {
            text = rewrite(text, &self.userinfo, &mut redacted, userinfo_edit);
        }
        if found & BEARER != 0 {
            text = rewrite(text, &self.bearer, &mut redacted, bearer_edit);
        }
        let shaped = self.detectors.find(&text, found & AWS != 0);
        if !shaped.is_empty() {
            let edits = shaped.into_iter().map(|range| (range, REDACTED)).collect();
            text = apply(text, edits, &mut redacted);
        }
        for re in &self.extra {
            let edits = if re.captures_len() > 1 {
                let group = |c: Captures<'_>| c.get(1).map(|m| (m.range(), REDACTED));
                re.captures_iter(&text).filter_map(group).collect()
            } else {
                re.find_iter(&text).map(|m| (m.range(), REDACTED)).collect()
            };
            text = apply(text, edits, &mut redacted);
        }
        let (text, truncated) = truncate(text, self.max_bytes);
        Scrubbed {
            text,
            redacted,
            truncated,
        }
    }
}

/// A replacement: the byte range and what it becomes.
type Edit = (Range<usize>, &'static str);

/// Applies `edit` to every match of `re`; `edit` gets the matched text and returns the range
/// within it to replace.
fn rewrite<'a>(
    text: Cow<'a, str>,
    re: &Regex,
    redacted: &mut bool,
    edit: fn(&str) -> Option<Edit>,
) -> Cow<'a, str> {
    let edits = re
        .find_iter(&text)
        .filter_map(|m| {
            let (range, with) = edit(m.as_str())?;
            Some((m.start() + range.start..m.start() + range.end, with))
        })
        .collect();
    apply(text, edits, redacted)
}

/// Applies edits in order. Empty ranges and ranges already holding the replacement are kept,
/// so redacting twice changes nothing; the text is copied only on the first real change.
fn apply<'a>(text: Cow<'a, str>, edits: Vec<Edit>, redacted: &mut bool) -> Cow<'a, str> {
    let mut out: Option<String> = None;
    let mut last = 0;
    for (range, with) in edits {
        if range.is_empty() || &text[range.clone()] == with {
            continue;
        }
        let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
        out.push_str(&text[last..range.start]);
        out.push_str(with);
        last = range.end;
    }
    match out {
        None => text,
        Some(mut out) => {
            out.push_str(&text[last..]);
            *redacted = true;
            Cow::Owned(out)
        }
    }
}

/// Where the value starts after the first `separator`, skipping blanks.
fn value_start(m: &str, separator: char) -> Option<usize> {
    let after = m.find(separator)? + 1;
    Some(m.len() - m[after..].trim_start().len())
}

/// `"key": "value"`, `\"key\": \"value\"` or `'key': 'value'`: the string's content becomes the
/// marker; a number becomes a quoted marker, keeping the JSON valid.
fn json_edit(m: &str) -> Option<Edit> {
    let start = value_start(m, ':')?;
    let (quote, number) = match m.as_bytes()[0] {
        b'\\' => ("\\\"", Some(ESCAPED_REDACTED)),
        b'\'' => ("'", None),
        _ => ("\"", Some(QUOTED_REDACTED)),
    };
    if m[start..].starts_with(quote) {
        Some((start + quote.len()..m.len() - quote.len(), REDACTED))
    } else {
        Some((start..m.len(), number?))
    }
}

/// `Name: value`: the whole line for `Authorization` / `Cookie`, else the first word.
fn header_edit(m: &str) -> Option<Edit> {
    let colon = m.find(':')?;
    let mut start = m.len() - m[colon + 1..].trim_start_matches([' ', '\t']).len();
    if m[start..].starts_with(['"', '\'']) {
        start += 1;
    }
    let value = &m[start..];
    let len = if is_whole_line(m[..colon].trim_end()) {
        value.trim_end().len()
    } else {
        value.find(char::is_whitespace).unwrap_or(value.len())
    };
    Some((start..start + len, REDACTED))
}

/// `key=value` or `key="value"`.
fn form_edit(m: &str) -> Option<Edit> {
    let start = m.find('=')? + 1;
    if m[start..].starts_with('"') {
        Some((start + 1..m.len() - 1, REDACTED))
    } else {
        Some((start..m.len(), REDACTED))
    }
}

/// `scheme://user:password@`: the password.
fn userinfo_edit(m: &str) -> Option<Edit> {
    let authority = m.find("://")? + 3;
    let colon = authority + m[authority..].find(':')?;
    Some((colon + 1..m.len() - 1, REDACTED))
}

/// `Bearer <token>`: the token.
fn bearer_edit(m: &str) -> Option<Edit> {
    let token = m["bearer".len()..].trim_start();
    Some((m.len() - token.len()..m.len(), REDACTED))
}

fn truncate(text: Cow<'_, str>, max: usize) -> (Cow<'_, str>, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let removed = text.len() - cut;
    let mut out = text.into_owned();
    out.truncate(cut);
    // Writing to a String cannot fail.
    let _ = write!(out, "…[truncated {removed} bytes]");
    (Cow::Owned(out), true)
}
