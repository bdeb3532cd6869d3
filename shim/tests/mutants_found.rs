//! Cases `make mutants` found untested in the shim's pure modules (issue 13):
//! each test fails on the mutant named in its comment.

use std::os::unix::fs::symlink;
use std::path::Path;

use agentbox_policy::{NoHostFs, Policy, Profile};
use agentbox_shim::audit::{AuditLog, Subject};
use agentbox_shim::config::{Config, LifetimeConfig};
use agentbox_shim::enforce::{enforce_bundle, write_atomic, EnforceError};
use agentbox_shim::options::{decode, encode, RuntimeOptions};
use serde_json::{json, Value};

// ---- options: runtimeoptions.v1.Options -----------------------------------

/// Multi-byte varints (a field longer than 127 bytes) round-trip: the
/// continuation bit is set on every byte but the last, and each 7-bit group
/// lands at its place (`push_varint`'s `|` as `^`, `read_varint`'s `<<` as `>>`).
#[test]
fn options_with_long_fields_round_trip() {
    for len in [127, 128, 200, 300, 16_384, 70_000] {
        let o = RuntimeOptions {
            config_path: Some(format!("/etc/{}", "p".repeat(len))),
            config_body: Some("b".repeat(len)),
        };
        assert_eq!(decode(&encode(&o)).unwrap(), o, "length {len}");
    }
}

/// A length of 200 is encoded as protobuf does: `0xc8 0x01`.
#[test]
fn options_length_varint_is_protobufs() {
    let body = "b".repeat(200);
    let bytes = encode(&RuntimeOptions {
        config_path: None,
        config_body: Some(body),
    });
    // field 1 (type name, 25 bytes), then field 3 with its length
    let at = 2 + "runtimeoptions.v1.Options".len();
    assert_eq!(bytes[at..at + 3], [0x1a, 0xc8, 0x01]);
}

/// An unknown fixed64 field (wire type 1) is skipped, not refused: newer
/// containerd may add fields (deleting `decode`'s `1 =>` arm).
#[test]
fn options_skip_unknown_fixed64_fields() {
    let mut b = vec![(6 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8];
    b.extend(encode(&RuntimeOptions {
        config_path: Some("/p".into()),
        config_body: None,
    }));
    assert_eq!(decode(&b).unwrap().config_path.as_deref(), Some("/p"));
    // and a truncated one is an error
    assert!(decode(&[(6 << 3) | 1, 1, 2, 3]).is_err());
}

// ---- config: the shim's tables ----------------------------------------------

/// `[lifetime] grace_seconds` defaults to 10 s and is taken as given
/// (`LifetimeConfig::grace` returning 0 or 1).
#[test]
fn lifetime_grace_defaults_to_ten_seconds() {
    assert_eq!(LifetimeConfig::default().grace(), 10);
    let c =
        Config::from_toml_str("[lifetime]\nmax_seconds = 60\ngrace_seconds = 3\n", "t").unwrap();
    assert_eq!(c.lifetime.grace(), 3);
    assert_eq!(c.lifetime.max_seconds, 60);
}

/// Every malformed runsc flag name is refused on its own: empty, starting
/// with `-`, holding `=` or whitespace (each `||` of the check as `&&`).
#[test]
fn malformed_runsc_flag_names_are_refused() {
    for name in [
        "\"\"",
        "\"-debug\"",
        "\"debug=x\"",
        "\"de bug\"",
        "\"de\\tbug\"",
    ] {
        let text = format!("[runtime]\nrunsc_flags = {{ {name} = true }}\n");
        let e = Config::from_toml_str(&text, "t").unwrap_err().to_string();
        assert!(e.contains("invalid flag name"), "{name}: {e}");
    }
    Config::from_toml_str("[runtime]\nrunsc_flags = { debug-log = \"/x\" }\n", "t").unwrap();
}

/// A parse error names the line the parser stopped at, counted by newlines
/// (`line_of`'s `== b'\n'` as `!=`): "is not valid: line N: …".
#[test]
fn parse_errors_name_the_line() {
    for (text, line) in [
        ("profile = \"standard\"\n[runtime]\n\u{1}garbage ]] =\n", 3),
        ("[runtime]\nbackend = \"runsc\"\n\n\n[audit\n", 5),
    ] {
        let e = Config::from_toml_str(text, "t").unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("agentbox config t is not valid: line {line}: ")),
            "{e}"
        );
    }
}

