//! Validation and normalization of instruction values: ports, signals, working directories.

/// Expand EXPOSE words to `port/proto` (Go `nat.ParsePortSpecs`, container side only).
pub(crate) fn parse_ports(spec: &str) -> Result<Vec<String>, String> {
    let (port, proto) = match spec.rsplit_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let container = port.rsplit(':').next().unwrap_or(port);
    let num = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {container}"))
    };
    let (start, end) = match container.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let p = num(container)?;
            (p, p)
        }
    };
    if end < start {
        return Err(format!("invalid range specified for container port: {container}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE",
    "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU",
    "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "UNUSED",
];

/// Moby `signal.ParseSignal`: a positive number, a name with or without `SIG`, or `RTMIN+n`.
pub(crate) fn check_signal(raw: &str) -> Result<(), String> {
    if let Ok(n) = raw.parse::<i64>() {
        return if n > 0 {
            Ok(())
        } else {
            Err(format!("invalid signal: {raw}"))
        };
    }
    let upper = raw.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let rt = |prefix: &str, max: u32| {
        name.strip_prefix(prefix).is_some_and(|n| {
            n.is_empty()
                || n.strip_prefix(['+', '-'])
                    .and_then(|d| d.parse::<u32>().ok())
                    .is_some_and(|d| d <= max)
        })
    };
    if SIGNALS.contains(&name) || rt("RTMIN", 15) || rt("RTMAX", 15) {
        Ok(())
    } else {
        Err(format!("invalid signal: {raw}"))
    }
}

/// Lexically clean a slash path like Go's `path.Clean`.
pub(crate) fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// BuildKit `NormalizeWorkdir` for Linux: relative paths join the current directory.
pub(crate) fn normalize_workdir(current: Option<&str>, requested: &str) -> String {
    if requested.starts_with('/') {
        return clean_path(requested);
    }
    let cur = current.filter(|c| !c.is_empty()).unwrap_or("/");
    clean_path(&format!("{cur}/{requested}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(parse_ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(
            parse_ports("8000-8002/tcp").unwrap(),
            vec!["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(parse_ports("80/icmp").is_err());
        assert!(parse_ports("http").is_err());
        assert!(parse_ports("99999").is_err());
    }

    #[test]
    fn signals() {
        assert!(check_signal("SIGTERM").is_ok());
        assert!(check_signal("quit").is_ok());
        assert!(check_signal("9").is_ok());
        assert!(check_signal("SIGRTMIN+3").is_ok());
        assert!(check_signal("SIGFOO").is_err());
        assert!(check_signal("0").is_err());
    }

    #[test]
    fn workdir() {
        assert_eq!(normalize_workdir(None, "app"), "/app");
        assert_eq!(normalize_workdir(Some("/usr"), "src/../lib/"), "/usr/lib");
        assert_eq!(normalize_workdir(Some("/usr"), "/opt//x/."), "/opt/x");
        assert_eq!(clean_path("/.."), "/");
    }
}
