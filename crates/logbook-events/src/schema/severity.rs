//! Severity: OpenTelemetry's numbers 1–24 and the six level names logbook stores.

/// Severity numbers of the levels typed events are emitted at.
pub const INFO: u8 = 9;
pub const WARN: u8 = 13;
pub const ERROR: u8 = 17;

/// The text OpenTelemetry SDKs send with a severity number (`INFO`, `WARN`, `ERROR2`, …).
pub fn severity_text(number: u8) -> &'static str {
    const TEXTS: [&str; 24] = [
        "TRACE", "TRACE2", "TRACE3", "TRACE4", "DEBUG", "DEBUG2", "DEBUG3", "DEBUG4", "INFO",
        "INFO2", "INFO3", "INFO4", "WARN", "WARN2", "WARN3", "WARN4", "ERROR", "ERROR2", "ERROR3",
        "ERROR4", "FATAL", "FATAL2", "FATAL3", "FATAL4",
    ];
    number
        .checked_sub(1)
        .and_then(|i| TEXTS.get(usize::from(i)))
        .copied()
        .unwrap_or("")
}

/// logbook's six level names from OpenTelemetry's severity number (or, without one, text).
pub fn severity_name(number: i32, text: &str) -> Option<&'static str> {
    let number = severity_number(number, text)?;
    Some(match number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warning",
        17..=20 => "error",
        _ => "critical",
    })
}

/// The severity number, from the record's or (when 0) from common level names.
pub fn severity_number(number: i32, text: &str) -> Option<u8> {
    if (1..=24).contains(&number) {
        return u8::try_from(number).ok();
    }
    Some(match text.to_ascii_lowercase().as_str() {
        "trace" => 1,
        "debug" => 5,
        "info" | "information" | "informational" | "notice" => 9,
        "warn" | "warning" => 13,
        "error" | "err" => 17,
        "fatal" | "critical" | "crit" | "alert" | "emergency" => 21,
        _ => return None,
    })
}
