//! Credentials recognised by their shape, wherever they stand: payment card numbers (Luhn
//! checked), cloud provider keys, private key blocks, JWTs and the SaaS tokens whose prefix
//! says what they are. The list follows the rule sets of widely used secret scanners
//! (gitleaks, GitHub secret scanning), keeping the formats with a fixed prefix or a checksum so
//! that ordinary ids, hashes and numbers are left alone.
//!
//! Every value is searched: the token regex starts with a literal from a small set, which the
//! regex crate finds with a SIMD prefilter, and the card scan only runs on values holding
//! at least 13 digits.

use std::ops::Range;

use regex::Regex;

use super::RedactError;

/// Tokens with a recognisable prefix. Each alternative is one format; `(?-u:\b)` keeps them
/// from matching inside a longer word. Sources: gitleaks `config/gitleaks.toml` rule ids in
/// the comments.
const TOKENS: &[&str] = &[
    // aws-access-token: access key ids (long-term AKIA, temporary ASIA, and the other
    // documented prefixes).
    r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}",
    // github-pat, github-oauth, github-app-token, github-refresh-token, github-fine-grained-pat
    r"gh[pousr]_[A-Za-z0-9]{36,255}",
    r"github_pat_[A-Za-z0-9_]{22,255}",
    // gitlab-pat, gitlab-ptt, gitlab-rrt, gitlab-deploy-token, gitlab-cicd-job-token, ...
    r"gl(?:pat|ptt|rt|dt|cbt|imt|oas|soat|ffct|agent)-[A-Za-z0-9_\-]{20,}",
    // slack-bot-token, slack-user-token, slack-app-token, slack-config-*-token, ...
    r"xox[abeposr]-[A-Za-z0-9\-]{10,}",
    r"xapp-[0-9]-[A-Za-z0-9\-]{10,}",
    // slack-webhook-url: the path is the secret.
    r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_\-]{20,}",
    // stripe-access-token: secret and restricted keys, live and test.
    r"(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,99}",
    // gcp-api-key
    r"AIza[A-Za-z0-9_\-]{35}",
    // sendgrid-api-token
    r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}",
    // twilio-api-key (API key SIDs)
    r"SK[0-9a-fA-F]{32}",
    // npm-access-token
    r"npm_[A-Za-z0-9]{36}",
    // pypi-upload-token
    r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}",
    // shopify-access-token, shopify-custom-access-token, shopify-private-app-access-token, ...
    r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
    // openai-api-key (project, service account and legacy keys carry `T3BlbkFJ`), anthropic
    r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}T3BlbkFJ[A-Za-z0-9_\-]{20,}",
    r"sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_\-]{80,}",
    // huggingface-access-token
    r"hf_[A-Za-z]{34}",
    // digitalocean-pat, digitalocean-access-token, digitalocean-refresh-token
    r"do[opr]_v1_[a-f0-9]{64}",
    // databricks-api-token
    r"dapi[a-f0-9]{32}(?:-[0-9])?",
    // square-access-token, square-secret
    r"sq0(?:atp|csp)-[A-Za-z0-9_\-]{22,43}",
    // atlassian-api-token (new format)
    r"ATATT3[A-Za-z0-9_\-=]{186}",
];

/// A JWT: header and payload are base64url JSON objects, so both start with `eyJ`; the
/// signature is empty for `alg: none` (so no word boundary is required after it).
const JWT: &str = r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*";

/// A PEM private key block (`-----BEGIN RSA PRIVATE KEY-----` … `-----END …-----`), to the
/// end of the value when the END line is missing (a truncated log line still holds key bytes).
const PRIVATE_KEY: &str = r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\z)";

/// An AWS secret access key: 40 characters of base64 standing alone. Only searched in values
/// that mention AWS or hold an access key id, since 40 such characters alone are too common.
const AWS_SECRET: &str = r"[A-Za-z0-9/+]{40,}";

/// Fewest digits in a card number (ISO/IEC 7812 allows 8–19; cards in use have 13–19).
const CARD_MIN: usize = 13;
const CARD_MAX: usize = 19;

#[derive(Debug)]
pub(super) struct Detectors {
    tokens: Regex,
    aws_secret: Regex,
}

impl Detectors {
    pub(super) fn new() -> Result<Self, RedactError> {
        let alternatives: Vec<String> = TOKENS.iter().map(|t| format!("(?:{t})")).collect();
        let tokens = format!(
            r"(?-u:\b)(?:(?:{})(?-u:\b)|{JWT})|{PRIVATE_KEY}",
            alternatives.join("|")
        );
        let build = |pattern: &str| {
            Regex::new(pattern).map_err(|e| RedactError::Keys {
                reason: e.to_string(),
            })
        };
        Ok(Detectors {
            tokens: build(&tokens)?,
            aws_secret: build(AWS_SECRET)?,
        })
    }