/// The config file's size limit is 1 MiB: a file of exactly 1 MiB loads, one
/// byte more is refused before it is parsed (`>` as `>=` or `==`).
#[test]
fn config_of_exactly_one_mib_loads_and_one_byte_more_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("agentbox.toml");
    let head = "profile = \"standard\"\n#";
    let mut text = String::from(head);
    text.push_str(&"x".repeat((1 << 20) - head.len() - 1));
    text.push('\n');
    assert_eq!(text.len(), 1 << 20);
    std::fs::write(&p, &text).unwrap();
    Config::load(&p).unwrap();
    text.push('\n');
    std::fs::write(&p, &text).unwrap();
    let e = Config::load(&p).unwrap_err().to_string();
    assert!(e.contains("larger than"), "{e}");
}

// ---- audit ------------------------------------------------------------------

/// An empty CRI annotation counts as absent: the sandbox id falls back to
/// the container id, and empty names are left out (deleting the `!` of
/// `filter(|s| !s.is_empty())`).
#[test]
fn empty_cri_annotations_are_absent() {
    let ann = json!({
        "io.kubernetes.cri.sandbox-id": "",
        "io.kubernetes.cri.sandbox-name": "",
        "io.kubernetes.cri.container-name": "agent"
    });
    let s = Subject::from_annotations("k8s.io", "c1", ann.as_object());
    assert_eq!(s.sandbox_id, "c1");
    assert_eq!(s.pod, None);
    assert_eq!(s.container.as_deref(), Some("agent"));
}

/// Lines made by `AuditLog::line` are written as given by `append_lines`
/// (it returning `Ok(())` without writing).
#[test]
fn append_lines_writes_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::new(dir.path().join("audit.jsonl"));
    let s = Subject::from_annotations("ns", "c1", None);
    let mut buf = AuditLog::line("activity", &s, json!({"n": 1}));
    buf.extend(AuditLog::line("activity", &s, json!({"n": 2})));
    log.append_lines(&buf).unwrap();
    let text = std::fs::read_to_string(log.path()).unwrap();
    let ns: Vec<i64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, [1, 2]);
}

/// The audit log is never written through a symlink at its path (a link
/// planted there must not redirect records): `O_NOFOLLOW` dropped by `|` as `&`.
#[test]
fn audit_log_does_not_follow_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere");
    std::fs::write(&target, "").unwrap();
    let path = dir.path().join("audit.jsonl");
    symlink(&target, &path).unwrap();
    let log = AuditLog::new(&path);
    assert!(log
        .record("create", &Subject::default(), json!({}))
        .is_err());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
}

// ---- enforce: the bundle's config.json -------------------------------------

fn bundle(dir: &Path, spec: &Value) -> std::path::PathBuf {
    let b = dir.join("bundle");
    std::fs::create_dir_all(b.join("rootfs")).unwrap();
    std::fs::write(b.join("config.json"), serde_json::to_vec(spec).unwrap()).unwrap();
    b
}

fn spec() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {"args": ["sleep", "60"], "cwd": "/", "terminal": true,
                    "env": ["PATH=/bin", "GITHUB_TOKEN=x"]},
        "root": {"path": "rootfs"},
        "annotations": {"io.kubernetes.cri.container-name": "agent", "note": "kept"},
        "linux": {"namespaces": [
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
            {"type": "network", "path": "/var/run/netns/cni-1"}
        ]}
    })
}

fn records(log: &AuditLog) -> Vec<Value> {
    std::fs::read_to_string(log.path())
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Create: the rewritten spec is what the bundle holds afterwards, the
/// caller's extra fields are in the `create` record, and the spec's
/// annotations and terminal flag are reported (`write_atomic` → `Ok(())`,
/// `merge` → `()`, `Enforced::annotations`/`terminal` constant).
#[test]
fn enforce_bundle_writes_the_rewritten_spec_and_audits_extra_fields() {
    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path(), &spec());
    let log = AuditLog::new(dir.path().join("audit.jsonl"));
    let policy = Policy::from_profile(Profile::Sensitive);
    let e = enforce_bundle(
        &policy,
        &log,
        &b,
        "k8s.io",
        "c1",
        json!({"sandbox": "gvisor"}),
        &NoHostFs,
        &|| true,
    )
    .unwrap();
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    assert_eq!(on_disk, e.spec);
    let env = on_disk["process"]["env"].as_array().unwrap();
    assert!(!env
        .iter()
        .any(|v| v.as_str().unwrap().starts_with("GITHUB_TOKEN")));
    assert_eq!(e.annotations()["note"], "kept");
    assert!(e.terminal());
    let recs = records(&log);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["event"], "create");
    assert_eq!(recs[0]["sandbox"], "gvisor");
    assert!(recs[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["target"] == "GITHUB_TOKEN"));

    let mut plain = spec();
    plain["process"]["terminal"] = json!(false);
    let b = bundle(dir.path(), &plain);
    let e = enforce_bundle(
        &policy,
        &log,
        &b,
        "k8s.io",
        "c2",
        json!({}),
        &NoHostFs,
        &|| true,
    )
    .unwrap();
    assert!(!e.terminal());
}

