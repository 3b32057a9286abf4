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
//! Then values longer than `max_value_bytes` are truncated with a visible marker.

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
            self.resource(resource_logs.resource.as_mut(), &mut n);
            for scope_logs in &mut resource_logs.scope_logs {
                self.scope(scope_logs.scope.as_mut(), &mut n);
                for record in &mut scope_logs.log_records {
                    self.attributes(&mut record.attributes, &mut n);
                    if let Some(body) = &mut record.body {
                        self.any_value(body, &mut n);
                    }
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
            self.resource(resource_spans.resource.as_mut(), &mut n);
            for scope_spans in &mut resource_spans.scope_spans {
                self.scope(scope_spans.scope.as_mut(), &mut n);
                for span in &mut scope_spans.spans {
                    self.string(&mut span.name, &mut n);
                    self.attributes(&mut span.attributes, &mut n);
                    for event in &mut span.events {
                        self.string(&mut event.name, &mut n);
                        self.attributes(&mut event.attributes, &mut n);
                    }
                    for link in &mut span.links {
                        self.attributes(&mut link.attributes, &mut n);
                    }
                    if let Some(status) = &mut span.status {
                        self.string(&mut status.message, &mut n);
                    }
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
            self.attributes(&mut resource.attributes, n);
        }
    }

    fn scope(&self, scope: Option<&mut InstrumentationScope>, n: &mut Redactions) {
        if let Some(scope) = scope {
            self.attributes(&mut scope.attributes, n);
        }
    }

    fn attributes(&self, attributes: &mut [KeyValue], n: &mut Redactions) {
        for kv in attributes {
            let Some(value) = &mut kv.value else { continue };
            if self.keys.is_secret(&kv.key) {
                redact_whole(value, n);
            } else {
                self.any_value(value, n);
            }
        }
    }

    fn any_value(&self, value: &mut AnyValue, n: &mut Redactions) {
        match &mut value.value {
            Some(Value::StringValue(s)) => self.string(s, n),
            Some(Value::ArrayValue(array)) => {
                for element in &mut array.values {
                    self.any_value(element, n);
                }
            }
            Some(Value::KvlistValue(list)) => self.attributes(&mut list.values, n),
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
fn redact_whole(value: &mut AnyValue, n: &mut Redactions) {
    match &mut value.value {
        Some(Value::ArrayValue(array)) => {
            for element in &mut array.values {
                redact_whole(element, n);
            }
        }
        Some(Value::KvlistValue(list)) => {
            for kv in &mut list.values {
                if let Some(value) = &mut kv.value {
                    redact_whole(value, n);
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

#[cfg(test)]
mod detector_tests;
#[cfg(test)]
mod tests;
