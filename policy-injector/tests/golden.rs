//! Golden tests: each fixture spec in `tests/fixtures/` is rewritten under a
//! policy and compared with `tests/fixtures/expected/<fixture>.<policy>.json`
//! (`{"spec": …, "report": …}`; `spec` is null when refused).
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p agentbox-policy --test golden`
//! and review the diff.

use std::path::PathBuf;

use agentbox_policy::{apply, apply_value, Decision, NoHostFs, Policy, Profile};
use serde_json::{json, Value};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn policy(name: &str) -> Policy {
    match name {
        "sensitive" => Policy::from_profile(Profile::Sensitive),
        "standard" => Policy::from_profile(Profile::Standard),
        "config" => Policy::from_file(&dir().join("config.toml")).expect("config.toml loads"),
        other => panic!("unknown policy {other}"),
    }
}

fn golden(fixture: &str, pol: &str) {
    let input = std::fs::read(dir().join(format!("{fixture}.json"))).unwrap();
    let p = policy(pol);
    let d = apply(&p, &input, &NoHostFs).expect("fixture parses");
    let got = match &d {
        Decision::Allowed { spec, report } => json!({"spec": spec, "report": report}),
        Decision::Rejected { report, .. } => json!({"spec": null, "report": report}),
    };
    let path = dir().join(format!("expected/{fixture}.{pol}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let mut s = serde_json::to_string_pretty(&got).unwrap();
        s.push('\n');
        std::fs::write(&path, s).unwrap();
    }
    let want: Value = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|_| panic!("missing {}", path.display())),
    )
    .unwrap();
    assert_eq!(
        got,
        want,
        "{fixture} under {pol} differs from {}",
        path.display()
    );

    // Idempotence: the rewritten spec passes unchanged, with no changes reported.
    if let Decision::Allowed { spec, .. } = d {
        match apply_value(&p, spec.clone(), &NoHostFs) {
            Decision::Allowed {
                spec: again,
                report,
            } => {
                assert_eq!(
                    again, spec,
                    "{fixture}/{pol}: second apply changed the spec"
                );
                assert!(
                    report.changes.is_empty(),
                    "{fixture}/{pol}: second apply reported {:?}",
                    report.changes
                );
            }
            Decision::Rejected { reason, .. } => {
                panic!("{fixture}/{pol}: second apply refused: {reason}")
            }
        }
    }
}

macro_rules! golden_tests {
    ($($name:ident: $fixture:literal, $policy:literal;)*) => {
        $(#[test] fn $name() { golden($fixture, $policy); })*
    };
}

golden_tests! {
    cri_container_sensitive: "cri-container", "sensitive";
    cri_container_standard: "cri-container", "standard";
    cri_sandbox_sensitive: "cri-sandbox", "sensitive";
    cri_sandbox_standard: "cri-sandbox", "standard";
    host_network: "host-network", "sensitive";
    host_network_standard: "host-network", "standard";
    host_pid: "host-pid", "standard";
    host_pid_path: "host-pid-path", "standard";
    cwd_proc: "cwd-proc", "standard";
    runtime_sockets_standard: "runtime-sockets", "standard";
    runtime_sockets_sensitive: "runtime-sockets", "sensitive";
    env_secrets: "env-secrets", "sensitive";
    privileged: "privileged", "standard";
    unmanaged_host_sensitive: "unmanaged-host", "sensitive";
    unmanaged_host_standard: "unmanaged-host", "standard";
    fs_type: "fs-type", "standard";
    ann_loosen_profile: "ann-loosen-profile", "sensitive";
    ann_standard_under_standard: "ann-loosen-profile", "standard";
    ann_unknown: "ann-unknown", "standard";
    ann_tighten: "ann-tighten", "standard";
    setup_phase: "setup-phase", "sensitive";
    agent_phase: "agent-phase", "sensitive";
    with_config: "with-config", "config";
    cri_container_config: "cri-container", "config";
    privileged_sensitive: "privileged", "sensitive";
    unknown_fields: "unknown-fields", "standard";
    // issue 7: security hardening
    setup_phase_config: "setup-phase", "config";
    setup_phase_standard: "setup-phase", "standard";
    agent_phase_config: "agent-phase", "config";
    cri_sandbox_config: "cri-sandbox", "config";
    runtime_annotations_standard: "runtime-annotations", "standard";
    runtime_annotations_config: "runtime-annotations", "config";
    root_host_standard: "root-host", "standard";
    root_host_sensitive: "root-host", "sensitive";
    readonly_source_standard: "readonly-source", "standard";
    readonly_source_sensitive: "readonly-source", "sensitive";
    host_ns_indirect: "host-ns-indirect", "standard";
}
