use super::*;

pub(crate) const FRAG_V2: &str = r#"# containerd 1.6 / 1.7 (config version 2): the agentbox runtime handlers.

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.agentbox-gvisor]
  runtime_type = "io.containerd.agentbox.v1"
  runtime_path = "/opt/agentbox/bin/containerd-shim-agentbox-v1"
  pod_annotations = ["agentbox.dev/*"]
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.agentbox-gvisor.options]
    ConfigPath = "/etc/agentbox/gvisor.toml"
"#;

pub(crate) const FRAG_V3: &str = r#"# containerd 2.x (config version 3)

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.agentbox-gvisor]
  runtime_type = "io.containerd.agentbox.v1"
  runtime_path = "/opt/agentbox/bin/containerd-shim-agentbox-v1"
  pod_annotations = ["agentbox.dev/*"]
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.agentbox-gvisor.options]
    ConfigPath = "/etc/agentbox/gvisor.toml"
"#;

const ADMIN_V2: &str = r#"# Managed by the node image. Ask #platform before changing.
version = 2

root = "/var/lib/containerd"   # big disk

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.9"
    # CNI from the distribution
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = true

  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
# trailing words
"#;

const V1_6: ContainerdVersion = ContainerdVersion::new(1, 6, 20);
const V2_1: ContainerdVersion = ContainerdVersion::new(2, 1, 9);

fn frags() -> Fragments {
    Fragments::parse(FRAG_V2, FRAG_V3).unwrap()
}

fn inputs<'a>(
    config: Option<&'a str>,
    version: ContainerdVersion,
    f: &'a Fragments,
    stale: &'a [String],
) -> Inputs<'a> {
    Inputs {
        config_path: Path::new("/etc/containerd/config.toml"),
        config,
        version,
        fragments: f,
        dropin_path: Path::new("/etc/containerd/conf.d/agentbox.toml"),
        stale_handlers: stale,
    }
}

fn value(text: &str) -> toml::Table {
    toml::from_str(text).unwrap()
}

