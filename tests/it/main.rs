//! The integration tests: one binary, so that all tests share one ClickHouse
//! test server (see `harness`). Add modules here.

mod api;
mod contract;
mod demo;
mod durability;
mod engine;
mod harness;
mod ingest;
mod integrations;
mod logbook;
mod nesting;
mod notify;
mod notify_docs;
mod redaction;
mod schema;
mod settings;
mod sink;
mod smtp;
mod telemetry;
