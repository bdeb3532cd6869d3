//! Environment rules: strip secrets by name and by value, keep what programs need.
//! Reports carry names (or `#index` when the name itself is suspect), never values.

use serde_json::{Map, Value};

use crate::annotations::{Effective, Phase};
use crate::Policy;

/// Why an entry goes, as a rule id; `None` keeps it.
pub(crate) fn verdict(
    policy: &Policy,
    eff: &Effective,
    entry: &str,
) -> Option<(&'static str, bool /* target is the name */)> {
    let Some((name, value)) = entry.split_once('=') else {
        return Some(("env.malformed", false));
    };
    if !valid_name(name) || secret_value_kind(name).is_some() {
        return Some(("env.malformed", false));
    }
    if eff.strip.iter().any(|g| g.matches(name)) {
        return Some(("env.annotation-strip", true));
    }
    if policy.env_allow.iter().any(|g| g.matches(name)) {
        return None;
    }
    if policy.env_strip.iter().any(|g| g.matches(name)) {
        return Some(("env.config-strip", true));
    }
    if eff.phase == Phase::Setup {
        return None;
    }
    let up = name.to_ascii_uppercase();
    if !kept_upper(&up) && secret_upper(&up) {
        return Some(("env.secret-name", true));
    }
    if secret_value_kind(value).is_some() {
        return Some(("env.secret-value", true));
    }
    None
}

/// Apply the env rules to `process.env`.
pub(crate) fn apply(
    policy: &Policy,
    eff: &Effective,
    process: &mut Map<String, Value>,
    rec: &mut crate::report::Recorder,
) {
    let Some(Value::Array(env)) = process.get_mut("env") else {
        return;
    };
    let mut i = 0usize;
    env.retain(|e| {
        let idx = i;
        i += 1;
        let s = e.as_str().unwrap_or("");
        match verdict(policy, eff, s) {
            None => true,
            Some((rule, by_name)) => {
                let target = if by_name {
                    s.split_once('=').map(|(n, _)| n).unwrap_or("").to_string()
                } else {
                    format!("#{idx}")
                };
                rec.push(rule, target, "removed");
                false
            }
        }
    });
}

/// A usable variable name: non-empty printable ASCII without `=` or spaces.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'=')
}

/// Names programs need, exempt from the built-in name patterns (values are still
/// checked): PATH, HOME, HOSTNAME, TERM, LANG, LANGUAGE, LC_*, TZ, USER, SHELL,
/// PWD, and the Kubernetes service variables.
pub fn kept_name(name: &str) -> bool {
    kept_upper(&name.to_ascii_uppercase())
}

fn kept_upper(up: &str) -> bool {
    matches!(
        up,
        "PATH"
            | "HOME"
            | "HOSTNAME"
            | "TERM"
            | "LANG"
            | "LANGUAGE"
            | "TZ"
            | "USER"
            | "SHELL"
            | "PWD"
            | "OLDPWD"
    ) || up.starts_with("LC_")
        || up.starts_with("KUBERNETES_SERVICE_")
        || up.starts_with("KUBERNETES_PORT")
        || up.ends_with("_SERVICE_HOST")
        || up.ends_with("_SERVICE_PORT")
        || up.contains("_SERVICE_PORT_")
        || (up.ends_with("_PORT") && !up.starts_with('_'))
        || up.contains("_PORT_")
}

const SUBSTRINGS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "SECRET",
    "CREDENTIAL",
    "PRIVATE_KEY",
    "PRIVATEKEY",
    "APIKEY",
    "API_KEY",
    "ACCESS_KEY",
    "ACCESSKEY",
    "AUTHORIZATION",
    "BEARER",
    "CONNECTION_STRING",
    "CONNECTIONSTRING",
    "AUTH_CONFIG",
];

/// Words that, as a whole component, mark a secret.
const COMPONENTS: &[&str] = &["PASS", "PWD", "PW", "CREDS", "PAT", "PGPASS"];

