//! Severity: OpenTelemetry's numbers 1–24 and the six level names logbook stores.

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
