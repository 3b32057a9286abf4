//! Redaction: every secret in a decoded OTLP request is replaced by [`REDACTED`] before the
//! request is written to the durable queue, so no secret ever reaches a table.
//!
//! Two kinds of rule apply:
//! - by key: an attribute (at any depth of kvlists) whose key ends with a secret name
//!   (`password`, `token`, `authorization`, `cookie`, `api_key`, …; see `keys.rs`) has its value
//!   replaced, every element for arrays;
//! - by content: every other string value (bodies, attributes, span status messages) has the
//!   secrets inside it replaced, keeping the surrounding text byte for byte; see `text.rs`:
//!   values after a secret name (JSON fields, headers, forms, URL passwords, bearer tokens),
//!   and credentials known by their shape wherever they stand (card numbers, cloud and SaaS
//!   keys, private key blocks, JWTs; see `detectors.rs`).
//!
//! Then values longer than `max_value_bytes` are truncated with a visible marker, and arrays
//! and key-value lists nested deeper than [`MAX_NESTING`] levels are replaced by [`TOO_DEEP`]
//! (counted per record: the sender is told in `partial_success`).

mod detectors;
mod keys;
mod text;
mod triggers;

use std::borrow::Cow;

use bytesize::ByteSize;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::{Deserialize, Serialize};

use keys::SecretKeys;
use text::TextRules;

/// What a redacted value is replaced by.
pub const REDACTED: &str = "[REDACTED]";

/// How many arrays and key-value lists a value (attribute or body) may nest; a deeper one is
/// replaced by [`TOO_DEEP`]. Elasticsearch's default mapping depth, and well inside what
/// prost and serde_json decode (about 30 levels, see `receive::nesting`).
pub const MAX_NESTING: usize = 20;

/// What replaces an array or key-value list nested deeper than [`MAX_NESTING`].
pub const TOO_DEEP: &str = "[truncated: nested deeper than 20 levels]";

/// `[redaction]` in logbook.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    /// Extra attribute / JSON / form field names whose values are always redacted
    /// (case-insensitive, matched like the built-in ones: a key ending with the name, `-` and
    /// `_` ignored).
    pub extra_keys: Vec<String>,
    /// Extra regular expressions; every match in any string value is replaced by the marker
    /// (if the regex has a capture group 1, only that group is replaced). They run on every
    /// string value, so keep them few and anchored on a literal.
    pub extra_patterns: Vec<String>,
    /// String values (bodies, attributes) longer than this are truncated, with a visible marker
    /// saying how many bytes were cut. Default 64 KiB.
    pub max_value_bytes: ByteSize,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            extra_keys: Vec::new(),
            extra_patterns: Vec::new(),
            max_value_bytes: ByteSize::kib(64),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("invalid redaction pattern {pattern:?}: {reason}")]
    Pattern {
        pattern: String,
        reason: regex::Error,
    },
    #[error("invalid redaction key {key:?}: use letters, digits, `.`, `-` and `_`")]
    InvalidKey { key: String },
    /// Only reachable with an enormous `extra_keys` list (regex size limit).
    #[error("cannot compile redaction keys: {reason}")]
    Keys { reason: String },
}

/// What one call redacted, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Redactions {
    /// Values (strings, array elements, non-string secret values) changed by redaction.
    pub values_redacted: u64,
    /// String values cut to `max_value_bytes`.
    pub values_truncated: u64,
    /// Arrays and key-value lists replaced by [`TOO_DEEP`].
    pub values_too_deep: u64,
    /// Records (log records or spans) with a value replaced by [`TOO_DEEP`], their resource's
    /// and scope's attributes included.
    pub records_too_deep: u64,
}

/// The compiled [`RedactionConfig`]; build once, share by reference.
#[derive(Debug)]
pub struct Redactor {
    keys: SecretKeys,
    text: TextRules,
}

impl Redactor {
    pub fn new(config: &RedactionConfig) -> Result<Redactor, RedactError> {
        let keys = SecretKeys::new(&config.extra_keys)?;
        let max_bytes = usize::try_from(config.max_value_bytes.as_u64()).unwrap_or(usize::MAX);
        let text = TextRules::new(&keys, &config.extra_patterns, max_bytes)?;
        Ok(Redactor { keys, text })
    }

    /// Redacts resource, scope and record attributes and record bodies in place.
    pub fn logs(&self, request: &mut ExportLogsServiceRequest) -> Redactions {
        let mut n = Redactions::default();
        for resource_logs in &mut request.resource_logs {
            let cut = n.values_too_deep;
            self.resource(resource_logs.resource.as_mut(), &mut n);
            let resource_cut = n.values_too_deep > cut;
            for scope_logs in &mut resource_logs.scope_logs {
                let cut = n.values_too_deep;
                self.scope(scope_logs.scope.as_mut(), &mut n);
                let shared_cut = resource_cut || n.values_too_deep > cut;
                for record in &mut scope_logs.log_records {
                    let cut = n.values_too_deep;
                    self.attributes(&mut record.attributes, 0, &mut n);
                    if let Some(body) = &mut record.body {
                        self.any_value(body, 0, &mut n);
                    }
                    n.records_too_deep += u64::from(shared_cut || n.values_too_deep > cut);
                }
            }
        }
        n
    }

