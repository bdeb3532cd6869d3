//! docs/policy.md lists every rule id with its description, generated from
//! the table: this test fails when the two drift. Regenerate with
//! `UPDATE_DOCS=1 cargo test -p agentbox-secrets --test docs` and review.

use agentbox_secrets::{Detector, RuleKind};

const BEGIN: &str =
    "<!-- secret-rules:begin (generated from secrets/rules.toml by secrets/tests/docs.rs) -->";
const END: &str = "<!-- secret-rules:end -->";

fn table() -> String {
    let mut out = String::from("| id | kind | finds |\n|---|---|---|\n");
    for r in Detector::builtin().rules() {
        let kind = match r.kind {
            RuleKind::Name => "name".to_string(),
            RuleKind::Format => "format".to_string(),
            RuleKind::Structural => "structural".to_string(),
            RuleKind::Pattern => "pattern".to_string(),
            RuleKind::Keyword => format!(
                "keyword ({})",
                r.keywords
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            r.id,
            kind,
            r.description.replace('|', "\\|")
        ));
    }
    out
}

#[test]
fn policy_md_lists_every_rule() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy.md");
    let doc = std::fs::read_to_string(path).expect("docs/policy.md");
    let (Some(a), Some(b)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/policy.md lacks the {BEGIN} … {END} markers");
    };
    let current = &doc[a + BEGIN.len()..b];
    let want = format!("\n{}", table());
    if std::env::var_os("UPDATE_DOCS").is_some() && current != want {
        let new = format!("{}{BEGIN}{want}{}", &doc[..a], &doc[b..]);
        std::fs::write(path, new).unwrap();
        return;
    }
    assert_eq!(
        current, want,
        "docs/policy.md is out of date: UPDATE_DOCS=1 cargo test -p agentbox-secrets --test docs"
    );
}