#[test]
fn in_place_keeps_every_admin_byte_and_adds_the_handlers_at_the_end() {
    let f = frags();
    let p = plan(&inputs(Some(ADMIN_V2), V1_6, &f, &[])).unwrap();
    assert_eq!(p.mode, Mode::InPlace { created: false });
    assert_eq!(p.schema, Schema::V2);
    assert_eq!(p.handlers, ["agentbox-gvisor"]);
    // the admin's text is a prefix: comments, spacing and order untouched
    assert!(p.text.starts_with(ADMIN_V2), "{}", p.text);
    let added = &p.text[ADMIN_V2.len()..];
    assert!(added.contains(MARKER), "{added}");
    let v = value(&p.text);
    let rt = &v["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
    assert_eq!(
        rt["agentbox-gvisor"]["options"]["ConfigPath"].as_str(),
        Some("/etc/agentbox/gvisor.toml")
    );
    assert_eq!(rt["runc"]["options"]["SystemdCgroup"].as_bool(), Some(true));
    assert_eq!(
        v["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"].as_str(),
        Some("registry.k8s.io/pause:3.9")
    );
}

#[test]
fn in_place_twice_is_a_fixed_point() {
    let f = frags();
    let once = plan(&inputs(Some(ADMIN_V2), V1_6, &f, &[])).unwrap().text;
    let twice = plan(&inputs(Some(&once), V1_6, &f, &[])).unwrap().text;
    assert_eq!(once, twice);
}

#[test]
fn removing_the_handlers_gives_back_the_admin_file() {
    let f = frags();
    let wired = plan(&inputs(Some(ADMIN_V2), V1_6, &f, &[])).unwrap().text;
    let back = remove_handlers(
        Path::new("/c"),
        &wired,
        Schema::V2,
        &["agentbox-gvisor".into()],
    )
    .unwrap()
    .unwrap();
    assert_eq!(back, ADMIN_V2);
    assert!(remove_handlers(
        Path::new("/c"),
        ADMIN_V2,
        Schema::V2,
        &["agentbox-gvisor".into()]
    )
    .unwrap()
    .is_none());
}

#[test]
fn a_changed_fragment_replaces_only_that_handler() {
    let f = frags();
    let wired = plan(&inputs(Some(ADMIN_V2), V1_6, &f, &[])).unwrap().text;
    let f2 = Fragments::parse(
        &FRAG_V2.replace("gvisor.toml", "gvisor-2.toml"),
        &FRAG_V3.replace("gvisor.toml", "gvisor-2.toml"),
    )
    .unwrap();
    let p = plan(&inputs(Some(&wired), V1_6, &f2, &[])).unwrap();
    assert!(p.text.starts_with(ADMIN_V2));
    assert_ne!(p.text, wired);
    let v = value(&p.text);
    assert_eq!(
        v["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["agentbox-gvisor"]
            ["options"]["ConfigPath"]
            .as_str(),
        Some("/etc/agentbox/gvisor-2.toml")
    );
    assert_eq!(p.text.matches(MARKER).count(), 1, "{}", p.text);
}

#[test]
fn stale_handlers_go_and_an_admin_handler_of_the_same_name_is_replaced() {
    let two_v2 = format!(
        "{FRAG_V2}\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.agentbox-kata]\n  runtime_type = \"io.containerd.agentbox.v1\"\n"
    );
    let two_v3 = format!(
        "{FRAG_V3}\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.agentbox-kata]\n  runtime_type = \"io.containerd.agentbox.v1\"\n"
    );
    let f2 = Fragments::parse(&two_v2, &two_v3).unwrap();
    let wired = plan(&inputs(Some(ADMIN_V2), V1_6, &f2, &[])).unwrap();
    assert_eq!(wired.handlers, ["agentbox-gvisor", "agentbox-kata"]);
    let f1 = frags();
    let stale = vec!["agentbox-kata".to_string()];
    let p = plan(&inputs(Some(&wired.text), V1_6, &f1, &stale)).unwrap();
    let v = value(&p.text);
    let rt = v["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
        .as_table()
        .unwrap();
    assert!(rt.contains_key("agentbox-gvisor") && !rt.contains_key("agentbox-kata"));
    // a hand-made agentbox-gvisor (manual install) is replaced, not duplicated
    let manual = format!(
        "{ADMIN_V2}[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.agentbox-gvisor]\n  runtime_type = \"io.containerd.agentbox.v1\"\n"
    );
    let p = plan(&inputs(Some(&manual), V1_6, &f1, &[])).unwrap();
    assert_eq!(
        p.text.matches("runtimes.agentbox-gvisor]").count(),
        1,
        "{}",
        p.text
    );
}

#[test]
fn containerd_2_with_an_import_glob_gets_a_drop_in_and_an_untouched_config() {
    let f = frags();
    let admin = "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n";
    let p = plan(&inputs(Some(admin), V2_1, &f, &[])).unwrap();
    assert_eq!(
        p.mode,
        Mode::DropIn {
            path: "/etc/containerd/conf.d/agentbox.toml".into()
        }
    );
    let v = value(&p.text);
    assert_eq!(v["version"].as_integer(), Some(3));
    assert!(
        v["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]
            .get("agentbox-gvisor")
            .is_some()
    );
    // a version 2 root config: the drop-in must not be newer than it
    let admin2 = "version = 2\nimports = [\"conf.d/*.toml\"]\n";
    let p = plan(&inputs(Some(admin2), V2_1, &f, &[])).unwrap();
    assert!(matches!(p.mode, Mode::DropIn { .. }));
    let v = value(&p.text);
    assert_eq!(v["version"].as_integer(), Some(2));
    assert!(v["plugins"].get("io.containerd.grpc.v1.cri").is_some());
}

#[test]
fn containerd_1_never_gets_a_drop_in() {
    // 1.x replaces the whole CRI plugin section with an imported one
    let f = frags();
    let admin = ADMIN_V2.replacen(
        "version = 2\n",
        "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
        1,
    );
    let admin = admin.as_str();
    let p = plan(&inputs(Some(admin), V1_6, &f, &[])).unwrap();
    assert_eq!(p.mode, Mode::InPlace { created: false });
}

#[test]
fn containerd_2_without_a_matching_import_is_edited_in_place() {
    let f = frags();
    for admin in [
        "version = 3\n",
        "version = 3\nimports = [\"/etc/other/*.toml\"]\n",
        "version = 3\nimports = [\"/etc/containerd/conf.d/*.conf\"]\n",
    ] {
        let p = plan(&inputs(Some(admin), V2_1, &f, &[])).unwrap();
        assert_eq!(p.mode, Mode::InPlace { created: false }, "{admin}");
        assert!(p.text.starts_with(admin));
    }
}

#[test]
fn imports_resolve_like_containerd() {
    let doc = |s: &str| s.parse::<DocumentMut>().unwrap();
    let cfg = Path::new("/etc/containerd/config.toml");
    let d = Path::new("/etc/containerd/conf.d/agentbox.toml");
    assert!(imports_cover(cfg, &doc("imports = [\"conf.d/*.toml\"]"), d));
    assert!(imports_cover(
        cfg,
        &doc("imports = [\"./conf.d/../conf.d/*.toml\"]"),
        d
    ));
    assert!(imports_cover(
        cfg,
        &doc("imports = [\"/etc/containerd/conf.d/agentbox.toml\"]"),
        d
    ));
    assert!(!imports_cover(
        cfg,
        &doc("imports = [\"/etc/containerd/*.toml\"]"),
        d
    ));
    assert!(!imports_cover(cfg, &doc("imports = []"), d));
    assert!(!imports_cover(cfg, &doc("x = 1"), d));
}

#[test]
fn no_config_file() {
    let f = frags();
    let e = plan(&inputs(None, V1_6, &f, &[])).unwrap_err().to_string();
    assert!(e.contains("containerd config default"), "{e}");
    let p = plan(&inputs(None, V2_1, &f, &[])).unwrap();
    assert_eq!(p.mode, Mode::InPlace { created: true });
    let v = value(&p.text);
    assert_eq!(v["version"].as_integer(), Some(3));
}

#[test]
fn unsupported_configs_are_refused_with_reasons() {
    let f = frags();
    let cases = [
        ("root = \"/x\"\n", V1_6, "no `version`"),
        ("version = 3\n", V1_6, "needs containerd 2.x"),
        ("version = 7\n", V2_1, "version 7"),
        ("version = 2\n[plugins\n", V1_6, "not valid TOML"),
        (
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nruntimes = { runc = { runtime_type = \"io.containerd.runc.v2\" } }\n",
            V1_6,
            "inline table",
        ),
    ];
    for (text, v, want) in cases {
        let e = plan(&inputs(Some(text), v, &f, &[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn fragments_may_only_add_handlers() {
    let bad = [
        ("version = 2\n", "may only hold"),
        (
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.x]\nruntime_type = \"\"\n",
            "no runtime_type",
        ),
        (
            "[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"evil\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.x]\nruntime_type = \"a\"\n",
            "may only hold",
        ),
        ("[plugins\n", "not valid TOML"),
    ];
    for (v2, want) in bad {
        let e = Fragments::parse(v2, FRAG_V3).unwrap_err().to_string();
        assert!(e.contains(want), "{v2:?}: {e}");
    }
    let e = Fragments::parse(FRAG_V2, &FRAG_V3.replace("agentbox-gvisor", "other"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("names handlers"), "{e}");
}

#[test]
fn dotted_keys_in_the_admin_config_survive() {
    let f = frags();
    let admin = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nruntimes.runc.runtime_type = \"io.containerd.runc.v2\"\n";
    match plan(&inputs(Some(admin), V1_6, &f, &[])) {
        Ok(p) => {
            let v = value(&p.text);
            let rt = &v["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
            assert!(rt.get("runc").is_some() && rt.get("agentbox-gvisor").is_some());
        }
        // refusing is acceptable; silently losing runc is not
        Err(e) => assert!(e.to_string().contains("containerd config"), "{e}"),
    }
}
