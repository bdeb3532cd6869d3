//! Redacting command lines: the word-level rules (flags, per-program
//! credential options, positional secrets) on top of the text findings, and
//! shell scripts given as arguments parsed and redacted recursively.

use crate::generic::placeholder;
use crate::lex;
use crate::programs::{match_opt, part_of, positional, wrapper, Opt, CONFIG_VERBS, OPTS};
use crate::spec::Structural;
use crate::{Detector, REDACTED};

/// Nested shells (`sh -c "bash -c '…'"`) followed this deep.
const MAX_DEPTH: usize = 4;

pub(crate) fn redact_argv<S: AsRef<str>>(d: &Detector, argv: &[S]) -> Vec<String> {
    let args: Vec<&str> = argv.iter().map(AsRef::as_ref).collect();
    let mut spans: Vec<Vec<(usize, usize)>> = vec![Vec::new(); args.len()];
    command_spans(d, &args, &mut |k, a, b, _| spans[k].push((a, b)));
    for (k, a) in args.iter().enumerate() {
        text_spans(d, a, 0, &mut spans[k]);
    }
    args.iter()
        .zip(spans)
        .map(|(a, s)| apply_spans(a, s))
        .collect()
}

/// Findings in `s` as text, and, when it looks like a shell script, in its commands.
fn text_spans(d: &Detector, s: &str, depth: usize, out: &mut Vec<(usize, usize)>) {
    out.extend(d.find_all(s).iter().map(|f| (f.start, f.end)));
    if depth >= MAX_DEPTH || !s.bytes().any(|b| b.is_ascii_whitespace()) {
        return;
    }
    for cmd in lex::commands(s) {
        let words: Vec<&str> = cmd.iter().map(|w| w.text.as_str()).collect();
        command_spans(d, &words, &mut |k, a, b, _| {
            out.extend(cmd[k].source_range(a, b));
        });
        for w in &cmd {
            if w.text.len() < s.len() && w.text.bytes().any(|b| b.is_ascii_whitespace()) {
                let mut inner = Vec::new();
                text_spans(d, &w.text, depth + 1, &mut inner);
                out.extend(inner.into_iter().filter_map(|(a, b)| w.source_range(a, b)));
            }
        }
    }
}

/// The rule a command line held in a value breaks (`--api-key X`,
/// `mysql -pX`): the value is read as a shell line, and, since it may hold
/// only options, also as the options of some program.
pub(crate) fn command_line_rule<'d>(d: &'d Detector, value: &str, depth: usize) -> Option<&'d str> {
    if depth >= MAX_DEPTH
        || !value.bytes().any(|b| b.is_ascii_whitespace())
        || !may_hold_credential(value)
    {
        return None;
    }
    let mut found = None;
    for cmd in lex::commands(value) {
        let words: Vec<&str> = cmd.iter().map(|w| w.text.as_str()).collect();
        let mut with_prog = vec!["_"];
        with_prog.extend(&words);
        for ws in [&words, &with_prog] {
            command_spans(d, ws, &mut |_, _, _, id| {
                found.get_or_insert(id);
            });
        }
        // a quoted script inside (`bash -c "…"`, a JSON string)
        for w in &cmd {
            if found.is_none() && w.text.len() < value.len() {
                found = command_line_rule(d, &w.text, depth + 1);
            }
        }
        if found.is_some() {
            break;
        }
    }
    found
}

/// Can a command line hold a credential the word rules find? A flag, or a
/// program taking a positional one (the fast path for ordinary values).
fn may_hold_credential(v: &str) -> bool {
    const WORDS: &[&str] = &[
        "login", "set", "config", "vault", "htpasswd", "sqlplus", "sqlldr", "expdp", "impdp",
        "rman",
    ];
    v.starts_with('-')
        || v.as_bytes()
            .windows(2)
            .any(|w| w[0].is_ascii_whitespace() && w[1] == b'-')
        || WORDS.iter().any(|w| v.contains(w))
}

/// `text` with the byte ranges `spans` (merged) replaced by [`REDACTED`].
pub(crate) fn apply_spans(text: &str, mut spans: Vec<(usize, usize)>) -> String {
    if spans.is_empty() {
        return text.to_string();
    }
    for s in spans.iter_mut() {
        s.1 = s.1.min(text.len());
        s.0 = s.0.min(s.1);
        while !text.is_char_boundary(s.0) {
            s.0 -= 1;
        }
        while !text.is_char_boundary(s.1) {
            s.1 += 1;
        }
    }
    spans.retain(|s| s.0 < s.1);
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    let mut cur: Option<(usize, usize)> = None;
    for (a, b) in spans {
        match cur {
            Some((ca, cb)) if a <= cb => cur = Some((ca, cb.max(b))),
            _ => {
                if let Some((ca, cb)) = cur {
                    out.push_str(&text[pos..ca]);
                    out.push_str(REDACTED);
                    pos = cb;
                }
                cur = Some((a, b));
            }
        }
    }
    if let Some((ca, cb)) = cur {
        out.push_str(&text[pos..ca]);
        out.push_str(REDACTED);
        pos = cb;
    }
    out.push_str(&text[pos..]);
    out
}

