use super::*;
use crate::wiring::tests::{FRAG_V2, FRAG_V3};

pub(crate) const POLICY: &str = "profile = \"sensitive\"\n[runtime]\nbackend = \"runsc\"\nrunsc_flags = { platform = \"ptrace\" }\n";

/// A ConfigMap + binaries folder as the chart and the image provide them.
pub(crate) fn fixture(dir: &Path) -> (PathBuf, PathBuf) {
    let cm = dir.join("configmap");
    let bin = dir.join("image-bin");
    std::fs::create_dir_all(&cm).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(cm.join(FRAGMENT_V2), FRAG_V2).unwrap();
    std::fs::write(cm.join(FRAGMENT_V3), FRAG_V3).unwrap();
    std::fs::write(cm.join("gvisor.toml"), POLICY).unwrap();
    for b in [SHIM, POLICY_CLI] {
        std::fs::write(bin.join(b), format!("#!/bin/sh\necho {b}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join(b), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (cm, bin)
}

#[test]
fn loads_a_good_source() {
    let d = tempfile::tempdir().unwrap();
    let (cm, bin) = fixture(d.path());
    let s = load(&cm, &bin, &Layout::standard("/host")).unwrap();
    assert_eq!(s.handlers, ["agentbox-gvisor"]);
    assert_eq!(s.policies[0].path, Path::new("/etc/agentbox/gvisor.toml"));
    assert_eq!(
        s.binaries[0].dest,
        Path::new("/opt/agentbox/bin/containerd-shim-agentbox-v1")
    );
}

#[test]
fn refuses_bad_policies_and_mismatched_fragments() {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "gvisor.toml",
            "profile = \"permissive\"\n".into(),
            "policy for handler agentbox-gvisor is refused",
        ),
        (
            "gvisor.toml",
            "[runtime]\nbackend = \"shim\"\n".into(),
            "needs runtime.shim",
        ),
        ("gvisor.toml", "[runtime]\nbogus = 1\n".into(), "bogus"),
        (
            FRAGMENT_V2,
            FRAG_V2.replace("io.containerd.agentbox.v1", "io.containerd.runc.v2"),
            "differs between",
        ),
        (
            FRAGMENT_V2,
            FRAG_V2.replace("/etc/agentbox/gvisor.toml", "/etc/agentbox/other.toml"),
            "differs between",
        ),
    ];
    for (file, text, want) in cases {
        let d = tempfile::tempdir().unwrap();
        let (cm, bin) = fixture(d.path());
        std::fs::write(cm.join(file), &text).unwrap();
        let e = load(&cm, &bin, &Layout::standard("/host"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{file}: {e}");
    }
    // both fragments changed alike: the handler-level checks
    for (from, to, want) in [
        (
            "io.containerd.agentbox.v1",
            "io.containerd.runc.v2",
            "runtime_type must be",
        ),
        (
            "/opt/agentbox/bin/",
            "/usr/local/bin/",
            "runtime_path must be",
        ),
        (
            "/etc/agentbox/gvisor.toml",
            "/etc/other/gvisor.toml",
            "directly in /etc/agentbox",
        ),
        (
            "/etc/agentbox/gvisor.toml",
            "/etc/agentbox/missing.toml",
            "cannot read",
        ),
    ] {
        let d = tempfile::tempdir().unwrap();
        let (cm, bin) = fixture(d.path());
        std::fs::write(cm.join(FRAGMENT_V2), FRAG_V2.replace(from, to)).unwrap();
        std::fs::write(cm.join(FRAGMENT_V3), FRAG_V3.replace(from, to)).unwrap();
        let e = load(&cm, &bin, &Layout::standard("/host"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{to}: {e}");
    }
    let d = tempfile::tempdir().unwrap();
    let (cm, bin) = fixture(d.path());
    std::fs::remove_file(bin.join(POLICY_CLI)).unwrap();
    let e = load(&cm, &bin, &Layout::standard("/host"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("agentbox-policy"), "{e}");
}
