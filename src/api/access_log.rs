//! `access_logs` rows for API requests: who (token name, tenant), when, from which IP, which
//! route, what status. Written in batches by one task, so a request never waits on an insert.

use std::time::Duration;

use tokio::sync::mpsc;

use super::tokens::Token;
use crate::schema::{AccessLog, RowId, Ts};

/// Rows waiting for the writer; a full channel makes requests wait (none is dropped).
const CHANNEL: usize = 10_000;
/// Most rows per insert, and the longest a row waits for companions: about one insert a
/// second under steady use, as ClickHouse advises (each insert is a part to merge; at 200 ms
/// a busy API made five a second, which the engine merged while serving its queries).
const BATCH: usize = 1_000;
const LINGER: Duration = Duration::from_secs(1);

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct AccessLogger {
    sender: mpsc::Sender<AccessLog>,
}

/// An access-log row of the API: the category is `api_request` (or `login_failed` for an
/// unknown token), the portal `api`, the login source `api_token`.
pub fn row(token: Option<&Token>, category: &str, ip: &str, route: &str, status: u16) -> AccessLog {
    AccessLog {
        id: RowId(uuid::Uuid::now_v7()),
        time: Ts::now(),
        tenant: token.and_then(|t| t.tenant.clone()).unwrap_or_default(),
        service: "logbook".into(),
        user_name: token.map(|t| t.name.clone()).unwrap_or_default(),
        ip: ip.to_owned(),
        category: category.to_owned(),
        portal: "api".into(),
        login_source: "api_token".into(),
        path: route.to_owned(),
        status_code: status,
        ..AccessLog::default()
    }
}

impl AccessLogger {
    /// The logger and its writer task, which ends once every logger is dropped and the rows
    /// it holds are written.
    pub fn start(
        client: clickhouse::Client,
        timeout: Duration,
    ) -> (AccessLogger, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(CHANNEL);
        let task = tokio::spawn(write_batches(client, timeout, receiver));
        (AccessLogger { sender }, task)
    }

    pub async fn record(&self, row: AccessLog) {
        if self.sender.send(row).await.is_err() {
            tracing::warn!("access log writer has stopped; a request goes unrecorded");
        }
    }
}

async fn write_batches(
    client: clickhouse::Client,
    timeout: Duration,
    mut receiver: mpsc::Receiver<AccessLog>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = receiver.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(row)) => batch.push(row),
                _ => break,
            }
        }
        // A few attempts: ClickHouse may be restarting; after that the rows are logged as lost.
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=5 {
            match tokio::time::timeout(timeout, insert(&client, &batch)).await {
                Ok(Ok(())) => break,
                Ok(Err(error)) if attempt < 5 => {
                    tracing::warn!(%error, attempt, "access log insert failed; retrying");
                }
                Err(_) if attempt < 5 => {
                    tracing::warn!(attempt, "access log insert timed out; retrying");
                }
                _ => {
                    tracing::error!(rows = batch.len(), "access log rows could not be stored");
                    break;
                }
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        batch.clear();
    }
}

async fn insert(
    client: &clickhouse::Client,
    rows: &[AccessLog],
) -> Result<(), clickhouse::error::Error> {
    let mut insert = client.insert::<AccessLog>("access_logs").await?;
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await
}