/// First words of a `<WORD>_KEY` pair that mark a secret key.
const KEY_PAIRS: &[&str] = &[
    "API",
    "PRIVATE",
    "ACCESS",
    "SECRET",
    "SIGNING",
    "ENCRYPTION",
    "DECRYPTION",
    "MASTER",
    "SESSION",
    "ACCOUNT",
    "CLIENT",
    "LICENSE",
    "AUTH",
    "STORAGE",
    "SHARED",
    "HMAC",
    "SSH",
    "DEPLOY",
    "ADMIN",
    "SERVICE",
    "JWT",
    "WEBHOOK",
];

/// Built-in secret name patterns (case-insensitive). See docs/policy.md.
pub fn secret_name(name: &str) -> bool {
    secret_upper(&name.to_ascii_uppercase())
}

fn secret_upper(up: &str) -> bool {
    if SUBSTRINGS.iter().any(|s| up.contains(s)) {
        return true;
    }
    let mut prev: Option<&str> = None;
    let mut n = 0usize;
    for c in up.split(['_', '-', '.']).filter(|c| !c.is_empty()) {
        n += 1;
        if c.ends_with("TOKEN") {
            return true;
        }
        if COMPONENTS.contains(&c) && !(c == "PWD" && up == "PWD") {
            return true;
        }
        if c == "KEY" && prev.is_some_and(|p| KEY_PAIRS.contains(&p)) {
            return true;
        }
        prev = Some(c);
    }
    // `*_AUTH` (npm's `_auth`, basic-auth pairs)
    prev == Some("AUTH") && n > 1
}

fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn run_len(b: &[u8], from: usize, ok: impl Fn(u8) -> bool) -> usize {
    b[from..].iter().take_while(|&&c| ok(c)).count()
}

fn tok(b: u8) -> bool {
    alnum(b) || b == b'_' || b == b'-'
}

struct Prefix {
    prefix: &'static [u8],
    kind: &'static str,
    min: usize,
    /// exact length (a longer run is not this token)
    exact: bool,
    charset: fn(u8) -> bool,
    /// body must mix letters and digits
    mixed: bool,
}

fn upper_digit(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}
fn ghpat(b: u8) -> bool {
    alnum(b) || b == b'_'
}
fn slack(b: u8) -> bool {
    alnum(b) || b == b'-'
}

const fn p(
    prefix: &'static [u8],
    kind: &'static str,
    min: usize,
    exact: bool,
    charset: fn(u8) -> bool,
    mixed: bool,
) -> Prefix {
    Prefix {
        prefix,
        kind,
        min,
        exact,
        charset,
        mixed,
    }
}

const PREFIXES: &[Prefix] = &[
    p(b"AKIA", "aws-access-key-id", 16, true, upper_digit, false),
    p(b"ASIA", "aws-access-key-id", 16, true, upper_digit, false),
    p(b"ABIA", "aws-access-key-id", 16, true, upper_digit, false),
    p(b"ACCA", "aws-access-key-id", 16, true, upper_digit, false),
    p(b"ghp_", "github-token", 36, false, alnum, false),
    p(b"gho_", "github-token", 36, false, alnum, false),
    p(b"ghs_", "github-token", 36, false, alnum, false),
    p(b"ghu_", "github-token", 36, false, alnum, false),
    p(b"ghr_", "github-token", 36, false, alnum, false),
    p(b"github_pat_", "github-token", 22, false, ghpat, false),
    p(b"glpat-", "gitlab-token", 20, false, tok, false),
    p(b"xoxa-", "slack-token", 10, false, slack, false),
    p(b"xoxb-", "slack-token", 10, false, slack, false),
    p(b"xoxp-", "slack-token", 10, false, slack, false),
    p(b"xoxr-", "slack-token", 10, false, slack, false),
    p(b"xoxs-", "slack-token", 10, false, slack, false),
    p(b"xoxe-", "slack-token", 10, false, slack, false),
    p(b"xoxo-", "slack-token", 10, false, slack, false),
    p(b"xapp-", "slack-token", 10, false, slack, false),
    p(b"sk-ant-", "anthropic-key", 20, false, tok, false),
    p(b"sk-", "openai-key", 20, false, tok, true),
    p(b"AIza", "google-api-key", 35, true, tok, false),
    p(b"hf_", "huggingface-token", 30, false, alnum, false),
    p(b"npm_", "npm-token", 36, false, alnum, false),
    p(b"sk_live_", "stripe-key", 16, false, alnum, false),
    p(b"sk_test_", "stripe-key", 16, false, alnum, false),
    p(b"rk_live_", "stripe-key", 16, false, alnum, false),
    p(b"rk_test_", "stripe-key", 16, false, alnum, false),
    p(b"whsec_", "stripe-key", 16, false, alnum, false),
];

