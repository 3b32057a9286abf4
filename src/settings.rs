//! Run-time settings shared by every replica, stored in ClickHouse (`settings` table).
//!
//! A setting is a key with a JSON value. The configuration file gives every setting its
//! default; a value written here (by the HTTP API) wins over the file until it is reset, which
//! brings the file's value back. Nothing is seeded from the file, so changing the file and
//! restarting still changes the defaults of keys nobody has set.
//!
//! Each replica keeps a copy of all settings, refreshed every `interval` (a few seconds): a
//! change made through one replica is seen by the others within that time. Writes go straight
//! to ClickHouse, where the newest row of a key (by the server's clock) is its value, so
//! concurrent writers from several replicas converge on the last write.
//!
//! [`SettingsStore::put`] returns the value before and after, for the caller to record in
//! `audit_activity` (who changed what). Keys are declared with a validator ([`KeyDef`]);
//! unknown keys and invalid values are refused before anything is written.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::schema::settings::SETTINGS;
use crate::store::{StoreError, bounded};

/// The `[settings]` section.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettingsConfig {
    /// How often each replica re-reads the settings table: a change made through one replica
    /// applies on the others within this time.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
}

impl Default for SettingsConfig {
    fn default() -> Self {
        SettingsConfig {
            refresh_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("unknown setting {0:?}")]
    UnknownKey(String),
    #[error("setting {key}: {message}")]
    Invalid { key: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A setting logbook knows: its name, what it does, and how its value is checked.
pub struct KeyDef {
    pub name: &'static str,
    pub doc: &'static str,
    /// Checks a value for the key (whose name is passed, so one function may serve many).
    pub validate: fn(&str, &Value) -> Result<(), String>,
}

/// Every setting: logbook's own, then each component's.
pub fn keys() -> impl Iterator<Item = &'static KeyDef> {
    KEYS.iter().chain(crate::notify::settings::KEYS.iter())
}

pub fn key(name: &str) -> Option<&'static KeyDef> {
    keys().find(|k| k.name == name)
}

/// logbook's own settings (the notifier's are in `crate::notify::settings`).
pub const KEYS: &[KeyDef] = &[
    KeyDef {
        name: "log.level",
        doc: "Level filter of logbook's own logs (`log.level` of the file), e.g. `\"debug\"`.",
        validate: |_, value| {
            let level: String = String::deserialize(value).map_err(|e| e.to_string())?;
            // An empty filter parses but names no level; resetting the key is how to go back.
            if level.trim().is_empty() {
                return Err("the level must not be empty (reset the key for the file's)".into());
            }
            tracing_subscriber::EnvFilter::try_new(&level)
                .map(drop)
                .map_err(|e| e.to_string())
        },
    },
    KeyDef {
        name: "retention.ttl",
        doc: "Time to live per table (`retention.ttl` of the file), e.g. `{\"api_calls\": \"7d\"}`.",
        validate: |_, value| {
            let map: BTreeMap<String, String> =
                BTreeMap::deserialize(value).map_err(|e| e.to_string())?;
            for (table, ttl) in map {
                if !crate::schema::tables().any(|t| t.name == table && t.default_ttl.is_some()) {
                    return Err(format!("no table with a TTL is named {table:?}"));
                }
                humantime::parse_duration(&ttl).map_err(|e| format!("{table}: {e}"))?;
            }
            Ok(())
        },
    },
];

/// A change made by [`SettingsStore::put`] or [`SettingsStore::reset`]: `None` is "not set
/// here" (the configuration file's value applies).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Row {
    key: String,
    value: String,
    deleted: u8,
}

/// The settings of one logbook deployment, cached in this replica.
pub struct SettingsStore {
    client: clickhouse::Client,
    timeout: Duration,
    cache: RwLock<Arc<BTreeMap<String, Value>>>,
}

const LATEST: &str = "SELECT key, argMax(value, updated_at) AS value, \
                      argMax(deleted, updated_at) AS deleted FROM settings";

impl SettingsStore {
    /// `client` is bound to logbook's database. The cache is empty until [`Self::refresh`].
    pub fn new(client: clickhouse::Client, timeout: Duration) -> SettingsStore {
        SettingsStore {
            client,
            timeout,
            cache: RwLock::new(Arc::default()),
        }
    }

