//! Times as kiln's command line and plan documents write them: RFC 3339, `now`, or a duration from now
//! (`7d`, `12h`).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::PlanError;

/// Parses `now`, an RFC 3339 time, or a duration from now (`7d`, `+12h`).
pub fn parse_time(text: &str) -> Result<OffsetDateTime, PlanError> {
    let now = OffsetDateTime::now_utc();
    if text == "now" {
        return Ok(now);
    }
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let relative = text.strip_prefix('+').unwrap_or(text);
    match kiln_tree::parse_duration(relative) {
        Ok(secs) => Ok(now + time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 2))),
        Err(_) => Err(PlanError::BadTime(text.to_owned())),
    }
}

/// A Unix time in RFC 3339 (the number itself when it is out of range).
pub fn format_time(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_parse_and_format() {
        let t = parse_time("2026-01-31T12:00:00Z").unwrap();
        assert_eq!(format_time(t.unix_timestamp()), "2026-01-31T12:00:00Z");
        let week = parse_time("7d").unwrap() - OffsetDateTime::now_utc();
        assert!((week.whole_seconds() - 7 * 86400).abs() < 5);
        assert!(parse_time("+1h").unwrap() > OffsetDateTime::now_utc());
        assert!(matches!(parse_time("soon"), Err(PlanError::BadTime(t)) if t == "soon"));
    }
}
