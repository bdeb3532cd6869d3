//! Observable activity through CRI with runsc: what the agent did inside the
//! sandbox — its process tree with argv and exit statuses, the files it read
//! and wrote, where it connected — in the audit log and in `agentbox-audit`,
//! from gVisor's runtime monitoring with the pod daemon as the sink. Needs root.

mod common;

use std::time::Duration;

use agentbox_e2e::testhost::TestHost;
use agentbox_e2e::{
    skip_unless_root, Binaries, ContainerSpec, Containerd, BUSYBOX_IMAGE, K8S_NAMESPACE,
};
use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(90);

fn start(cfg: &ConfigDir, top: &str, mounts: &str) -> Containerd {
    let path = cfg.path().join("agentbox.toml");
    let ctd = Containerd::start(options(Binaries::system(), &path)).expect("start containerd");
    let extra = format!("{top}\n[mounts]\n{}\n{mounts}\n", managed_roots(&ctd));
    write_config(cfg.path(), "agentbox", "sandbox", &extra);
    ctd.import_busybox(K8S_NAMESPACE).expect("import busybox");
    ctd
}

fn wait_for(cfg: &ConfigDir, what: &str, f: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let ok = wait_until(Duration::from_secs(20), || f(&audit(cfg.path())));
    let recs = audit(cfg.path());
    assert!(ok, "{what} never reached the audit log: {recs:#?}");
    recs
}

fn find(recs: &[Value], f: impl Fn(&Value) -> bool) -> Option<&Value> {
    recs.iter().find(|r| f(r))
}

