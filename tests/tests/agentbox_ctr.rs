//! agentbox through `ctr`, checked from inside the gVisor sandbox: the kernel,
//! the environment, mounts, terminals, and a refused host namespace.
//! Needs root.

mod common;

use std::process::Output;

use agentbox_e2e::{skip_unless_root, Binaries, Containerd, BUSYBOX_IMAGE, DEFAULT_NAMESPACE};
use common::*;

/// Fields drop in order: the containerd (and its cleanup, which needs the
/// runsc root and audit log in `cfg`) goes first.
struct Setup {
    ctd: Containerd,
    cfg: ConfigDir,
    config: String,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Backend {
    Runsc,
    /// the shim backend in front of containerd-shim-runc-v2 (no sandbox)
    Forward,
}

fn setup(profile: &str) -> Setup {
    setup_with(profile, Backend::Runsc)
}

fn setup_with(profile: &str, backend: Backend) -> Setup {
    let cfg = ConfigDir::new();
    let ca = cfg.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nagentbox-test-ca\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let extra = format!(
        "profile = \"{profile}\"\n[mounts]\nreadonly = [\"/workspace\"]\ninject = [{{ source = \"{}\", destination = \"/etc/ssl/certs/agentbox-ca.pem\" }}]\n",
        ca.display()
    );
    let path = write_config(cfg.path(), "agentbox", "none", &extra);
    if backend == Backend::Forward {
        use_runc_delegate(&path);
    }
    let ctd = Containerd::start(options(Binaries::system(), &path)).expect("start containerd");
    ctd.import_busybox(DEFAULT_NAMESPACE)
        .expect("import busybox");
    Setup {
        config: path.display().to_string(),
        cfg,
        ctd,
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// From inside: gVisor's kernel, the secret gone and ordinary env present,
/// the Docker socket mount absent, a read-only mount read-only, an injected
/// mount present; the audit log records it all without the secret.
#[test]
fn ctr_run_sees_the_policy_from_inside() {
    if skip_unless_root("ctr_run_sees_the_policy_from_inside") {
        return;
    }
    policy_from_inside(Backend::Runsc);
}

/// The same through the shim backend (agentbox in front of runc-v2).
#[test]
fn ctr_run_sees_the_policy_from_inside_shim_backend() {
    if skip_unless_root("ctr_run_sees_the_policy_from_inside_shim_backend") {
        return;
    }
    policy_from_inside(Backend::Forward);
}

fn policy_from_inside(backend: Backend) {
    let s = setup_with("standard", backend);
    let ws = s.cfg.path().join("workspace");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("README"), "repo\n").unwrap();
    let secret = format!("AKIA{}", "IOSFODNN7EXAMPLQ");
    let id = s.ctd.unique_id("ab-ctr");
    let ws_mount = format!(
        "type=bind,src={},dst=/workspace,options=rbind:rw",
        ws.display()
    );
    let env_secret = format!("AWS_ACCESS_KEY_ID={secret}");
    let o = s.ctd.ctr_run(
        &[
            "--runtime",
            RUNTIME_TYPE,
            "--runtime-config-path",
            &s.config,
            "--env",
            &env_secret,
            "--env",
            "GIT_AUTHOR_NAME=agent",
            "--mount",
            "type=bind,src=/var/run/docker.sock,dst=/var/run/docker.sock,options=rbind:rw",
            "--mount",
            &ws_mount,
        ],
        BUSYBOX_IMAGE,
        &id,
        &[
            "sh",
            "-c",
            "dmesg 2>/dev/null | head -1; env; \
             if [ -e /var/run/docker.sock ]; then echo docker-sock-present; else echo docker-sock-absent; fi; \
             cat /workspace/README; if touch /workspace/x 2>/dev/null; then echo ws-writable; else echo ws-readonly; fi; \
             cat /etc/ssl/certs/agentbox-ca.pem",
        ],
    );
    let text = out(&o);
    assert!(
        o.status.success(),
        "ctr run failed: {}\n{}",
        err(&o),
        s.ctd.log_tail(30)
    );
    assert_eq!(
        text.contains("Starting gVisor"),
        backend == Backend::Runsc,
        "{text}"
    );
    assert!(
        !text.contains("AWS_ACCESS_KEY_ID"),
        "secret env visible inside"
    );
    assert!(!text.contains(&secret));
    assert!(text.contains("GIT_AUTHOR_NAME=agent"), "{text}");
    assert!(text.contains("docker-sock-absent"), "{text}");
    assert!(
        text.contains("repo\n") && text.contains("ws-readonly"),
        "{text}"
    );
    assert!(
        !ws.join("x").exists(),
        "the read-only workspace was written"
    );
    assert!(text.contains("agentbox-test-ca"), "{text}");

    let log = std::fs::read_to_string(s.cfg.path().join("audit.jsonl")).unwrap();
    assert!(!log.contains(&secret), "the audit log holds the secret");
    let recs = audit(s.cfg.path());
    let create = recs
        .iter()
        .find(|r| r["event"] == "create" && r["container_id"] == id.as_str())
        .expect("create record");
    let changes = create["changes"].as_array().unwrap();
    let has = |target: &str, action: &str| {
        changes
            .iter()
            .any(|c| c["target"] == target && c["action"] == action)
    };
    assert!(has("AWS_ACCESS_KEY_ID", "removed"), "{changes:#?}");
    assert!(has("/var/run/docker.sock", "removed"), "{changes:#?}");
    assert!(has("/workspace", "forced-readonly"), "{changes:#?}");
    assert!(
        has("/etc/ssl/certs/agentbox-ca.pem", "injected"),
        "{changes:#?}"
    );
    assert!(recs.iter().any(|r| r["event"] == "exit"
        && r["container_id"] == id.as_str()
        && r["exit_status"] == 0));
}

/// `ctr run --net-host` is refused with the policy's reason and no runsc
/// process starts for it.
#[test]
fn ctr_run_net_host_is_refused() {
    if skip_unless_root("ctr_run_net_host_is_refused") {
        return;
    }
    let s = setup("standard");
    let calls = log_runsc_calls(std::path::Path::new(&s.config));
    // the logging wrapper sees what agentbox asks of runsc: a container the
    // policy admits is created...
    let ok = s.ctd.unique_id("ab-admitted");
    let o = s.ctd.ctr_run(
        &[
            "--runtime",
            RUNTIME_TYPE,
            "--runtime-config-path",
            &s.config,
        ],
        BUSYBOX_IMAGE,
        &ok,
        &["true"],
    );
    assert!(o.status.success(), "{}", err(&o));
    let log = std::fs::read_to_string(&calls).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains(" create ") && l.ends_with(&ok)),
        "{log}"
    );
    // ...and a refused one never reaches runsc at all
    let id = s.ctd.unique_id("ab-nethost");
    let o = s.ctd.ctr_run(
        &[
            "--runtime",
            RUNTIME_TYPE,
            "--runtime-config-path",
            &s.config,
            "--net-host",
        ],
        BUSYBOX_IMAGE,
        &id,
        &["true"],
    );
    assert!(!o.status.success(), "--net-host ran: {}", out(&o));
    let e = err(&o);
    assert!(
        e.contains("agentbox policy refused") && e.contains("host network namespace"),
        "{e}"
    );
    let log = std::fs::read_to_string(&calls).unwrap_or_default();
    assert!(
        !log.lines().any(|l| l.contains(&id)),
        "runsc was asked about a refused container: {log}"
    );
    let recs = audit(s.cfg.path());
    assert!(
        recs.iter()
            .any(|r| r["event"] == "reject" && r["container_id"] == id.as_str()),
        "{recs:#?}"
    );
    let _ = s.ctd.ctr(&["containers", "rm", &id]);
}