fn find_all<'a>(hay: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let n = needle.len();
    (0..hay.len().saturating_sub(n - 1)).filter(move |&i| &hay[i..i + n] == needle)
}

fn mixed(body: &[u8]) -> bool {
    body.iter().any(u8::is_ascii_digit) && body.iter().any(u8::is_ascii_alphabetic)
}

/// The kind of secret `value` holds, if it looks like one. Public formats only:
/// cloud and forge token prefixes, PEM private keys, JWTs, URLs with a password.
pub fn secret_value_kind(value: &str) -> Option<&'static str> {
    let b = value.as_bytes();
    if b.len() < 8 {
        return None;
    }
    if value.contains("-----BEGIN") && value.contains("PRIVATE KEY") {
        return Some("pem-private-key");
    }
    for i in 0..b.len() {
        if i > 0 && alnum(b[i - 1]) {
            continue;
        }
        let c = b[i];
        if !matches!(c, b'A' | b'g' | b'x' | b's' | b'r' | b'w' | b'h' | b'n') {
            continue;
        }
        for pre in PREFIXES {
            if pre.prefix[0] != c || !b[i..].starts_with(pre.prefix) {
                continue;
            }
            let start = i + pre.prefix.len();
            let n = run_len(b, start, pre.charset);
            let ok = if pre.exact {
                n == pre.min && !b.get(start + n).copied().is_some_and(tok)
            } else {
                n >= pre.min
            };
            if ok && (!pre.mixed || mixed(&b[start..start + n])) {
                return Some(pre.kind);
            }
        }
    }
    if jwt(b) {
        return Some("jwt");
    }
    if url_password(value) {
        return Some("url-password");
    }
    None
}

fn b64url(c: u8) -> bool {
    alnum(c) || c == b'_' || c == b'-'
}

fn jwt(b: &[u8]) -> bool {
    for i in find_all(b, b"eyJ") {
        if i > 0 && b64url(b[i - 1]) {
            continue;
        }
        let n1 = run_len(b, i, b64url);
        let dot1 = i + n1;
        if n1 < 10 || b.get(dot1) != Some(&b'.') {
            continue;
        }
        let s2 = dot1 + 1;
        if !b[s2..].starts_with(b"eyJ") {
            continue;
        }
        let n2 = run_len(b, s2, b64url);
        if n2 >= 10 && b.get(s2 + n2) == Some(&b'.') {
            return true;
        }
    }
    false
}