    /// Redacts resource, scope, span, event and link attributes, span and event names (badly
    /// instrumented services put URLs there) and status messages in place.
    pub fn traces(&self, request: &mut ExportTraceServiceRequest) -> Redactions {
        let mut n = Redactions::default();
        for resource_spans in &mut request.resource_spans {
            let cut = n.values_too_deep;
            self.resource(resource_spans.resource.as_mut(), &mut n);
            let resource_cut = n.values_too_deep > cut;
            for scope_spans in &mut resource_spans.scope_spans {
                let cut = n.values_too_deep;
                self.scope(scope_spans.scope.as_mut(), &mut n);
                let shared_cut = resource_cut || n.values_too_deep > cut;
                for span in &mut scope_spans.spans {
                    let cut = n.values_too_deep;
                    self.string(&mut span.name, &mut n);
                    self.attributes(&mut span.attributes, 0, &mut n);
                    for event in &mut span.events {
                        self.string(&mut event.name, &mut n);
                        self.attributes(&mut event.attributes, 0, &mut n);
                    }
                    for link in &mut span.links {
                        self.attributes(&mut link.attributes, 0, &mut n);
                    }
                    if let Some(status) = &mut span.status {
                        self.string(&mut status.message, &mut n);
                    }
                    n.records_too_deep += u64::from(shared_cut || n.values_too_deep > cut);
                }
            }
        }
        n
    }

    /// One string value: content rules, extra patterns, then truncation.
    pub fn text<'a>(&self, value: &'a str) -> Cow<'a, str> {
        self.text.scrub(value).text
    }

    fn resource(&self, resource: Option<&mut Resource>, n: &mut Redactions) {
        if let Some(resource) = resource {
            self.attributes(&mut resource.attributes, 0, n);
        }
    }

    fn scope(&self, scope: Option<&mut InstrumentationScope>, n: &mut Redactions) {
        if let Some(scope) = scope {
            self.attributes(&mut scope.attributes, 0, n);
        }
    }

    /// Attributes inside `depth` arrays and key-value lists.
    fn attributes(&self, attributes: &mut [KeyValue], depth: usize, n: &mut Redactions) {
        for kv in attributes {
            let Some(value) = &mut kv.value else { continue };
            if self.keys.is_secret(&kv.key) {
                redact_whole(value, depth, n);
            } else {
                self.any_value(value, depth, n);
            }
        }
    }

    fn any_value(&self, value: &mut AnyValue, depth: usize, n: &mut Redactions) {
        if cut_too_deep(value, depth, n) {
            return;
        }
        match &mut value.value {
            Some(Value::StringValue(s)) => self.string(s, n),
            Some(Value::ArrayValue(array)) => {
                for element in &mut array.values {
                    self.any_value(element, depth + 1, n);
                }
            }
            Some(Value::KvlistValue(list)) => self.attributes(&mut list.values, depth + 1, n),
            _ => {}
        }
    }

    fn string(&self, s: &mut String, n: &mut Redactions) {
        let scrubbed = self.text.scrub(s);
        n.values_redacted += u64::from(scrubbed.redacted);
        n.values_truncated += u64::from(scrubbed.truncated);
        if let Cow::Owned(new) = scrubbed.text {
            *s = new;
        }
    }
}

/// The value of a secret key: every scalar becomes the string [`REDACTED`] (a numeric PIN is a
/// secret too); booleans and empty values say nothing and are kept.
fn redact_whole(value: &mut AnyValue, depth: usize, n: &mut Redactions) {
    if cut_too_deep(value, depth, n) {
        return;
    }
    match &mut value.value {
        Some(Value::ArrayValue(array)) => {
            for element in &mut array.values {
                redact_whole(element, depth + 1, n);
            }
        }
        Some(Value::KvlistValue(list)) => {
            for kv in &mut list.values {
                if let Some(value) = &mut kv.value {
                    redact_whole(value, depth + 1, n);
                }
            }
        }
        Some(Value::StringValue(s)) if s == REDACTED || s.is_empty() => {}
        Some(Value::BoolValue(_)) | None => {}
        Some(_) => {
            value.value = Some(Value::StringValue(REDACTED.to_owned()));
            n.values_redacted += 1;
        }
    }
}

/// Replaces an array or key-value list inside [`MAX_NESTING`] others by [`TOO_DEEP`].
fn cut_too_deep(value: &mut AnyValue, depth: usize, n: &mut Redactions) -> bool {
    let nested = matches!(
        value.value,
        Some(Value::ArrayValue(_) | Value::KvlistValue(_))
    );
    if !nested || depth < MAX_NESTING {
        return false;
    }
    value.value = Some(Value::StringValue(TOO_DEEP.to_owned()));
    n.values_too_deep += 1;
    true
}

#[cfg(test)]
mod detector_tests;
#[cfg(test)]
mod tests;