    /// Reads every setting from ClickHouse into the cache.
    pub async fn refresh(&self) -> Result<(), SettingsError> {
        let sql = format!("{LATEST} GROUP BY key");
        let rows = bounded(self.timeout, self.client.query(&sql).fetch_all::<Row>()).await?;
        let mut values = BTreeMap::new();
        for row in rows.into_iter().filter(|r| r.deleted == 0) {
            match serde_json::from_str(&row.value) {
                Ok(value) => {
                    values.insert(row.key, value);
                }
                Err(error) => {
                    tracing::warn!(key = %row.key, %error, "stored setting is not JSON; ignored")
                }
            }
        }
        *self.cache.write().expect("settings cache lock") = Arc::new(values);
        Ok(())
    }

    /// Refreshes the cache every `interval` until `stop`; failures are logged and retried.
    pub async fn run(&self, interval: Duration, stop: CancellationToken) {
        loop {
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "cannot refresh settings; keeping the previous ones");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Every setting stored, as cached.
    pub fn all(&self) -> Arc<BTreeMap<String, Value>> {
        self.cache.read().expect("settings cache lock").clone()
    }

    /// The stored value of `key`, as cached; `None` when the configuration file's applies.
    pub fn get_raw(&self, key: &str) -> Option<Value> {
        self.all().get(key).cloned()
    }

    /// The stored value of `key` as a `T`. A value that does not read as `T` (written by an
    /// older or newer logbook) is logged and treated as not set.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let value = self.get_raw(key)?;
        T::deserialize(value)
            .inspect_err(|error| tracing::warn!(key, %error, "stored setting has the wrong shape; using the default"))
            .ok()
    }

    /// Sets `key` to `value` on behalf of `actor`, after validating it. Returns the stored
    /// value before and after, for the audit log.
    pub async fn put(&self, key: &str, value: Value, actor: &str) -> Result<Change, SettingsError> {
        let def = self::key(key).ok_or_else(|| SettingsError::UnknownKey(key.to_owned()))?;
        (def.validate)(key, &value).map_err(|message| SettingsError::Invalid {
            key: key.to_owned(),
            message,
        })?;
        self.write(key, Some(value), actor).await
    }

    /// Removes the stored value of `key`: the configuration file's value applies again.
    pub async fn reset(&self, key: &str, actor: &str) -> Result<Change, SettingsError> {
        if self::key(key).is_none() {
            return Err(SettingsError::UnknownKey(key.to_owned()));
        }
        self.write(key, None, actor).await
    }

    async fn write(
        &self,
        key: &str,
        value: Option<Value>,
        actor: &str,
    ) -> Result<Change, SettingsError> {
        let before = self.stored(key).await?;
        let text = value.as_ref().unwrap_or(&Value::Null).to_string();
        let insert = self
            .client
            .query(&format!(
                "INSERT INTO {} (key, value, deleted, updated_by) \
                 VALUES ({{key:String}}, {{value:String}}, {{deleted:UInt8}}, {{actor:String}})",
                SETTINGS.name
            ))
            .param("key", key)
            .param("value", text)
            .param("deleted", u8::from(value.is_none()))
            .param("actor", actor);
        bounded(self.timeout, insert.execute()).await?;
        {
            let mut cache = self.cache.write().expect("settings cache lock");
            let mut values = BTreeMap::clone(&cache);
            match &value {
                Some(value) => values.insert(key.to_owned(), value.clone()),
                None => values.remove(key),
            };
            *cache = Arc::new(values);
        }
        Ok(Change {
            key: key.to_owned(),
            before,
            after: value,
        })
    }

    /// The value stored now, read from ClickHouse rather than the cache.
    async fn stored(&self, key: &str) -> Result<Option<Value>, SettingsError> {
        let sql = format!("{LATEST} WHERE key = {{key:String}} GROUP BY key");
        let rows = bounded(
            self.timeout,
            self.client.query(&sql).param("key", key).fetch_all::<Row>(),
        )
        .await?;
        Ok(rows
            .into_iter()
            .find(|r| r.deleted == 0)
            .and_then(|r| serde_json::from_str(&r.value).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_unique_and_documented() {
        let mut names: Vec<_> = keys().map(|k| k.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), keys().count());
        assert!(keys().all(|k| !k.doc.is_empty()));
    }

    #[test]
    fn values_are_validated_per_key() {
        let check = |name: &str, value: Value| (key(name).unwrap().validate)(name, &value);
        assert!(check("log.level", Value::from("debug")).is_ok());
        assert!(check("log.level", Value::from("info,[")).is_err());
        assert!(check("log.level", Value::from(3)).is_err());
        assert!(check("log.level", Value::from(" ")).is_err());
        assert!(check("retention.ttl", serde_json::json!({"api_calls": "7d"})).is_ok());
        assert!(check("retention.ttl", serde_json::json!({"nope": "7d"})).is_err());
        assert!(check("retention.ttl", serde_json::json!({"api_calls": "a week"})).is_err());
    }
}