/// When the caller gave up waiting for the host's answers, nothing is
/// recorded or written and the container does not run (deleting the `!`
/// of `if !proceed()`).
#[test]
fn enforce_bundle_gives_up_when_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path(), &spec());
    let before = std::fs::read(b.join("config.json")).unwrap();
    let log = AuditLog::new(dir.path().join("audit.jsonl"));
    let policy = Policy::from_profile(Profile::Sensitive);
    let e = enforce_bundle(
        &policy,
        &log,
        &b,
        "k8s.io",
        "c1",
        json!({}),
        &NoHostFs,
        &|| false,
    )
    .unwrap_err();
    assert!(
        matches!(e, EnforceError::Input(ref m) if m.contains("gave up")),
        "{e}"
    );
    assert!(records(&log).is_empty());
    assert_eq!(std::fs::read(b.join("config.json")).unwrap(), before);
}

/// A refusal is audited with its reason and the report, plus the caller's
/// extra fields (`merge` → `()`, `report_json` → `Null`).
#[test]
fn enforce_bundle_audits_a_refusal_with_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec();
    // no ipc entry: the host's IPC namespace
    s["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "uts"}, {"type": "mount"}]);
    let b = bundle(dir.path(), &s);
    let log = AuditLog::new(dir.path().join("audit.jsonl"));
    let policy = Policy::from_profile(Profile::Sensitive);
    let e = enforce_bundle(
        &policy,
        &log,
        &b,
        "k8s.io",
        "c1",
        json!({"sandbox": "gvisor"}),
        &NoHostFs,
        &|| true,
    )
    .unwrap_err();
    assert!(matches!(e, EnforceError::Rejected { .. }), "{e}");
    let recs = records(&log);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["event"], "reject");
    assert_eq!(recs[0]["sandbox"], "gvisor");
    assert_eq!(recs[0]["report"]["decision"], "rejected");
    assert!(recs[0]["reason"].as_str().unwrap().contains("IPC"));
}

/// A `config.json` over 8 MiB is refused by the shim before it is read, with
/// its own reason, and the refusal is audited (`>` as `==` or `<`).
#[test]
fn enforce_bundle_refuses_a_spec_over_8_mib_unread() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("bundle");
    std::fs::create_dir_all(&b).unwrap();
    // sparse: costs no disk unless someone reads it
    let f = std::fs::File::create(b.join("config.json")).unwrap();
    f.set_len((8 << 20) + 1).unwrap();
    let log = AuditLog::new(dir.path().join("audit.jsonl"));
    let policy = Policy::from_profile(Profile::Sensitive);
    let e = enforce_bundle(
        &policy,
        &log,
        &b,
        "k8s.io",
        "c1",
        json!({}),
        &NoHostFs,
        &|| true,
    )
    .unwrap_err();
    assert!(
        matches!(e, EnforceError::Input(ref m) if m.contains("larger than 8388608 bytes")),
        "{e}"
    );
    assert_eq!(records(&log)[0]["event"], "reject");
}

/// `write_atomic` skips a temporary name that is taken and reports a real
/// error as it is (the `AlreadyExists` guard as `true`, `false` or `!=`).
#[test]
fn write_atomic_skips_taken_names_and_reports_real_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path()
            .join(format!(".agentbox-{}-0.tmp", std::process::id())),
        "taken",
    )
    .unwrap();
    let target = dir.path().join("config.json");
    write_atomic(&target, &json!({"a": 1})).unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), r#"{"a":1}"#);

    let e = write_atomic(&dir.path().join("missing/config.json"), &json!({})).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
}
