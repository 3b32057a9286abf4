//! Ingest, in the order data flows through it: [`receive`] OTLP over gRPC and HTTP (checking
//! tokens and sizes), [`redact`] secrets, append to the durable [`queue`] (the request is
//! acknowledged only then; [`queue::envelope`] is its on-disk form), [`decode`] the queued
//! request in place, [`route`] each record to `otel_logs`/`otel_traces` and its log kind as
//! RowBinary, [`batch`] rows per table, and [`sink`] them into ClickHouse with
//! deduplication tokens. [`pipeline`] drives everything after the queue.

pub mod batch;
pub mod decode;
pub mod kind_metrics;
pub mod pipeline;
pub mod queue;
pub mod receive;
pub mod redact;
pub mod route;
pub mod sink;
