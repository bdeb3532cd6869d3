//! A child program's output made fit for an error message that reaches
//! containerd (and `kubectl describe`): the last distinct lines, bounded.

/// The most of a program's output kept in an error message.
pub const MAX_MESSAGE: usize = 2048;

/// Make a program's output (runsc's, a delegate shim's) fit an error message: the last lines, bounded, and the
/// `msg` of JSON log lines when it logs JSON.
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
    let mut s = lines[start..].join("; ");
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
}
