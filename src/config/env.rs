//! Environment overrides, as containers are configured: every key of the file can be set by a
//! variable named after it by one rule, derived from the configuration's own shape (no list to
//! keep in step).
//!
//! The rule: `LOGBOOK_`, then the dotted key in upper case with each `.` written `_`
//! (`clickhouse.url` → `LOGBOOK_CLICKHOUSE_URL`, `log.file.max_size` →
//! `LOGBOOK_LOG_FILE_MAX_SIZE`, `retention.ttl.api_calls` → `LOGBOOK_RETENTION_TTL_API_CALLS`,
//! `ingest.tokens.billing` → `LOGBOOK_INGEST_TOKENS_BILLING`). A secret key also takes
//! `<VARIABLE>_FILE`: the path of a file holding the secret. Text values are taken as they are;
//! numbers, booleans and lists are written as in TOML (`64`, `true`, `["a", "b"]`).
//!
//! A variable that starts like a section (`LOGBOOK_QUEUE_…`) but names no key is an error, so
//! a misspelt override is not silently ignored; other `LOGBOOK_*` variables (`LOGBOOK_CONFIG`)
//! are left alone.

use std::collections::BTreeMap;

use super::{Config, ConfigError, MASK, key_error, set_key};

/// The prefix of every override variable.
pub const PREFIX: &str = "LOGBOOK_";

/// How a variable's text becomes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A string key: the text as it is.
    Text,
    /// A secret: the text, or with `_FILE` a `{ file = … }` source.
    Secret,
    /// A number, boolean or list: TOML syntax.
    Toml,
}

/// The variable names of every key, derived from a fully populated configuration.
struct Keys {
    /// Variable suffix (after the prefix) → (dotted key, kind).
    leaves: BTreeMap<String, (String, Kind)>,
    /// Tables keyed by the operator (`retention.ttl`, `ingest.tokens`): variable prefix →
    /// (dotted key of the table, kind of its values).
    maps: Vec<(String, String, Kind)>,
    /// Section names in upper case, each followed by `_`.
    sections: Vec<String>,
}

/// The variable that sets a dotted key.
pub fn variable_for(key: &str) -> String {
    format!("{PREFIX}{}", key.replace('.', "_").to_uppercase())
}

impl Keys {
    fn new() -> Keys {
        let example = toml::Value::try_from(Config::example()).expect("configuration serializes");
        let defaults = toml::Value::try_from(Config::default()).expect("configuration serializes");
        let mut keys = Keys {
            leaves: BTreeMap::new(),
            maps: Vec::new(),
            sections: Vec::new(),
        };
        if let toml::Value::Table(table) = &example {
            keys.sections = table
                .keys()
                .map(|s| format!("{}_", s.to_uppercase()))
                .collect();
        }
        keys.walk("", &example, Some(&defaults));
        keys
    }

    fn walk(&mut self, key: &str, value: &toml::Value, default: Option<&toml::Value>) {
        match value {
            toml::Value::Table(table) => {
                // A table that is empty by default is keyed by the operator, not by logbook.
                if let Some(toml::Value::Table(d)) = default
                    && d.is_empty()
                    && !key.is_empty()
                {
                    let kind = table.values().next().map_or(Kind::Text, kind_of);
                    let prefix = format!("{}_", &variable_for(key)[PREFIX.len()..]);
                    self.maps.push((prefix, key.to_owned(), kind));
                    return;
                }
                for (name, v) in table {
                    let child = if key.is_empty() {
                        name.clone()
                    } else {
                        format!("{key}.{name}")
                    };
                    let d = default.and_then(|d| d.get(name));
                    self.walk(&child, v, d);
                }
            }
            leaf => {
                let suffix = variable_for(key)[PREFIX.len()..].to_owned();
                self.leaves.insert(suffix, (key.to_owned(), kind_of(leaf)));
            }
        }
    }

