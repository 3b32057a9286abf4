//! The query side: reads ClickHouse for the API, the notifier and the metrics jobs, and never
//! reaches into ingest.

pub mod integrations;
