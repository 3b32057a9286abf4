//! Batching: rows of consecutive queued requests, flushed together by rows, bytes or age.
//!
//! A batch always covers a contiguous range of queue positions. Its range names its
//! ClickHouse deduplication token, and the range is recorded in the queue (a marker) before
//! the batch is inserted, so that after a crash the very same batches are rebuilt and a
//! re-sent insert is recognised by ClickHouse as a duplicate.
//!
//! While a batch is routed, each table's rows are cut into [`Pieces`] (compressed when inserts
//! are) in pieces of [`PIECE_BYTES`], so that a batch in memory is about the size of its
//! compressed insert rather than of its rows.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::ingest::route::{Origin, Rows};
use crate::ingest::sink::{Codec, PIECE_BYTES, Pieces};
use crate::schema::{MonitoringEvent, RowId, TableDef, Ts, TypedRow};

/// When a batch is flushed: whichever limit is reached first.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_age: Duration,
    /// Batches whose insert may still run while the next batch is routed (0: each insert is
    /// awaited before routing goes on).
    pub inserts_in_flight: usize,
}

#[derive(Debug)]
pub struct Batch {
    /// Queue positions of the first and last request in the batch.
    pub first: u64,
    pub last: u64,
    /// The rows not cut into pieces yet, and the count of every table's rows and their labels
    /// (kept when rows are cut).
    pub rows: Rows,
    /// Each table's rows cut so far, in the order of `Rows`'s tables.
    pieces: Vec<Pieces>,
    /// Queued bytes of the requests in the batch: a cheap stand-in for its memory.
    pub bytes: usize,
    opened: Instant,
}

impl Batch {
    /// A batch starting at queue position `first`, filling `rows` (empty; reused across
    /// batches so that their memory is not allocated anew).
    pub fn new(first: u64, rows: Rows) -> Batch {
        Batch {
            first,
            last: first,
            rows,
            pieces: Vec::new(),
            bytes: 0,
            opened: Instant::now(),
        }
    }

    /// Notes that the request at `position`, `bytes` long, has been routed into `rows`.
    pub fn added(&mut self, position: u64, bytes: usize) {
        self.last = position;
        self.bytes += bytes;
    }

    pub fn is_full(&self, limits: &Limits) -> bool {
        self.rows.len() >= limits.max_rows || self.bytes >= limits.max_bytes
    }

    /// Cuts every table's rows into pieces of [`PIECE_BYTES`] encoded with `codec`, as many
    /// whole pieces as there are; the rest waits for more rows. Pieces of one size keep the
    /// compression buffer at that size, whatever the size of the requests.
    pub fn cut(&mut self, codec: Codec) {
        self.cut_pieces(codec, false);
    }

    /// Cuts what is left and hands out every table's pieces, for the sink; the row counts
    /// stay in `rows` (for the metrics once the batch is stored).
    pub fn take_pieces(&mut self, codec: Codec) -> Vec<(&'static TableDef, Pieces)> {
        self.cut_pieces(codec, true);
        let mut pieces = std::mem::take(&mut self.pieces).into_iter();
        self.rows
            .tables_mut()
            .zip(pieces.by_ref())
            .filter(|(_, p)| !p.pieces.is_empty())
            .map(|((table, rows), mut p)| {
                p.rows = rows.rows;
                (table, p)
            })
            .collect()
    }

    fn cut_pieces(&mut self, codec: Codec, all: bool) {
        for (slot, (_, table)) in self.rows.tables_mut().enumerate() {
            let len = table.bytes.len();
            let cut = if all { len } else { len - len % PIECE_BYTES };
            if cut == 0 {
                continue;
            }
            if self.pieces.len() <= slot {
                self.pieces.resize_with(slot + 1, Pieces::default);
            }
            let pieces = &mut self.pieces[slot].pieces;
            pieces.extend(
                table.bytes[..cut]
                    .chunks(PIECE_BYTES)
                    .map(|c| codec.encode(c)),
            );
            table.bytes.drain(..cut);
        }
    }

    /// When the batch must be flushed even if it is not full.
    pub fn deadline(&self, limits: &Limits) -> Instant {
        self.opened + limits.max_age
    }

    /// The deduplication token of this batch's inserts: the same after a replay.
    pub fn token(&self, queue_id: u64) -> String {
        format!("logbook-{queue_id:016x}-{}-{}", self.first, self.last)
    }

