//! The CLI contract: exit codes 0/1/2, empty stdout on refusal and error, one
//! `rejected:` line on stderr, reports, and no secret value in any output.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_agentbox-policy");

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("AGENTBOX_LOG")
        .output()
        .unwrap()
}

fn run_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    out
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn apply_allowed_prints_spec_exit_0() {
    let f = fixture("cri-container.json");
    let o = run(&["apply", "--no-host", f.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", s(&o.stderr));
    let spec: Value = serde_json::from_slice(&o.stdout).unwrap();
    let want: Value = serde_json::from_slice(
        &std::fs::read(fixture("expected/cri-container.sensitive.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(spec, want["spec"]);
    assert!(o.stderr.is_empty(), "{}", s(&o.stderr));
}

#[test]
fn apply_from_stdin_and_pretty() {
    let input = std::fs::read(fixture("cri-sandbox.json")).unwrap();
    let o = run_stdin(
        &[
            "apply",
            "--no-host",
            "--pretty",
            "--profile",
            "standard",
            "-",
        ],
        &input,
    );
    assert_eq!(code(&o), 0, "{}", s(&o.stderr));
    assert!(s(&o.stdout).contains("\n  \"ociVersion\""));
    let _: Value = serde_json::from_slice(&o.stdout).unwrap();
}

#[test]
fn apply_rejected_exit_2_nothing_on_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r.json");
    let f = fixture("host-network.json");
    let o = run(&[
        "apply",
        "--report",
        rep.to_str().unwrap(),
        f.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2);
    assert!(o.stdout.is_empty());
    let err = s(&o.stderr);
    assert_eq!(
        err,
        "rejected: host network namespace is not allowed (spec has no \"network\" namespace entry)\n"
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&rep).unwrap()).unwrap();
    assert_eq!(r["decision"], "rejected");
    assert_eq!(r["profile"], "sensitive");
}

#[test]
fn check_codes() {
    let ok = fixture("cri-container.json");
    let bad = fixture("unmanaged-host.json");
    let o = run(&["check", "--no-host", ok.to_str().unwrap()]);
    assert_eq!(code(&o), 0);
    assert!(o.stdout.is_empty());
    let o = run(&["check", "--no-host", bad.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(o.stdout.is_empty());
    assert!(s(&o.stderr).starts_with("rejected: host bind mount of \"/srv/data\""));
    let o = run(&[
        "check",
        "--no-host",
        "--profile",
        "standard",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0);
}

#[test]
fn explain_shows_the_pods_network_policy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agentbox.toml");
    std::fs::write(
        &cfg,
        "profile = \"standard\"\n[network]\nmode = \"offline\"\n[network.setup]\nmode = \"allowlist\"\nallow = [\"pypi.mirror.internal:443\"]\n",
    )
    .unwrap();
    let f = fixture("cri-container.json");
    let cfg_s = cfg.to_str().unwrap();
    let o = run(&[
        "explain",
        "--no-host",
        "--config",
        cfg_s,
        f.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", s(&o.stderr));
    let out = s(&o.stdout);
    assert!(out.contains("setup  allowlist"), "{out}");
    assert!(out.contains("allow pypi.mirror.internal:443"), "{out}");
    assert!(out.contains("agent  offline: no egress, no DNS"), "{out}");
    assert!(
        out.lines().last().unwrap().starts_with("allowed: "),
        "{out}"
    );
    // a pod annotation that would open it: refused, as the shim would
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
    spec["annotations"]["agentbox.dev/network"] = "open".into();
    let loose = dir.path().join("loose.json");
    std::fs::write(&loose, serde_json::to_vec(&spec).unwrap()).unwrap();
    let o = run(&[
        "explain",
        "--no-host",
        "--config",
        cfg_s,
        loose.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2, "{}", s(&o.stdout));
    assert!(
        s(&o.stdout)
            .lines()
            .last()
            .unwrap()
            .contains("would loosen"),
        "{}",
        s(&o.stdout)
    );
    // one that tightens: every phase offline
    spec["annotations"]["agentbox.dev/network"] = "offline".into();
    std::fs::write(&loose, serde_json::to_vec(&spec).unwrap()).unwrap();
    let o = run(&[
        "explain",
        "--no-host",
        "--config",
        cfg_s,
        loose.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", s(&o.stdout));
    assert!(s(&o.stdout).contains("setup  offline"), "{}", s(&o.stdout));
}

#[test]
fn explain_lists_changes_and_summary() {
    let f = fixture("env-secrets.json");
    let o = run(&["explain", "--no-host", f.to_str().unwrap()]);
    assert_eq!(code(&o), 0);
    let out = s(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "profile sensitive, phase agent");
    assert!(out.contains("env.secret-name"));
    assert!(out.contains("GITHUB_TOKEN"));
    // the detector rule that matched is named, the value never
    assert!(out.contains("GITHUB_TOKEN (name-token)"), "{out}");
    assert!(out.contains("BUILD_NOTE (github-app-token)"), "{out}");
    assert!(out.contains("DATABASE_URL (url-credentials)"), "{out}");
    assert!(lines.last().unwrap().starts_with("allowed: "));
    let f = fixture("host-pid.json");
    let o = run(&["explain", "--no-host", f.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(s(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .starts_with("rejected: host PID namespace"));
}

#[test]
fn no_secret_value_in_any_output() {
    let input: Value =
        serde_json::from_slice(&std::fs::read(fixture("env-secrets.json")).unwrap()).unwrap();
    // the values of every removed secret in the fixture
    let secrets = [
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "lowercase-trick-value",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AKIAIOSFODNN7EXAMPLE",
        "hunter2hunter2",
        "sk-proj-abc123DEF456ghi789JKL012mno",
        "sk-ant-oat01-abcdefghijklmnopqrstuvwxyz012345",
        "ghs_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab",
        "s3cr3tpw",
        "MIIEow",
        "eyJhbGciOiJIUzI1NiJ9",
    ];
    let raw = serde_json::to_string(&input).unwrap();
    for sec in secrets {
        assert!(
            raw.contains(&sec.replace('\n', "\\n")),
            "fixture lacks {sec}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r.json");
    let f = fixture("env-secrets.json");
    for cmd in ["apply", "explain", "check"] {
        let o = Command::new(BIN)
            .args([
                cmd,
                "--no-host",
                "--report",
                rep.to_str().unwrap(),
                f.to_str().unwrap(),
            ])
            .env("AGENTBOX_LOG", "trace")
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{}", s(&o.stderr));
        let report = std::fs::read_to_string(&rep).unwrap();
        let r: Value = serde_json::from_str(&report).unwrap();
        assert_eq!(r["decision"], "allowed");
        assert_eq!(r["phase"], "agent");
        assert!(r["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["rule"] == "env.secret-name"
                && c["target"] == "GITHUB_TOKEN"
                && c["action"] == "removed"));
        for sec in secrets {
            for (what, text) in [
                ("stdout", s(&o.stdout)),
                ("stderr", s(&o.stderr)),
                ("report", report.clone()),
            ] {
                assert!(!text.contains(sec), "{cmd}: {what} leaks {sec}");
            }
        }
    }
}

#[test]
fn malformed_inputs_exit_1_nothing_on_stdout() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(70), "}".repeat(70));
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(5 * 1024 * 1024));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad json", b"{\"ociVersion\": ".to_vec()),
        ("empty", Vec::new()),
        ("not an object", b"[1,2,3]".to_vec()),
        ("invalid utf-8", b"{\"a\": \"\xff\xfe\"}".to_vec()),
        (
            "nul byte",
            b"{\"process\": {\"env\": [\"A=\\u0000\"]}}".to_vec(),
        ),
        ("deep arrays", deep.into_bytes()),
        ("deep objects", deep_obj.into_bytes()),
        ("too large", big.into_bytes()),
        (
            "wrong env type",
            b"{\"process\": {\"env\": \"GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789\"}}"
                .to_vec(),
        ),
        ("wrong mounts type", b"{\"mounts\": {}}".to_vec()),
        (
            "mount without destination",
            b"{\"mounts\": [{\"source\": \"/\"}]}".to_vec(),
        ),
        (
            "annotation not a string",
            b"{\"annotations\": {\"a\": 1}}".to_vec(),
        ),
        (
            "namespace type",
            b"{\"linux\": {\"namespaces\": [{\"type\": 5}]}}".to_vec(),
        ),
    ];
    for (name, input) in cases {
        let o = run_stdin(&["apply", "-"], &input);
        assert_eq!(code(&o), 1, "{name}: {}", s(&o.stderr));
        assert!(o.stdout.is_empty(), "{name}");
        let err = s(&o.stderr);
        assert!(err.starts_with("error: "), "{name}: {err}");
        assert!(!err.contains("ghp_"), "{name}: error leaks a value: {err}");
        assert!(err.len() < 500, "{name}: {err}");
    }
}

#[test]
fn usage_and_config_errors_exit_1() {
    let f = fixture("cri-container.json");
    let fp = f.to_str().unwrap();
    let o = run(&["apply", "/nonexistent/config.json"]);
    assert_eq!(code(&o), 1);
    assert!(o.stdout.is_empty());
    let o = run(&["apply", "--profile", "lax", fp]);
    assert_eq!(code(&o), 1);
    let o = run(&["apply"]);
    assert_eq!(code(&o), 1);
    let o = run(&["frobnicate", fp]);
    assert_eq!(code(&o), 1);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        "profile = \"sensitive\"\n[mounts]\nread_only = [\"/x\"]\n",
    )
    .unwrap();
    let o = run(&["apply", "--config", cfg.to_str().unwrap(), fp]);
    assert_eq!(code(&o), 1);
    assert!(o.stdout.is_empty());
    assert!(s(&o.stderr).contains("read_only"), "{}", s(&o.stderr));
    let o = run(&[
        "apply",
        "--config",
        cfg.to_str().unwrap(),
        "--profile",
        "standard",
        fp,
    ]);
    assert_eq!(code(&o), 1);
    let o = run(&["--help"]);
    assert_eq!(code(&o), 0);
}

#[test]
fn config_file_is_used() {
    let o = run(&[
        "apply",
        "--no-host",
        "--config",
        fixture("config.toml").to_str().unwrap(),
        fixture("with-config.json").to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", s(&o.stderr));
    let spec: Value = serde_json::from_slice(&o.stdout).unwrap();
    let want: Value = serde_json::from_slice(
        &std::fs::read(fixture("expected/with-config.config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(spec, want["spec"]);
}

#[test]
fn garbage_never_panics() {
    // a few structured-but-odd documents: exit 0, 1 or 2, never a crash
    let docs: [&[u8]; 8] = [
        b"{}",
        b"null",
        b"{\"process\": null}",
        b"{\"linux\": null, \"mounts\": null}",
        b"{\"process\": {\"capabilities\": {\"bounding\": null}}}",
        b"{\"hooks\": {\"prestart\": 1}}",
        b"{\"linux\": {\"namespaces\": [{\"type\":\"pid\"},{\"type\":\"ipc\"},{\"type\":\"uts\"},{\"type\":\"mount\"},{\"type\":\"network\"}], \"resources\": {\"devices\": [1]}}}",
        b"\"\\ud800\"",
    ];
    for d in docs {
        let o = run_stdin(&["apply", "--no-host", "-"], d);
        let c = code(&o);
        assert!([0, 1, 2].contains(&c), "{}: {c}", s(d));
        if c != 0 {
            assert!(o.stdout.is_empty());
        }
    }
}

#[test]
fn bundle_option_checks_an_absolute_root() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
    let mut spec: Value =
        serde_json::from_slice(&std::fs::read(fixture("cri-container.json")).unwrap()).unwrap();
    spec["root"]["path"] = Value::String(bundle.join("rootfs").to_str().unwrap().to_string());
    let path = tmp.path().join("config.json");
    std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let p = path.to_str().unwrap();
    let b = bundle.to_str().unwrap();

    let o = run(&["check", "--no-host", p]);
    assert_eq!(code(&o), 2, "{}", s(&o.stderr));
    assert!(s(&o.stderr).contains("root.path"), "{}", s(&o.stderr));
    let o = run(&["check", "--no-host", "--bundle", b, p]);
    assert_eq!(code(&o), 0, "{}", s(&o.stderr));
    // relative --bundle is taken from the working directory
    let o = Command::new(BIN)
        .args(["check", "--no-host", "--bundle", "bundle", p])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", s(&o.stderr));
    // another bundle's rootfs, and the host's /
    let o = run(&["check", "--no-host", "--bundle", "/run/other", p]);
    assert_eq!(code(&o), 2);
    spec["root"]["path"] = Value::String("/".into());
    std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let o = run(&["apply", "--bundle", b, p]);
    assert_eq!(code(&o), 2);
    assert!(o.stdout.is_empty());
    assert!(
        s(&o.stderr).contains("is not the bundle's rootfs"),
        "{}",
        s(&o.stderr)
    );
}

#[test]
fn sandbox_pid_option_exempts_the_pods_own_namespaces() {
    // a process in this host's namespaces stands in for a gVisor sandbox
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let mut spec: Value =
        serde_json::from_slice(&std::fs::read(fixture("cri-container.json")).unwrap()).unwrap();
    for n in spec["linux"]["namespaces"].as_array_mut().unwrap() {
        if let Some(p) = n["path"].as_str() {
            n["path"] = Value::String(p.replace("4242", &pid));
        }
    }
    let path = tmp.path().join("config.json");
    std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let p = path.to_str().unwrap();
    let without = run(&["check", p]);
    let with = run(&["check", "--sandbox-pid", &pid, p]);
    let other = run(&["check", "--sandbox-pid", "4242", p]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code(&without), 2, "{}", s(&without.stderr));
    assert!(s(&without.stderr).contains("host namespace"));
    assert_eq!(code(&with), 0, "{}", s(&with.stderr));
    assert_eq!(code(&other), 2);
}
