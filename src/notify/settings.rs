//! The notification settings as a typed view on the settings store: each field of
//! [`NotifyRules`] is a settings key named after its path in the configuration file
//! (`notify.rules.paused`, `notify.rules.error_rate.threshold`, …). A stored value wins over
//! the file's; a key never set (or reset) takes the file's.

use std::sync::Arc;

use prometheus::IntGauge;
use serde_json::Value;

use super::config::{NotifyRules, severity_number};
use crate::settings::{KeyDef, SettingsStore};

const PREFIX: &str = "notify.rules.";

macro_rules! keys {
    ($($name:literal => $doc:literal),* $(,)?) => {
        /// The notification settings keys.
        pub const KEYS: &[KeyDef] = &[$(KeyDef { name: $name, doc: $doc, validate }),*];
    };
}

keys! {
    "notify.rules.paused" => "Pause (`true`) or resume (`false`) all notifications.",
    "notify.rules.min_severity" => "Minimum severity of notified monitoring events, e.g. `\"error\"`.",
    "notify.rules.snoozes" => "Snoozed severities with their end dates, e.g. `{\"warning\": \"2026-12-24T00:00:00Z\"}`.",
    "notify.rules.first_error_window" => "Quiet time per bot after a first-error email, e.g. `\"24h\"`.",
    "notify.rules.error_rate.threshold" => "Integration error rate that is notified, e.g. `0.3`.",
    "notify.rules.error_rate.min_volume" => "Finished sync runs needed in the window, e.g. `10`.",
    "notify.rules.error_rate.window" => "Window of the error rate, e.g. `\"24h\"`.",
    "notify.rules.error_rate.repeat_interval" => "Repeat while above the threshold after, e.g. `\"24h\"`.",
    "notify.rules.error_rate.default_enabled" => "Whether integrations without a toggle are notified.",
    "notify.rules.error_rate.integrations" => "Per-integration toggle, e.g. `{\"Xero\": false}`.",
    "notify.rules.monitoring_group_window" => "At most one monitoring email per tenant per, e.g. `\"2m\"`.",
    "notify.rules.roles" => "Roles that receive notifications, e.g. `[\"owner\", \"supervisor\"]`.",
    "notify.rules.recipients" => "Addresses per tenant and role, e.g. `{\"acme\": {\"owner\": [\"o@acme.test\"]}}`.",
}

/// A value is valid for a key when the default settings with that one value replaced are.
fn validate(key: &str, value: &Value) -> Result<(), String> {
    let mut merged = serde_json::to_value(NotifyRules::default()).expect("rules serialize");
    set(&mut merged, key, value.clone())?;
    let rules: NotifyRules = serde_json::from_value(merged).map_err(|e| e.to_string())?;
    rules.validate()
}

fn set(root: &mut Value, key: &str, value: Value) -> Result<(), String> {
    let path = key
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("{key} is not a notification setting"))?;
    let mut node = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let object = node
            .as_object_mut()
            .ok_or_else(|| format!("{key}: not an object"))?;
        if parts.peek().is_none() {
            object.insert(part.to_owned(), value);
            return Ok(());
        }
        node = object
            .get_mut(part)
            .ok_or_else(|| format!("{key}: no such setting"))?;
    }
    Err(format!("{key}: empty path"))
}

/// The settings in force: the file's `defaults` with every stored key laid over them. A
/// stored value that no longer fits (written by another logbook version) is skipped.
pub fn resolve(defaults: &NotifyRules, store: &SettingsStore) -> NotifyRules {
    let stored = store.all();
    let mut merged = serde_json::to_value(defaults).expect("rules serialize");
    for def in KEYS {
        let Some(value) = stored.get(def.name) else {
            continue;
        };
        let mut candidate = merged.clone();
        let fits = set(&mut candidate, def.name, value.clone()).is_ok()
            && serde_json::from_value::<NotifyRules>(candidate.clone()).is_ok();
        if fits {
            merged = candidate;
        } else {
            tracing::warn!(
                key = def.name,
                "stored notification setting does not fit; using the file's"
            );
        }
    }
    serde_json::from_value(merged).expect("checked when merged")
}

/// The OpenTelemetry SeverityNumber of the minimum severity in force: the stored
/// `notify.rules.min_severity`, else the file's. The monitoring rule reads the same value
/// (through [`resolve`]), so one change moves the emails and the alert rules together.
pub fn min_severity_number(defaults: &NotifyRules, store: &SettingsStore) -> u8 {
    let rules = resolve(defaults, store);
    severity_number(&rules.min_severity).unwrap_or_else(|| {
        severity_number(&defaults.min_severity).expect("the file's is validated")
    })
}

/// `logbook_notify_min_severity_number`, the threshold of the `MonitoringEvents*` alert rules,
/// set from the settings store at each scrape: a change through any replica shows on every
/// replica's `/metrics` within `settings.refresh_interval`.
pub struct SeverityGauge {
    pub gauge: IntGauge,
    pub defaults: NotifyRules,
    pub store: Arc<SettingsStore>,
}

impl SeverityGauge {
    pub fn observe(&self) {
        self.gauge
            .set(i64::from(min_severity_number(&self.defaults, &self.store)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_key_names_a_field_of_the_rules() {
        let defaults = serde_json::to_value(NotifyRules::default()).unwrap();
        for def in KEYS {
            let pointer = format!("/{}", def.name[PREFIX.len()..].replace('.', "/"));
            let value = defaults
                .pointer(&pointer)
                .unwrap_or_else(|| panic!("{}", def.name));
            assert!(validate(def.name, value).is_ok(), "{}", def.name);
        }
        // And every field has a key.
        let fields = defaults.as_object().unwrap();
        for (field, value) in fields {
            let nested = value.as_object().filter(|_| field == "error_rate");
            let names: Vec<String> = match nested {
                Some(inner) => inner
                    .keys()
                    .map(|k| format!("{PREFIX}{field}.{k}"))
                    .collect(),
                None => vec![format!("{PREFIX}{field}")],
            };
            for name in names {
                assert!(KEYS.iter().any(|k| k.name == name), "no key for {name}");
            }
        }
    }

    #[test]
    fn invalid_values_are_refused_with_a_reason() {
        assert!(validate("notify.rules.paused", &json!(true)).is_ok());
        assert!(validate("notify.rules.paused", &json!("yes")).is_err());
        let err = validate("notify.rules.min_severity", &json!("loud")).unwrap_err();
        assert!(err.contains("loud"), "{err}");
        assert!(validate("notify.rules.error_rate.threshold", &json!(1.5)).is_err());
        assert!(validate("notify.rules.snoozes", &json!({"warning": "tomorrow"})).is_err());
        assert!(
            validate(
                "notify.rules.snoozes",
                &json!({"warning": "2030-01-01T00:00:00Z"})
            )
            .is_ok()
        );
        assert!(
            validate(
                "notify.rules.recipients",
                &json!({"acme": {"owner": ["not an address"]}})
            )
            .is_err()
        );
    }
}