    /// Ranges of `text` to replace, in order and not overlapping; `aws` says whether the
    /// value mentions AWS (found by the trigger scan).
    pub(super) fn find(&self, text: &str, aws: bool) -> Vec<Range<usize>> {
        let mut found = Vec::new();
        let mut key_id = false;
        for m in self.tokens.find_iter(text) {
            key_id |= is_aws_key_id(m.as_str());
            found.push(private_key_body(m.as_str()).map_or(m.range(), |body| {
                m.start() + body.start..m.start() + body.end
            }));
        }
        if aws || key_id {
            for m in self.aws_secret.find_iter(text) {
                if m.len() == 40 && looks_random(m.as_str()) && stands_alone(text, m.range()) {
                    found.push(m.range());
                }
            }
        }
        card_numbers(text, &mut found);
        if found.len() > 1 {
            found.sort_by_key(|r| r.start);
            // A match inside one already replaced (a card number in a key block) is dropped.
            found.dedup_by(|next, prev| next.start < prev.end);
        }
        found
    }
}

fn is_aws_key_id(token: &str) -> bool {
    token.len() == 20
        && ["AKIA", "ASIA", "ABIA", "ACCA", "A3T"]
            .iter()
            .any(|p| token.starts_with(p))
}

/// For a private key block, the part between the BEGIN and END lines: the lines themselves
/// say what was there and are kept.
fn private_key_body(m: &str) -> Option<Range<usize>> {
    if !m.starts_with("-----BEGIN") {
        return None;
    }
    let start = m["-----BEGIN".len()..].find("-----")? + "-----BEGIN".len() + 5;
    let end = m
        .rfind("-----END")
        .filter(|&end| end >= start)
        .unwrap_or(m.len());
    Some(start..end)
}

/// Random base64 mixes upper case, lower case and digits; a hex digest or a word does not.
fn looks_random(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().any(u8::is_ascii_uppercase)
        && b.iter().any(u8::is_ascii_lowercase)
        && b.iter().any(u8::is_ascii_digit)
}

/// Not part of a longer word or path segment (`=`, quotes, spaces and punctuation around it).
fn stands_alone(text: &str, range: Range<usize>) -> bool {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'/' | b'+');
    (range.start == 0 || !word(b[range.start - 1])) && b.get(range.end).is_none_or(|&c| !word(c))
}

/// Payment card numbers: 13–19 digits, written together or in groups of 3–6 separated by
/// one space or dash (`4111 1111 1111 1111`, `3782-822463-10005`), starting with a card
/// network's first digit (3 to 6) and passing the Luhn check. Timestamps (`17…`) and other
/// numbers start with other digits or fail the check 9 times in 10.
fn card_numbers(text: &str, out: &mut Vec<Range<usize>>) {
    let b = text.as_bytes();
    if b.len() < CARD_MIN || b.iter().filter(|c| c.is_ascii_digit()).count() < CARD_MIN {
        return;
    }
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = [0u8; CARD_MAX];
        let mut n = 0;
        let mut separator = None;
        let mut group = 0;
        let mut end = i;
        let mut j = i;
        while j < b.len() {
            let c = b[j];
            if c.is_ascii_digit() {
                if n < CARD_MAX {
                    digits[n] = c - b'0';
                }
                n += 1;
                group += 1;
                j += 1;
                end = j;
            } else if matches!(c, b' ' | b'-')
                && separator.is_none_or(|s| s == c)
                && (3..=6).contains(&group)
                && b.get(j + 1).is_some_and(u8::is_ascii_digit)
            {
                separator = Some(c);
                group = 0;
                j += 1;
            } else {
                break;
            }
        }
        let last_group_ok = separator.is_none() || (3..=6).contains(&group);
        let before_ok =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'.');
        let after_ok = b.get(end).is_none_or(|c| !c.is_ascii_alphanumeric());
        if (CARD_MIN..=CARD_MAX).contains(&n)
            && last_group_ok
            && before_ok
            && after_ok
            && (3..=6).contains(&digits[0])
            && luhn(&digits[..n])
        {
            out.push(start..end);
        }
        i = end.max(i + 1);
    }
}

/// The Luhn check digit test: from the right, every second digit doubled (minus 9 above 9).
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}
