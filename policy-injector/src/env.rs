//! Environment rules: strip secrets by name and by value, keep what programs need.
//! Detection is `agentbox-secrets` (the node's rules: built-in plus
//! `[env] secret_rules`). Reports carry names (or `#index` when the name
//! itself is suspect) and the detector rule id, never values.

use agentbox_secrets::Detector;
use serde_json::{Map, Value};

use crate::annotations::{Effective, Phase};
use crate::Policy;

/// Why an entry goes: the policy rule id, whether the report may name the
/// variable, and the detector rule that matched.
pub(crate) struct Verdict<'d> {
    pub rule: &'static str,
    pub by_name: bool,
    pub detail: Option<&'d str>,
}

fn verdict_of<'d>(
    rule: &'static str,
    by_name: bool,
    detail: Option<&'d str>,
) -> Option<Verdict<'d>> {
    Some(Verdict {
        rule,
        by_name,
        detail,
    })
}

/// Why an entry goes; `None` keeps it.
pub(crate) fn verdict<'d>(policy: &'d Policy, eff: &Effective, entry: &str) -> Option<Verdict<'d>> {
    let d = policy.secrets();
    let Some((name, value)) = entry.split_once('=') else {
        return verdict_of("env.malformed", false, None);
    };
    if !valid_name(name) {
        return verdict_of("env.malformed", false, None);
    }
    if let Some(f) = d.find(name) {
        return verdict_of("env.malformed", false, Some(f.rule));
    }
    if eff.strip.iter().any(|g| g.matches(name)) {
        return verdict_of("env.annotation-strip", true, None);
    }
    if policy.env_allow.iter().any(|g| g.matches(name)) {
        return None;
    }
    if policy.env_strip.iter().any(|g| g.matches(name)) {
        return verdict_of("env.config-strip", true, None);
    }
    if eff.phase == Phase::Setup {
        return None;
    }
    if !d.kept_name(name) {
        if let Some(r) = d.name_rule(name) {
            return verdict_of("env.secret-name", true, Some(r));
        }
    }
    if let Some(f) = d.env_value(name, value) {
        return verdict_of("env.secret-value", true, Some(f.rule));
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
            Some(v) => {
                let target = if v.by_name {
                    s.split_once('=').map(|(n, _)| n).unwrap_or("").to_string()
                } else {
                    format!("#{idx}")
                };
                rec.push_detail(v.rule, target, "removed", v.detail);
                false
            }
        }
    });
}

/// A usable variable name: non-empty printable ASCII without `=` or spaces.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'=')
}

/// Names programs need, exempt from the built-in name rules (values are still
/// checked): PATH, HOME, HOSTNAME, TERM, LANG, LANGUAGE, LC_*, TZ, USER, SHELL,
/// PWD, and the Kubernetes service variables. See `agentbox-secrets`.
pub fn kept_name(name: &str) -> bool {
    Detector::builtin().kept_name(name)
}

/// Does `name` match a built-in secret name rule? See docs/policy.md.
pub fn secret_name(name: &str) -> bool {
    Detector::builtin().name_rule(name).is_some()
}

/// The built-in rule id of a secret `value` holds (no name context), if any:
/// token formats, private keys, JWTs, credentials in URLs, credential headers,
/// secret assignments inside the value.
pub fn secret_value_kind(value: &str) -> Option<&'static str> {
    Detector::builtin().find(value).map(|f| f.rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(prefix: &str, body: &str) -> String {
        format!("{prefix}{body}")
    }

    #[test]
    fn wrappers_use_the_detector() {
        assert!(secret_name("GITHUB_TOKEN"));
        assert!(secret_name("Db_Password"));
        assert!(!secret_name("PWD"));
        assert!(!secret_name("TOKENIZERS_PARALLELISM"));
        assert!(kept_name("KUBERNETES_SERVICE_HOST"));
        assert!(!kept_name("GITHUB_TOKEN"));
        let gh = tok("ghp_", "abcdefghijklmnopqrstuvwxyz0123456789");
        assert_eq!(secret_value_kind(&gh), Some("github-pat"));
        assert_eq!(
            secret_value_kind("postgres://user:hunter2@db:5432/app"),
            Some("url-credentials")
        );
        assert_eq!(secret_value_kind("/usr/local/bin:/usr/bin"), None);
        assert_eq!(
            secret_value_kind("sk-learn-tutorial-notebooks-for-everyone"),
            None
        );
    }

    #[test]
    fn verdicts_name_the_detector_rule() {
        let p = Policy::from_profile(crate::Profile::Sensitive);
        let eff = crate::annotations::effective(&p, None).unwrap();
        let v = |e: &str| verdict(&p, &eff, e).map(|v| (v.rule, v.by_name, v.detail));
        assert_eq!(
            v("GITHUB_TOKEN=x"),
            Some(("env.secret-name", true, Some("name-token")))
        );
        let sg = format!(
            "SENDGRID={}",
            tok(
                "SG.",
                "abcdefghijABCDEFGHIJ01.abcdefghijABCDEFGHIJ0123456789abcdefghijklm"
            )
        );
        assert_eq!(
            v(&sg),
            Some(("env.secret-value", true, Some("sendgrid-api-token")))
        );
        assert_eq!(
            v("UPSTREAM_KEY=Zq3xR8vLm2NpT5wK9bYc4"),
            Some(("env.secret-value", true, Some("generic-secret")))
        );
        let name_tok = format!("{}=x", tok("ghp_", "abcdefghijklmnopqrstuvwxyz0123456789"));
        assert_eq!(
            v(&name_tok),
            Some(("env.malformed", false, Some("github-pat")))
        );
        assert_eq!(v("PATH=/bin"), None);
        assert_eq!(v("SORT_KEY=created_at"), None);
        assert_eq!(
            v("AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/secrets/eks/token"),
            None
        );
    }
}
