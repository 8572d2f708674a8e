//! Times on the command line: RFC 3339, `now`, or a duration from now (`7d`, `12h`).

use anyhow::{Result, anyhow};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn parse_time(text: &str) -> Result<OffsetDateTime> {
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
        Err(_) => Err(anyhow!(
            "`{text}` is not a time: use RFC 3339 (2026-01-31T12:00:00Z), `now`, or a duration such as `7d`"
        )),
    }
}

pub fn format_time(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}
