//! ClickHouse: the client, schema migrations, and size-based retention.

pub mod migrate;
pub mod size_cap;

use std::time::Duration;

use crate::config::ClickHouseConfig;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("clickhouse did not answer within {0:?}")]
    Timeout(Duration),
    #[error(
        "database schema version {found} is newer than this logbook's ({supported}); upgrade logbook"
    )]
    SchemaTooNew { found: u32, supported: u32 },
}

/// A client for the server, not bound to a database (for `CREATE DATABASE` and `system.*`).
pub fn server_client(config: &ClickHouseConfig) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(&config.url)
        .with_user(&config.user)
        .with_password(config.password.expose())
}

/// A client bound to logbook's database.
pub fn client(config: &ClickHouseConfig) -> clickhouse::Client {
    server_client(config).with_database(&config.database)
}

/// Runs `future` with the configured request timeout.
pub async fn bounded<T>(
    limit: Duration,
    future: impl Future<Output = Result<T, clickhouse::error::Error>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| StoreError::Timeout(limit))?
        .map_err(StoreError::from)
}

/// `SELECT 1`: is the server reachable and are our credentials accepted?
pub async fn ping(client: &clickhouse::Client, limit: Duration) -> Result<(), StoreError> {
    bounded(limit, client.query("SELECT 1").fetch_one::<u8>())
        .await
        .map(drop)
}
