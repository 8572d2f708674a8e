//! Durations written the way taskgraph writes expiries (`28 days`, `1 year`) or shortly (`28d`, `12h`).

/// Parses a duration into seconds. Months count 30 days and years 365, as taskgraph's `value_of` does.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like `28 days` or `12h`"))?;
    let unit = unit.trim();
    let seconds = match unit {
        "s" | "sec" | "second" | "seconds" => 1,
        "m" | "min" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3_600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        "mo" | "month" | "months" => 30 * 86_400,
        "y" | "year" | "years" => 365 * 86_400,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use s, m, h, d, w, mo, y or their names)"
            ));
        }
    };
    number
        .checked_mul(seconds)
        .ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn long_and_short_forms() {
        assert_eq!(parse_duration("28 days"), Ok(28 * 86_400));
        assert_eq!(parse_duration("1 year"), Ok(365 * 86_400));
        assert_eq!(parse_duration("12h"), Ok(12 * 3_600));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 fortnights").is_err());
    }
}
