//! Which ClickHouse failures to retry, and how long to wait between attempts.

use std::time::Duration;

use rand::Rng;

/// How a failed insert is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// ClickHouse is down, overloaded or timed out: try again later.
    Retryable,
    /// ClickHouse refuses this data (bad type, unknown table, …): retrying cannot help.
    Permanent,
}

/// Error codes meaning "this data or this statement is wrong", after Vector's ClickHouse sink
/// and ClickHouse's ErrorCodes.cpp: parse and type errors, unknown columns. An unknown table
/// (60) or database (81) is not among them: it is an unmigrated database, which `logbook
/// migrate` fixes, so the batch stays queued and is retried until then.
const PERMANENT_CODES: &[u32] = &[
    6, 16, 26, 27, 32, 33, 36, 38, 41, 43, 44, 47, 53, 62, 69, 70, 72, 117, 349,
];

/// The `Code: N.` of a ClickHouse error text.
pub fn error_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

pub fn classify(error: &clickhouse::error::Error) -> Failure {
    use clickhouse::error::Error;
    match error {
        Error::BadResponse(text) => match error_code(text) {
            Some(code) if PERMANENT_CODES.contains(&code) => Failure::Permanent,
            _ => Failure::Retryable,
        },
        Error::SchemaMismatch(_) | Error::InvalidParams(_) | Error::Unsupported(_) => {
            Failure::Permanent
        }
        _ => Failure::Retryable,
    }
}

/// A missing table or database: the schema is behind, and `logbook migrate` fixes it.
pub fn unmigrated(error: &clickhouse::error::Error) -> bool {
    matches!(error, clickhouse::error::Error::BadResponse(text) if matches!(error_code(text), Some(60 | 81)))
}

/// A short label for metrics.
pub fn error_type(error: &clickhouse::error::Error) -> String {
    use clickhouse::error::Error;
    match error {
        Error::BadResponse(text) => match error_code(text) {
            Some(code) => format!("code_{code}"),
            None => "bad_response".to_owned(),
        },
        Error::Network(_) => "network".to_owned(),
        Error::TimedOut => "timeout".to_owned(),
        Error::SchemaMismatch(_) => "schema_mismatch".to_owned(),
        _ => "other".to_owned(),
    }
}

/// Exponential backoff with full jitter, capped.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait before attempt `attempt + 1` (attempt counts from 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)))
            .min(self.max);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_from_clickhouse_error_text() {
        let text = "Code: 53. DB::Exception: Type mismatch in VALUES section. (TYPE_MISMATCH)";
        assert_eq!(error_code(text), Some(53));
        assert_eq!(
            classify(&clickhouse::error::Error::BadResponse(text.into())),
            Failure::Permanent
        );
        for unmigrated in [
            "Code: 60. DB::Exception: Table x.y does not exist. (UNKNOWN_TABLE)",
            "Code: 81. DB::Exception: Database x does not exist. (UNKNOWN_DATABASE)",
        ] {
            assert_eq!(
                classify(&clickhouse::error::Error::BadResponse(unmigrated.into())),
                Failure::Retryable,
                "{unmigrated}"
            );
        }
        let busy = "Code: 202. DB::Exception: Too many simultaneous queries";
        assert_eq!(
            classify(&clickhouse::error::Error::BadResponse(busy.into())),
            Failure::Retryable
        );
        assert_eq!(
            classify(&clickhouse::error::Error::TimedOut),
            Failure::Retryable
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for attempt in 1..30 {
            assert!(backoff.delay(attempt) <= Duration::from_secs(1));
        }
        assert!(backoff.delay(1) <= Duration::from_millis(100));
    }
}