    /// Turns the batch's findings into `monitoring_events` rows, one per sending service,
    /// finding and place, so that what did not fit a kind is visible where on-call people look
    /// first; each names the service and an example, and how to list the records.
    pub fn report_findings(&mut self, queue_id: u64) {
        type Key = (String, &'static str, &'static str, String);
        let mut grouped: BTreeMap<Key, (u64, String, Ts)> = BTreeMap::new();
        for finding in self.rows.findings.drain(..) {
            let (table, column) = finding.problem.place();
            let key = (
                finding.service,
                finding.problem.kind(),
                table,
                column.to_owned(),
            );
            let entry = grouped
                .entry(key)
                .or_insert_with(|| (0, finding.problem.to_string(), finding.time));
            entry.0 += 1;
        }
        let origin = Origin {
            queue_id,
            position: self.first,
        };
        // The example names the table and column; `related_log_id` is left empty, as it holds
        // row ids only (the API's detail endpoint looks the row up).
        for (index, ((service, kind, _table, _column), (count, example, time))) in
            grouped.into_iter().enumerate()
        {
            let (severity, severity_number, what) = match kind {
                "rejected" | "unknown_event" => (
                    "warning",
                    13,
                    "got no typed row (kept in otel_logs, see its logbook.rejected attribute)",
                ),
                _ => ("info", 9, "were stored with a warning (logbook.warnings)"),
            };
            let event = MonitoringEvent {
                id: RowId(origin.row_id(u64::MAX - index as u64, time)),
                time,
                service: "logbook".into(),
                severity: severity.into(),
                severity_number,
                message: format!("{count} record(s) from {service} {what}: {example}"),
                log_type: "logbook.router".into(),
                ..MonitoringEvent::default()
            };
            self.rows.push_typed(&TypedRow::MonitoringEvent(event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::route::findings::{Finding, Problem};
    use crate::schema::{LogKind, Rejection};

    #[test]
    fn full_by_rows_or_bytes() {
        let limits = Limits {
            max_rows: 2,
            max_bytes: 100,
            max_age: Duration::from_secs(1),
            inserts_in_flight: 1,
        };
        let mut batch = Batch::new(0, Rows::default());
        batch.added(0, 10);
        assert!(!batch.is_full(&limits));
        batch.added(64, 95);
        assert!(batch.is_full(&limits));
        assert_eq!((batch.first, batch.last), (0, 64));
        assert_eq!(batch.token(0xab), "logbook-00000000000000ab-0-64");
    }

    #[test]
    fn rows_cut_into_pieces_come_out_whole_and_in_order_with_their_count() {
        let mut batch = Batch::new(0, Rows::default());
        let mut expected = Vec::new();
        for request in 0..5u8 {
            let rows: Vec<u8> = (0..100_000u32).map(|i| request ^ (i % 7) as u8).collect();
            batch.rows.logs.bytes.extend_from_slice(&rows);
            batch.rows.logs.rows += 10;
            expected.extend_from_slice(&rows);
            batch.cut(Codec::Lz4);
        }
        // One whole piece was cut after the third request (300,000 bytes); the rest waits.
        assert_eq!(batch.rows.logs.bytes.len(), 500_000 - PIECE_BYTES);
        let tables = batch.take_pieces(Codec::Lz4);
        assert!(batch.rows.logs.bytes.is_empty());
        assert_eq!(batch.rows.len(), 50, "row counts stay for the metrics");
        let [(table, pieces)] = &tables[..] else {
            panic!("one table has rows: {tables:?}")
        };
        assert_eq!(
            (table.name, pieces.rows, pieces.pieces.len()),
            ("otel_logs", 50, 2)
        );
        let mut out = Vec::new();
        for piece in &pieces.pieces {
            Codec::Lz4.decode(piece, &mut out).unwrap();
        }
        assert_eq!(out, expected);
        let held: usize = pieces.pieces.iter().map(|p| p.len()).sum();
        assert!(held * 4 < expected.len(), "{held} bytes held");
    }

    #[test]
    fn findings_become_one_monitoring_event_per_service_and_column() {
        let mut batch = Batch::new(8, Rows::default());
        for (service, reason) in [
            ("billing", "missing attribute logbook.bot.name"),
            ("billing", "other"),
            ("crm", "missing attribute logbook.bot.name"),
        ] {
            let rejection = Rejection {
                table: "api_calls",
                column: "bot",
                reason: reason.into(),
            };
            batch.rows.findings.push(Finding {
                service: service.into(),
                time: Ts(5),
                record: 0,
                problem: Problem::Rejected(rejection),
            });
        }
        batch.report_findings(1);
        assert!(batch.rows.findings.is_empty());
        let events = batch.rows.table(MonitoringEvent::TABLE).unwrap();
        assert_eq!((events.rows, batch.rows.len()), (2, 2));
        let event = MonitoringEvent::read_row(&mut events.bytes.as_slice()).unwrap();
        assert_eq!(event.related_log_id, "");
        assert!(
            event.message.starts_with(
                "2 record(s) from billing got no typed row (kept in otel_logs, see its \
                 logbook.rejected attribute): api_calls.bot: missing"
            ),
            "{}",
            event.message
        );
    }
}
