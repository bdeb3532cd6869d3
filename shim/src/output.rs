//! A child program's output made fit for an error message that reaches
//! containerd (and `kubectl describe`): the last distinct lines, bounded,
//! with secrets redacted (runsc and delegates may echo a process's argv).

/// The most of a program's output kept in an error message.
pub const MAX_MESSAGE: usize = 2048;

/// Make a program's output (runsc's, a delegate shim's) fit an error message: the last lines, bounded, and the
/// `msg` of JSON log lines when it logs JSON. Secret values (the built-in
/// rules of `agentbox-secrets`) are redacted before anything is cut, so a
/// cut cannot leave half a token unrecognised.
pub fn summarize(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(v) => v
                .get("msg")
                .and_then(|m| m.as_str())
                .unwrap_or(l)
                .to_string(),
            Err(_) => l.to_string(),
        })
        .collect();
    // runsc repeats its fatal error; keep the last distinct few lines
    lines.dedup();
    let start = lines.len().saturating_sub(3);
    let mut s = lines[start..]
        .iter()
        .map(|l| agentbox_secrets::redact_text(l))
        .collect::<Vec<_>>()
        .join("; ");
    if s.len() > MAX_MESSAGE {
        let mut cut = s.len() - MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s = format!("…{}", &s[cut..]);
    }
    if s.is_empty() {
        "no output".to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_keeps_last_json_messages_bounded() {
        let log = b"{\"msg\":\"starting\",\"level\":\"info\"}\n{\"msg\":\"FATAL ERROR: cannot run with network enabled in root network namespace\"}\n{\"msg\":\"FATAL ERROR: cannot run with network enabled in root network namespace\"}\n";
        let s = summarize(log);
        assert!(
            s.ends_with("cannot run with network enabled in root network namespace"),
            "{s}"
        );
        assert_eq!(s.matches("FATAL").count(), 1);
        let big = vec![b'x'; 10_000];
        assert!(summarize(&big).len() <= MAX_MESSAGE + 4);
        assert_eq!(summarize(b""), "no output");
    }

    #[test]
    fn summary_never_carries_a_secret() {
        let tok = format!("ghp_{}", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8");
        let log = format!(
            "{{\"msg\":\"exec failed: curl -H 'Authorization: Bearer {tok}' https://u:pw1234567@h.example/\"}}\n{}\n",
            "x".repeat(10)
        );
        let s = summarize(log.as_bytes());
        assert!(
            !s.contains(&tok) && !s.contains("pw1234567"),
            "a secret is in the summary"
        );
        assert!(
            s.contains("exec failed: curl -H") && s.contains("[redacted]"),
            "{s}"
        );
        let s = summarize(format!("exec failed: {tok}").as_bytes());
        assert_eq!(s, "exec failed: [redacted]");
    }
}