/// `ctr run --rootfs /` (the host's `/` as the container root) is refused:
/// the root must be the bundle's `rootfs`. No runsc process starts for it.
#[test]
fn ctr_run_host_rootfs_is_refused() {
    if skip_unless_root("ctr_run_host_rootfs_is_refused") {
        return;
    }
    let s = setup("standard");
    let id = s.ctd.unique_id("ab-rootfs");
    let o = s.ctd.ctr_run(
        &[
            "--runtime",
            RUNTIME_TYPE,
            "--runtime-config-path",
            &s.config,
            "--rootfs",
        ],
        "/",
        &id,
        &["true"],
    );
    assert!(!o.status.success(), "--rootfs / ran: {}", out(&o));
    let e = err(&o);
    assert!(
        e.contains("agentbox policy refused")
            && e.contains("root.path \"/\" is not the bundle's rootfs"),
        "{e}"
    );
    assert!(
        processes_mentioning(&id)
            .iter()
            .all(|p| !p.contains("runsc")),
        "runsc started"
    );
    let recs = audit(s.cfg.path());
    assert!(
        recs.iter().any(|r| r["event"] == "reject"
            && r["container_id"] == id.as_str()
            && r["report"]["changes"][0]["rule"] == "root.path"),
        "{recs:#?}"
    );
    let _ = s.ctd.ctr(&["containers", "rm", &id]);
}

/// Run `cmd` under a pseudo-terminal (`script`), typing `input` after `delay`.
fn with_tty(cmd: &str, input: &str) -> Output {
    let shell = format!("(sleep 3; printf '{input}') | timeout 60 script -qec \"{cmd}\" /dev/null");
    std::process::Command::new("sh")
        .args(["-c", &shell])
        .output()
        .unwrap()
}

/// Interactive `ctr run -t` and `ctr task exec -t` work through agentbox's
/// console handling, with exit statuses.
#[test]
fn ctr_terminals_work() {
    if skip_unless_root("ctr_terminals_work") {
        return;
    }
    terminals(Backend::Runsc);
}