/// The agent reads a planted file, writes /tmp/out, runs `sh → cat` and
/// `sh → wget` to a host in the test's own network namespace, and exits 3.
/// A setup container beside it keeps a token in its environment (its execs
/// carry it to the sink); the token appears nowhere.
#[test]
fn what_the_agent_did_is_in_the_audit_log() {
    if skip_unless_root("what_the_agent_did_is_in_the_audit_log") {
        return;
    }
    let cfg = ConfigDir::new();
    let plan = cfg.path().join("plan.txt");
    std::fs::write(&plan, "the agent's plan\n").unwrap();
    let ctd = start(
        &cfg,
        "profile = \"sensitive\"\n[phases]\nsetup_containers = [\"setup\"]",
        &format!(
            "inject = [{{ source = \"{}\", destination = \"/workspace/plan.txt\" }}]",
            plan.display()
        ),
    );
    let cri = ctd.cri().expect("CRI client");
    let pod = cri
        .run_pod(
            "agent-pod",
            "team-a",
            "uid-activity-1",
            AGENTBOX,
            &[("agentbox.dev/setup-containers", "setup")],
        )
        .expect("RunPodSandbox");
    // the pod's bridge exists now: the test host goes on it
    let www = cfg.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("hello.txt"), "hello from the test host\n").unwrap();
    let host = TestHost::on_bridge(ctd.network(), 250, 18080, &www).expect("test host");
    host.prove_routed()
        .expect("the test host is the test's own");
    let secret = format!("ghp_{}", "Act1v1tyS3cr3tV4lu3xYz0123456789abcd");

    let setup = ContainerSpec::new("setup", BUSYBOX_IMAGE)
        .command(["sh", "-c"])
        .args(["[ -n \"$GITHUB_TOKEN\" ] && /bin/true; exit 0"])
        .env("GITHUB_TOKEN", &secret);
    let setup = cri.create_container(&pod, &setup).expect("create setup");
    cri.start(&setup).expect("start setup");
    assert_eq!(cri.wait_container_exit(&setup, T).expect("setup exits"), 0);

    let url = format!("http://{}:{}/hello.txt", host.address, host.port);
    let script = format!(
        "cat /workspace/plan.txt > /dev/null; echo done > /tmp/out; sh -c 'cat /workspace/plan.txt; exit 0'; sh -c 'wget -q -O - {url}; echo wget=$?'; exit 3"
    );
    let agent = ContainerSpec::new("agent", BUSYBOX_IMAGE)
        .command(["sh", "-c"])
        .args([script.clone()])
        .env("GITHUB_TOKEN", &secret);
    let agent = cri.create_container(&pod, &agent).expect("create agent");
    cri.start(&agent).expect("start agent");
    assert_eq!(cri.wait_container_exit(&agent, T).expect("agent exits"), 3);
    let logs = cri.container_log_text(&pod, "agent", None).unwrap();

    let recs = wait_for(&cfg, "the agent's exit", |r| {
        r.iter().any(|x| {
            x["event"] == "process_exit" && x["container"] == "agent" && x["exit_code"] == 3
        })
    });
    let agent_rec = |ev: &str, f: &dyn Fn(&Value) -> bool| {
        find(&recs, |r| {
            r["event"] == ev && r["container"] == "agent" && f(r)
        })
        .unwrap_or_else(|| panic!("no {ev} record of the agent: {recs:#?}"))
        .clone()
    };
    assert!(find(&recs, |r| r["event"] == "activity" && r["state"] == "on").is_some());
    // the tree: sh (the container's init) → sh → cat, sh → sh → wget
    let init = agent_rec("process", &|r| r["ppid"] == 0);
    assert_eq!(init["argv"][2], script.as_str());
    let pid = |r: &Value| r["pid"].as_i64().unwrap();
    let init_pid = init["pid"].clone();
    let cat = agent_rec("process", &|r| {
        r["argv"][0] == "cat" && r["ppid"] != init_pid
    });
    let cat_parent = agent_rec("process", &|r| r["pid"] == cat["ppid"]);
    assert_eq!(
        cat_parent["ppid"].as_i64(),
        Some(pid(&init)),
        "sh → sh → cat"
    );
    let wget = agent_rec("process", &|r| r["argv"][0] == "wget");
    assert_eq!(wget["argv"][4], url.as_str());
    let wget_parent = agent_rec("process", &|r| r["pid"] == wget["ppid"]);
    assert_eq!(wget_parent["ppid"].as_i64(), Some(pid(&init)));
    for p in [&cat, &wget] {
        let e = agent_rec("process_exit", &|r| r["pid"] == p["pid"]);
        assert!(e["exit_code"].is_i64(), "{e}");
    }
    // files: the planted file read (by the shell and by cat), /tmp/out written
    let read = agent_rec("file", &|r| {
        r["path"] == "/workspace/plan.txt" && r["pid"] == cat["pid"]
    });
    assert_eq!(read["intent"], serde_json::json!(["read"]));
    let out = agent_rec("file", &|r| r["path"] == "/tmp/out");
    assert_eq!(out["pid"].as_i64(), Some(pid(&init)));
    assert!(
        out["intent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "write"),
        "{out}"
    );
    // the connection, with its destination; the agent got the page if the
    // pod's egress rules let it through
    let conn = agent_rec("connect", &|r| r["address"] == host.address.as_str());
    assert_eq!(
        (conn["port"].as_u64(), conn["family"].as_str()),
        (Some(18080), Some("inet"))
    );
    assert_eq!(conn["pid"], wget["pid"]);
    if conn["result"] == "ok" {
        assert!(logs.contains("hello from the test host"), "{logs:?}");
    }
    // nothing of the loader or /proc, and no environment anywhere
    assert!(find(&recs, |r| r["event"] == "file"
        && r["path"].as_str().is_some_and(|p| p.starts_with("/proc/")))
    .is_none());
    let setup_proc = find(&recs, |r| {
        r["event"] == "process" && r["container"] == "setup"
    });
    assert!(
        setup_proc.is_some(),
        "the setup container's processes are recorded"
    );
    let text = std::fs::read_to_string(cfg.path().join("audit.jsonl")).unwrap();
    assert!(!text.contains(&secret), "the token is in the audit log");

    // agentbox-audit shows the run
    let (all, bad) = agentbox_audit::load(text.as_bytes()).unwrap();
    assert_eq!(bad, 0);
    let filter = agentbox_audit::Filter {
        pod: Some("team-a/agent-pod".into()),
        container: Some("agent".into()),
        ..Default::default()
    };
    let runs = agentbox_audit::build(&all, &filter);
    assert_eq!(runs.len(), 1);
    let shown = agentbox_audit::text::render(&runs);
    eprintln!("{shown}");
    for want in [
        "agent  phase agent",
        "exit 3",
        "└─ [",
        "cat /workspace/plan.txt  (exit 0)",
        &format!("wget -q -O - {url}"),
        "/tmp/out  (write+create",
        "/workspace/plan.txt  (read",
        &format!("{}:18080", host.address),
    ] {
        assert!(shown.contains(want), "{want:?} not in:\n{shown}");
    }
    assert!(!shown.contains(&secret));
    let json = serde_json::to_string(&runs).unwrap();
    assert!(json.contains("\"exit_code\":3"), "{json}");

    for id in [&setup, &agent] {
        cri.remove_container(id).expect("RemoveContainer");
    }
    cri.stop_pod(&pod.id).expect("StopPodSandbox");
    cri.remove_pod(&pod.id).expect("RemovePodSandbox");
}

