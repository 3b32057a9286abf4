//! Secrets inside one string value: JSON fields, header lines, query strings and form bodies,
//! URL userinfo, bearer tokens and configured patterns; then truncation.
//!
//! Most values hold no secret, so a single case-insensitive Aho-Corasick scan for trigger words
//! decides which regexes run at all, and nothing is allocated unless something changes.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;

use regex::{Captures, Regex};

use super::keys::{SecretKeys, is_whole_line};
use super::triggers::Triggers;
use super::{REDACTED, RedactError};

/// Rule families a trigger word enables (bit flags).
const KEYS: u8 = 1;
const BEARER: u8 = 2;
const URL: u8 = 4;

const QUOTED_REDACTED: &str = "\"[REDACTED]\"";
const ESCAPED_REDACTED: &str = "\\\"[REDACTED]\\\"";

/// Compiled text rules.
#[derive(Debug)]
pub(super) struct TextRules {
    triggers: Triggers,
    /// `"key": value`, `\"key\": value` (JSON escaped in JSON) and `'key': 'value'`.
    json: Regex,
    /// `Name: value` lines (curl `-H`, raw HTTP, YAML-ish log text).
    header: Regex,
    /// `key=value` in query strings, form bodies and logfmt.
    form: Regex,
    /// `scheme://user:password@host`.
    userinfo: Regex,
    /// `Bearer <token>` anywhere.
    bearer: Regex,
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
        let mut words: Vec<(String, u8)> =
            keys.trigger_words().into_iter().map(|w| (w, KEYS)).collect();
        words.extend([("bearer".to_owned(), BEARER), ("://".to_owned(), URL)]);
        let triggers = Triggers::new(&words)?;

        let key = keys.alternation();
        // Key names: any prefix ending with a secret name (ends-with, as for attributes).
        let name = format!(r"[a-z0-9_.\-]*{key}");
        let json = format!(
            r#"(?i)"{name}"\s*:\s*(?:"(?P<v>(?:[^"\\]|\\.)*)"|(?P<n>-?[0-9][0-9.e+\-]*))"#
        ) + &format!(
            // In escaped JSON an inner `\\` is `\\\\`, an inner `\"` is `\\\"`, the end is `\"`.
            r#"|\\"{name}\\"\s*:\s*(?:\\"(?P<ev>(?:[^"\\]|\\\\\\\\|\\\\\\"|\\\\[^"\\]|\\[^"\\])*)\\"|(?P<en>-?[0-9][0-9.e+\-]*))"#
        ) + &format!(r#"|'{name}'\s*:\s*'(?P<sv>(?:[^'\\]|\\.)*)'"#);
        // The value may not start with `:` so `auth::token::verify` paths are left alone.
        let header = format!(
            r#"(?im)(?P<k>[a-z0-9_\-]*{key})[ \t]*:[ \t]*["']?(?P<v>[^\r\n'":][^\r\n'"]*)"#
        );
        let form = format!(
            r#"(?i){name}[\]]?(?:%5d)?=(?:"(?P<qv>(?:[^"\\]|\\.)*)"|(?P<v>[^&\s"'<>#;,]+))"#
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
            userinfo: builtin(
                r#"(?i)[a-z][a-z0-9+.\-]*://[^/?#\s:@"'<>]*:(?P<v>[^/?#\s@"'<>]+)@"#,
            )?,
            // Eight characters at least, so prose like "bearer of" is left alone.
            bearer: builtin(r"(?i)(?-u:\b)bearer\s+(?P<v>[a-z0-9\-._~+/]{8,}=*)")?,
            extra,
            max_bytes,
        })
    }

    pub(super) fn scrub<'a>(&self, value: &'a str) -> Scrubbed<'a> {
        let mut text = Cow::Borrowed(value);
        let mut redacted = false;
        let found = self.triggers.scan(value);
        if found & KEYS != 0 {
            text = rewrite_with(text, &self.json, &mut redacted, json_edit);
            text = rewrite(text, &self.header, &mut redacted, header_value);
            text = rewrite(text, &self.form, &mut redacted, |c| {
                c.name("qv").or_else(|| c.name("v")).map(|m| m.range())
            });
        }
        if found & URL != 0 {
            text = rewrite(text, &self.userinfo, &mut redacted, |c| {
                c.name("v").map(|m| m.range())
            });
        }
        if found & BEARER != 0 {
            text = rewrite(text, &self.bearer, &mut redacted, |c| {
                c.name("v").map(|m| m.range())
            });
        }
        for re in &self.extra {
            let group = usize::from(re.captures_len() > 1);
            text = rewrite(text, re, &mut redacted, |c| c.get(group).map(|m| m.range()));
        }
        let (text, truncated) = truncate(text, self.max_bytes);
        Scrubbed {
            text,
            redacted,
            truncated,
        }
    }
}

/// Replaces, for every match of `re`, the range `edit` picks with [`REDACTED`]; see
/// [`rewrite_with`].
fn rewrite<'a>(
    text: Cow<'a, str>,
    re: &Regex,
    redacted: &mut bool,
    mut edit: impl FnMut(&Captures<'_>) -> Option<Range<usize>>,
) -> Cow<'a, str> {
    rewrite_with(text, re, redacted, |c| edit(c).map(|r| (r, REDACTED)))
}

/// Replaces, for every match of `re`, the range `edit` picks with the text it gives. Empty
/// ranges and ranges already holding the replacement are kept, so redacting twice changes
/// nothing; the text is copied only on the first real change.
fn rewrite_with<'a>(
    text: Cow<'a, str>,
    re: &Regex,
    redacted: &mut bool,
    mut edit: impl FnMut(&Captures<'_>) -> Option<(Range<usize>, &'static str)>,
) -> Cow<'a, str> {
    let mut out: Option<String> = None;
    let mut last = 0;
    for caps in re.captures_iter(&text) {
        let Some((range, with)) = edit(&caps) else {
            continue;
        };
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

/// String contents become the marker; numbers become a quoted marker, keeping the JSON valid.
fn json_edit(c: &Captures<'_>) -> Option<(Range<usize>, &'static str)> {
    if let Some(m) = c
        .name("v")
        .or_else(|| c.name("ev"))
        .or_else(|| c.name("sv"))
    {
        Some((m.range(), REDACTED))
    } else if let Some(m) = c.name("n") {
        Some((m.range(), QUOTED_REDACTED))
    } else {
        c.name("en").map(|m| (m.range(), ESCAPED_REDACTED))
    }
}

fn header_value(c: &Captures<'_>) -> Option<Range<usize>> {
    let value = c.name("v")?;
    let text = value.as_str();
    let len = if is_whole_line(&c["k"]) {
        text.trim_end().len()
    } else {
        text.find(char::is_whitespace).unwrap_or(text.len())
    };
    Some(value.start()..value.start() + len)
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