/// Terminals through the shim backend (the delegate owns the console).
#[test]
fn ctr_terminals_work_shim_backend() {
    if skip_unless_root("ctr_terminals_work_shim_backend") {
        return;
    }
    terminals(Backend::Forward);
}

fn terminals(backend: Backend) {
    let s = setup_with("standard", backend);
    let ctr = format!(
        "{} --address {} --namespace default",
        s.ctd.binaries().ctr.display(),
        s.ctd.address().display()
    );
    let id = s.ctd.unique_id("ab-tty");
    let run = format!(
        "{ctr} run -t --rm --runtime {RUNTIME_TYPE} --runtime-config-path {} {BUSYBOX_IMAGE} {id} sh",
        s.config
    );
    let o = with_tty(&run, "echo tty-$((6*7)); exit 5\\r");
    let text = out(&o);
    assert!(text.contains("tty-42"), "{text}\n{}", err(&o));
    assert_eq!(o.status.code(), Some(5), "{text}");

    // a long-running task, then an interactive exec into it
    let id2 = s.ctd.unique_id("ab-exec");
    run_detached(
        &s.ctd,
        std::path::Path::new(&s.config),
        &id2,
        &["sleep", "300"],
    )
    .expect("ctr run -d");
    let exec = format!("{ctr} task exec -t --exec-id e1 {id2} sh");
    let o = with_tty(&exec, "echo exec-$((7*6)); exit 6\\r");
    let text = out(&o);
    assert!(text.contains("exec-42"), "{text}\n{}", err(&o));
    assert_eq!(o.status.code(), Some(6));
    // a non-terminal exec with stdin, its command line carrying a secret
    let o = s.ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e2",
        &id2,
        "sh",
        "-c",
        "export DB_PASSWORD=hunter2e2e && echo plain; exit 3",
    ]);
    assert_eq!(
        (o.status.code(), out(&o).as_str()),
        (Some(3), "plain\n"),
        "{}",
        err(&o)
    );
    let recs = audit(s.cfg.path());
    assert!(
        recs.iter()
            .any(|r| r["event"] == "exec" && r["exec_id"] == "e1" && r["argv"][0] == "sh"),
        "{recs:#?}"
    );
    // the exec's argv is audited redacted (agentbox-secrets)
    assert!(
        recs.iter().any(|r| r["exec_id"] == "e2"
            && r["argv"][2] == "export DB_PASSWORD=[redacted] && echo plain; exit 3"),
        "{recs:#?}"
    );
    let text = std::fs::read_to_string(s.cfg.path().join("audit.jsonl")).unwrap();
    assert!(
        !text.contains("hunter2e2e"),
        "the audit log leaks the exec's secret"
    );
    let k = s.ctd.ctr(&["task", "kill", "-s", "KILL", &id2]);
    assert!(k.status.success(), "{}", err(&k));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = s.ctd.ctr(&["task", "rm", "-f", &id2]);
    let _ = s.ctd.ctr(&["containers", "rm", &id2]);
}

/// A sandbox the host's OOM killer ends is reported as such: `TaskOOM`
/// before the exit (audited as `oom`), exit status 137.
#[test]
fn oom_kill_is_reported() {
    if skip_unless_root("oom_kill_is_reported") {
        return;
    }
    let s = setup("standard");
    let id = s.ctd.unique_id("ab-oom");
    let o = s.ctd.ctr_run(
        &[
            "--runtime",
            RUNTIME_TYPE,
            "--runtime-config-path",
            &s.config,
            "--memory-limit",
            "209715200",
            "--mount",
            "type=tmpfs,src=tmpfs,dst=/big,options=size=1g",
        ],
        BUSYBOX_IMAGE,
        &id,
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/big/x bs=1M count=600; echo survived",
        ],
    );
    assert_eq!(o.status.code(), Some(137), "{}\n{}", out(&o), err(&o));
    assert!(!out(&o).contains("survived"));
    let recs = audit(s.cfg.path());
    let mine: Vec<_> = recs
        .iter()
        .filter(|r| r["container_id"] == id.as_str())
        .map(|r| r["event"].as_str().unwrap_or(""))
        .collect();
    assert!(mine.ends_with(&["oom", "exit"]), "{mine:?}");
    // a container that stays within its limit is not reported
    let id2 = s.ctd.unique_id("ab-fits");
    let o = s.ctd.ctr_run(
        &[
            "--runtime",
            RUNTIME_TYPE,
            "--runtime-config-path",
            &s.config,
            "--memory-limit",
            "209715200",
        ],
        BUSYBOX_IMAGE,
        &id2,
        &["true"],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(!audit(s.cfg.path())
        .iter()
        .any(|r| r["container_id"] == id2.as_str() && r["event"] == "oom"));
}