/// A loop opening many files (20,000 in `make test`; `make test-flood` runs
/// the full 100,000 through `AGENTBOX_FLOOD_OPENS`): the audit log stays
/// within the pod's rate limit and says what it dropped; the loop finishes.
#[test]
fn a_flood_of_opens_stays_bounded() {
    if skip_unless_root("a_flood_of_opens_stays_bounded") {
        return;
    }
    let cfg = ConfigDir::new();
    let ctd = start(
        &cfg,
        "profile = \"standard\"\n[activity]\nenabled = true\nrate_per_second = 200\nburst = 1000\nmax_tracked_files = 2000",
        "",
    );
    let cri = ctd.cri().expect("CRI client");
    let pod = cri
        .run_pod("flood", "team-f", "uid-flood", AGENTBOX, &[])
        .expect("RunPodSandbox");
    let opens: usize = std::env::var("AGENTBOX_FLOOD_OPENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let spec = ContainerSpec::new("agent", BUSYBOX_IMAGE).command([
        "sh".to_string(),
        "-c".into(),
        format!("mkdir /tmp/f; i=0; while [ $i -lt {opens} ]; do : > /tmp/f/$i; i=$((i+1)); done; echo opened $i"),
    ]);
    let id = cri.create_container(&pod, &spec).expect("create");
    let t0 = std::time::Instant::now();
    cri.start(&id).expect("start");
    assert_eq!(
        cri.wait_container_exit(&id, Duration::from_secs(240))
            .expect("the loop ends"),
        0
    );
    let took = t0.elapsed();
    let logs = cri.container_log_text(&pod, "agent", None).unwrap();
    assert!(logs.contains(&format!("opened {opens}")), "{logs:?}");
    let recs = wait_for(&cfg, "a dropped record", |r| {
        r.iter()
            .any(|x| x["event"] == "dropped" && x["rate_limited"].as_u64() > Some(0))
    });
    let activity: Vec<&Value> = recs
        .iter()
        .filter(|r| r["source"] == "gvisor" && r["event"] != "dropped")
        .collect();
    // the burst plus the rate over the loop's run, and some slack for the
    // records written after it
    let bound = 1000 + 200 * (took.as_secs() as usize + 5);
    assert!(
        activity.len() <= bound,
        "{} activity records in {took:?} (bound {bound})",
        activity.len()
    );
    let dropped: u64 = recs
        .iter()
        .filter(|r| r["event"] == "dropped")
        .filter_map(|r| r["rate_limited"].as_u64())
        .sum();
    // what the rate let through, at most, is written; the rest is counted
    let allowed = 1000 + 200 * took.as_secs() as usize;
    assert!(
        dropped as usize + allowed >= opens * 9 / 10,
        "only {dropped} of {opens} counted as dropped in {took:?}"
    );
    eprintln!(
        "flood: {opens} opens in {took:?}, {} records written, {dropped} dropped",
        activity.len()
    );
    cri.remove_container(&id).expect("RemoveContainer");
    cri.stop_pod(&pod.id).expect("StopPodSandbox");
    cri.remove_pod(&pod.id).expect("RemovePodSandbox");
}
