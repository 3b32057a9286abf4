//! Whether ClickHouse answers and holds this logbook's schema: a background probe, feeding
//! `logbook_clickhouse_up` and readiness.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::migrate::{Migrator, SCHEMA_VERSION};
use super::ping;
use crate::metrics::Metrics;

/// The last time ClickHouse answered the probe.
#[derive(Debug)]
pub struct ClickhouseStatus {
    ok_at: Mutex<Option<Instant>>,
    /// Why the database's schema is not the one this logbook writes, if it is not.
    schema: Mutex<Option<String>>,
    /// Unanswered for longer than this, ClickHouse counts as unreachable.
    unreachable_threshold: Duration,
}

impl ClickhouseStatus {
    pub fn new(unreachable_threshold: Duration) -> ClickhouseStatus {
        ClickhouseStatus {
            ok_at: Mutex::new(None),
            schema: Mutex::new(Some("schema version not checked yet".to_owned())),
            unreachable_threshold,
        }
    }

    fn answered(&self) {
        *self.ok_at.lock().expect("not poisoned") = Some(Instant::now());
    }

    /// Whether the database was last seen at this logbook's schema version.
    pub fn schema_current(&self) -> bool {
        self.schema.lock().expect("not poisoned").is_none()
    }

    /// Why ClickHouse should keep traffic away, if it should.
    pub fn not_ready_reason(&self) -> Option<String> {
        let reachable = match *self.ok_at.lock().expect("not poisoned") {
            None => Some("clickhouse has not been reached yet".to_owned()),
            Some(at) if at.elapsed() > self.unreachable_threshold => Some(format!(
                "clickhouse unreachable for {}s",
                at.elapsed().as_secs()
            )),
            Some(_) => None,
        };
        reachable.or_else(|| self.schema.lock().expect("not poisoned").clone())
    }
}

/// Why a database at schema version `found` is not ready for this logbook, if it is not.
fn schema_reason(found: Option<u32>) -> Option<String> {
    match found.unwrap_or(0) {
        found if found == SCHEMA_VERSION => None,
        found if found > SCHEMA_VERSION => Some(format!(
            "schema version {SCHEMA_VERSION} expected, found {found} — upgrade logbook"
        )),
        found => Some(format!(
            "schema version {SCHEMA_VERSION} expected, found {found} — run logbook migrate"
        )),
    }
}

/// Pings ClickHouse every `interval` until `stop`, and reads the schema version it holds,
/// logging each change of state once. `client` is not bound to logbook's database, which may
/// not exist yet.
pub async fn run(
    client: clickhouse::Client,
    migrator: Migrator,
    request_timeout: Duration,
    interval: Duration,
    status: &ClickhouseStatus,
    metrics: &Metrics,
    stop: CancellationToken,
) {
    let mut was_up = None;
    let mut schema_was = None;
    // Whether to look for `text` indexes the server could hold: at start, and each time
    // ClickHouse answers again (an upgrade restarts it).
    let mut look_for_text_indexes = true;
    loop {
        let result = ping(&client, request_timeout).await;
        let up = result.is_ok();
        if up {
            status.answered();
            let schema = match migrator.recorded_version().await {
                Ok(found) => schema_reason(found),
                Err(error) => Some(format!("cannot read the schema version: {error}")),
            };
            if schema_was.as_ref() != Some(&schema) {
                match &schema {
                    Some(reason) => tracing::warn!("not ready: {reason}"),
                    None => tracing::info!(version = SCHEMA_VERSION, "schema is up to date"),
                }
            }
            if schema.is_none() && look_for_text_indexes {
                match migrator.missing_text_indexes().await {
                    Ok(missing) => {
                        if !missing.is_empty() {
                            tracing::warn!(
                                indexes = missing.join(", "),
                                "ClickHouse can now hold `text` indexes that the tables lack: \
                                 run `logbook migrate` to build them (until then searches read \
                                 the token bloom filters, more granules)"
                            );
                        }
                        look_for_text_indexes = false;
                    }
                    Err(error) => tracing::debug!(%error, "cannot list the tables' indexes"),
                }
            }
            *status.schema.lock().expect("not poisoned") = schema.clone();
            schema_was = Some(schema);
        }
        metrics.clickhouse_up.set(i64::from(up));
        if was_up != Some(up) {
            look_for_text_indexes |= up && was_up == Some(false);
            match result {
                Ok(()) => tracing::info!("clickhouse reachable"),
                Err(error) => tracing::warn!(%error, "clickhouse unreachable"),
            }
            was_up = Some(up);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_at_another_schema_version_is_not_ready() {
        assert_eq!(schema_reason(Some(SCHEMA_VERSION)), None);
        assert_eq!(
            schema_reason(None).unwrap(),
            format!("schema version {SCHEMA_VERSION} expected, found 0 — run logbook migrate")
        );
        let newer = schema_reason(Some(SCHEMA_VERSION + 1)).unwrap();
        assert!(newer.ends_with("upgrade logbook"), "{newer}");
    }
}
