//! ClickHouse: the client, schema migrations, the reachability probe and size-based retention.

pub mod migrate;
pub mod probe;
pub mod size_cap;

use std::time::Duration;

use crate::config::{ClickHouseConfig, Compression};

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
    // Always explicit: the crate's default differs between builds (its `test-util` feature,
    // on in logbook's tests and benches, turns compression off).
    let compression = match config.compression {
        Compression::Lz4 => clickhouse::Compression::Lz4,
        Compression::None => clickhouse::Compression::None,
    };
    clickhouse::Client::default()
        .with_compression(compression)
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

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// The head of the first request the client sends: read from a bare socket, because a
    /// server's answer does not show how the request was encoded.
    async fn request_head(compression: Compression) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = ClickHouseConfig {
            url: format!("http://{}", listener.local_addr().unwrap()),
            compression,
            ..ClickHouseConfig::default()
        };
        let capture = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (mut head, mut buf) = (Vec::new(), [0u8; 4096]);
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await.unwrap() {
                    0 => break,
                    n => head.extend_from_slice(&buf[..n]),
                }
            }
            String::from_utf8_lossy(&head).to_lowercase()
        });
        // Unanswered: the socket closes once the head is read, and the query fails.
        let query = client(&config).query("SELECT 1").fetch_one::<u8>();
        let _ = tokio::time::timeout(Duration::from_secs(5), query).await;
        capture.await.unwrap()
    }

    /// The crate's default compression changes with its features (its `test-util`, on in
    /// these tests, turns it off), so the setting must be applied explicitly.
    #[tokio::test]
    async fn compression_follows_the_config_whatever_the_crate_default() {
        let lz4 = request_head(Compression::Lz4).await;
        assert!(lz4.contains("accept-encoding: lz4"), "{lz4}");
        let none = request_head(Compression::None).await;
        assert!(none.starts_with("post "), "{none}");
        assert!(!none.contains("accept-encoding: lz4"), "{none}");
    }
}