fn url_password(v: &str) -> bool {
    let mut rest = v;
    while let Some(i) = rest.find("://") {
        let scheme_ok = rest[..i]
            .bytes()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        let after = &rest[i + 3..];
        let end = after
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        if scheme_ok {
            if let Some(at) = authority.rfind('@') {
                if let Some((_, pw)) = authority[..at].split_once(':') {
                    if !pw.is_empty() {
                        return true;
                    }
                }
            }
        }
        rest = after;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_secret() {
        for n in [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_ACCESS_KEY_ID",
            "AZURE_CLIENT_SECRET",
            "GITHUB_TOKEN",
            "GH_TOKEN",
            "NPM_TOKEN",
            "VAULT_TOKEN",
            "PGPASSWORD",
            "DOCKER_AUTH_CONFIG",
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "github_token",
            "Db_Password",
            "MYSQL_PASS",
            "DB_PWD",
            "SSH_PRIVATE_KEY",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "npm_config__auth",
            "STRIPE_APIKEY",
            "JWT_SIGNING_KEY",
            "TOKEN",
            "SECRET",
            "GITLAB_PAT",
            "AZURE_STORAGE_CONNECTION_STRING",
        ] {
            assert!(secret_name(n), "{n} should be secret");
        }
    }

    #[test]
    fn names_ordinary() {
        for n in [
            "PATH",
            "HOME",
            "PWD",
            "OLDPWD",
            "TOKENIZERS_PARALLELISM",
            "MAX_TOKENS",
            "GPG_KEY",
            "PYTHON_VERSION",
            "KEYBOARD",
            "SORT_KEY",
            "LANG",
            "PASSAGE",
            "AWS_REGION",
            "SSH_AUTH_SOCK",
            "NODE_ENV",
            "HTTP_PROXY",
            "AUTHOR",
            "KUBERNETES_SERVICE_HOST",
        ] {
            assert!(!secret_name(n), "{n} should not be secret");
        }
    }

    #[test]
    fn values_secret() {
        let cases = [
            ("AKIAIOSFODNN7EXAMPLE", "aws-access-key-id"),
            ("id=ASIAY34FZKBOKMUTVV7A;", "aws-access-key-id"),
            ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "github-token"),
            ("ghs_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab", "github-token"),
            ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "github-token"),
            ("glpat-abcdefghij0123456789", "gitlab-token"),
            ("xoxb-123456789012-abcdefghijkl", "slack-token"),
            ("sk-proj-abc123DEF456ghi789JKL012mno", "openai-key"),
            ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123", "anthropic-key"),
            ("AIzaSyA1234567890abcdefghijklmnopqrstuv", "google-api-key"),
            ("hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "huggingface-token"),
            ("npm_abcdefghijklmnopqrstuvwxyz0123456789", "npm-token"),
            ("sk_live_abcdefghijklmnop1234", "stripe-key"),
            ("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----", "pem-private-key"),
            ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "jwt"),
            ("postgres://user:hunter2@db:5432/app", "url-password"),
            ("https://x-access-token:abc@github.com/org/repo.git", "url-password"),
        ];
        for (v, kind) in cases {
            assert_eq!(secret_value_kind(v), Some(kind), "{v}");
        }
    }

    #[test]
    fn values_ordinary() {
        for v in [
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "en_US.UTF-8",
            "tcp://10.96.0.1:443",
            "https://example.com/path?q=1",
            "postgres://user@db:5432/app",
            "task-manager-abcdefghijklmnopqrstuvwxyz",
            "sk-learn-tutorial-notebooks-for-everyone",
            "AKIAIOSFODNN7EXAMPLEXYZ",
            "ghp_short",
            "xterm-256color",
            "3.12.1",
            "eyJ",
            "git@github.com:org/repo.git",
            "http://proxy.internal:3128",
        ] {
            assert_eq!(secret_value_kind(v), None, "{v}");
        }
    }

    #[test]
    fn kept() {
        for n in [
            "KUBERNETES_SERVICE_HOST",
            "KUBERNETES_PORT_443_TCP",
            "TOKEN_SVC_SERVICE_HOST",
            "TOKEN_SVC_PORT",
            "LC_ALL",
        ] {
            assert!(kept_name(n), "{n}");
        }
        assert!(!kept_name("GITHUB_TOKEN"));
    }
}