    /// The key a variable suffix sets, its kind, and whether it names a file (`_FILE`).
    fn resolve(&self, suffix: &str) -> Option<(String, Kind, bool)> {
        if let Some((key, kind)) = self.leaves.get(suffix) {
            return Some((key.clone(), *kind, false));
        }
        if let Some(base) = suffix.strip_suffix("_FILE")
            && let Some((key, Kind::Secret)) = self.leaves.get(base)
        {
            return Some((key.clone(), Kind::Secret, true));
        }
        for (prefix, table, kind) in &self.maps {
            let Some(rest) = suffix.strip_prefix(prefix.as_str()) else {
                continue;
            };
            let (name, file) = match rest.strip_suffix("_FILE") {
                Some(name) if *kind == Kind::Secret => (name, true),
                _ => (rest, false),
            };
            if !name.is_empty() {
                return Some((format!("{table}.{}", name.to_lowercase()), *kind, file));
            }
        }
        None
    }
}

fn kind_of(value: &toml::Value) -> Kind {
    match value {
        toml::Value::String(s) if s == MASK => Kind::Secret,
        toml::Value::String(_) => Kind::Text,
        _ => Kind::Toml,
    }
}

/// The overrides found in `vars` as a table shaped like the file, and for each dotted key the
/// variable that set it (for error messages).
pub fn overrides(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(toml::Table, BTreeMap<String, String>), ConfigError> {
    let keys = Keys::new();
    let mut table = toml::Table::new();
    let mut origins = BTreeMap::new();
    for (var, text) in vars {
        let Some(suffix) = var.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((key, kind, file)) = keys.resolve(suffix) else {
            if keys.sections.iter().any(|s| suffix.starts_with(s.as_str())) {
                return Err(ConfigError::Env {
                    var,
                    message: "names no configuration key (the rule: LOGBOOK_ and the key in \
                              upper case, dots written _; see docs/configuration.md)"
                        .into(),
                });
            }
            continue;
        };
        let value = match (kind, file) {
            (_, true) => toml::Value::Table(toml::Table::from_iter([(
                "file".to_owned(),
                toml::Value::String(text),
            )])),
            (Kind::Text | Kind::Secret, false) => toml::Value::String(text),
            // Unparseable text stays text, so deserialization names the key and the type.
            (Kind::Toml, false) => match format!("v = {text}").parse::<toml::Table>() {
                Ok(mut parsed) => parsed.remove("v").expect("parsed key"),
                Err(_) => toml::Value::String(text),
            },
        };
        if let Some(other) = origins.insert(key.clone(), var.clone()) {
            return Err(key_error(
                key,
                format!("set by both {other} and {var}; set one"),
            ));
        }
        set_key(&mut table, &key, value)?;
    }
    Ok((table, origins))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_exactly_one_variable() {
        let keys = Keys::new();
        let mut seen = BTreeMap::new();
        for (suffix, (key, _)) in &keys.leaves {
            assert_eq!(keys.resolve(suffix).unwrap().0, *key);
            assert!(seen.insert(suffix.clone(), key.clone()).is_none());
            for (prefix, table, _) in &keys.maps {
                assert!(
                    !suffix.starts_with(prefix.as_str()),
                    "{key}'s variable looks like an entry of {table}"
                );
            }
        }
        assert!(keys.leaves.len() > 40, "{}", keys.leaves.len());
        let maps: Vec<_> = keys.maps.iter().map(|m| m.1.as_str()).collect();
        assert_eq!(
            maps,
            [
                "ingest.tokens",
                "notify.rules.error_rate.integrations",
                "notify.rules.recipients",
                "notify.rules.snoozes",
                "retention.ttl"
            ]
        );
    }

    #[test]
    fn a_misspelt_variable_in_a_section_is_an_error_and_others_are_ignored() {
        let vars =
            |v: &[(&str, &str)]| overrides(v.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let err = vars(&[("LOGBOOK_QUEUE_MAX_BYTE", "1 GiB")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("LOGBOOK_QUEUE_MAX_BYTE"), "{err}");
        let (table, _) = vars(&[("LOGBOOK_CONFIG", "/x"), ("LOGBOOK_PROFILE", "debug")]).unwrap();
        assert!(table.is_empty());
    }

    #[test]
    fn a_key_set_twice_is_an_error() {
        let err = overrides([
            ("LOGBOOK_CLICKHOUSE_PASSWORD".into(), "a".into()),
            ("LOGBOOK_CLICKHOUSE_PASSWORD_FILE".into(), "/pw".into()),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("set by both"), "{err}");
    }
}