fn basename(w: &str) -> &str {
    w.rsplit('/').next().unwrap_or(w)
}

fn is_flag(w: &str) -> bool {
    w.len() > 1 && w.starts_with('-') && !w[1..].bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

fn is_assignment(w: &str) -> bool {
    w.split_once('=').is_some_and(|(n, _)| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// The rule that makes `value` of the flag (or key) `name` a secret.
fn flag_secret<'d>(d: &'d Detector, name: &str, value: &str) -> Option<&'d str> {
    if placeholder(value) {
        return None;
    }
    if d.names.flag_takes_value(name) {
        if let Some(r) = d.name_rule(name) {
            return Some(r);
        }
    }
    d.pair_rule(name, value, false)
}

/// Marks bytes `start..end` of word `word` as secret under rule `rule`.
pub(crate) type Emit<'a, 'd> = dyn FnMut(usize, usize, usize, &'d str) + 'a;

/// Word-level rules on one simple command; `emit(word, start, end, rule)`
/// marks a byte range of a word as secret.
pub(crate) fn command_spans<'d>(d: &'d Detector, words: &[&str], emit: &mut Emit<'_, 'd>) {
    let cl = d
        .structural_id(Structural::CommandLine)
        .unwrap_or("command-line-credential");
    let n = words.len();
    let mut i = 0;
    // leading assignments and wrappers (`sudo -u x env A=1 nice -n 5 cmd`)
    while i < n {
        if is_assignment(words[i]) {
            i += 1;
            continue;
        }
        let p = basename(words[i]);
        let Some(valued) = wrapper(p) else { break };
        i += 1;
        while i < n && (is_flag(words[i]) || (p == "env" && is_assignment(words[i]))) {
            let f = words[i];
            i += 1;
            if valued.contains(&f) {
                i += 1;
            }
        }
        if p == "timeout" {
            i += 1; // the duration
        }
    }
    if i >= n {
        return;
    }
    let prog = basename(words[i]);
    let has = |w: &str| words[i + 1..].contains(&w);
    let opts: Vec<&Opt> = OPTS
        .iter()
        .filter(|o| o.progs.contains(&prog) && o.needs.is_none_or(has))
        .collect();
    let mut j = i + 1;
    while j < n {
        let w = words[j];
        let next = words.get(j + 1).copied().filter(|x| !is_flag(x));
        // a program's credential option
        if let Some((o, attached)) = opts.iter().find_map(|o| match_opt(o, w)) {
            match attached {
                Some(off) => {
                    if let Some((a, b)) = part_of(&w[off..], o.part) {
                        emit(j, off + a, off + b, cl);
                    }
                }
                None => {
                    if let Some(v) = next {
                        if let Some((a, b)) = part_of(v, o.part) {
                            emit(j + 1, a, b, cl);
                        }
                        j += 1;
                    }
                }
            }
        } else if let Some(flag) = w
            .strip_prefix("--")
            .or_else(|| w.strip_prefix('-').filter(|f| f.len() > 1))
        {
            // `--name value`, `--name=value`, Go-style `-name value`
            let long = w.starts_with("--");
            match flag.split_once('=') {
                Some((name, v)) => {
                    if long || d.name_rule(name).is_some() {
                        if let Some(id) = flag_secret(d, name, v) {
                            emit(j, w.len() - v.len(), w.len(), id);
                        }
                    }
                }
                None => {
                    if let Some(v) = next {
                        let secret_name = d.name_rule(flag).is_some();
                        if (long || secret_name) && d.names.flag_takes_value(flag) {
                            if let Some(id) = flag_secret(d, flag, v) {
                                emit(j + 1, 0, v.len(), id);
                                j += 1;
                            }
                        }
                    }
                }
            }
        } else if !is_flag(w) {
            // `… set <secret name> <value>`
            if let (Some(v), Some(id)) = (next, d.name_rule(w)) {
                if !w.contains('=')
                    && words[i + 1..j].iter().any(|x| CONFIG_VERBS.contains(x))
                    && !placeholder(v)
                {
                    emit(j + 1, 0, v.len(), id);
                    j += 1;
                }
            }
            positional(prog, words, i, j, &mut |k, a, b| emit(k, a, b, cl));
        }
        j += 1;
    }
    // htpasswd -b FILE USER PASSWORD (batch mode takes the password last)
    if prog == "htpasswd"
        && words[i + 1..]
            .iter()
            .any(|w| w.starts_with('-') && !w.starts_with("--") && w.contains('b'))
        && n > i + 3
    {
        emit(n - 1, 0, words[n - 1].len(), cl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_merge_and_replace() {
        assert_eq!(apply_spans("abcdef", vec![(1, 3), (2, 4)]), "a[redacted]ef");
        assert_eq!(
            apply_spans("abcdef", vec![(4, 6), (0, 1)]),
            "[redacted]bcd[redacted]"
        );
        assert_eq!(apply_spans("abc", vec![]), "abc");
        assert_eq!(apply_spans("aé", vec![(2, 3)]), "a[redacted]");
    }
}
