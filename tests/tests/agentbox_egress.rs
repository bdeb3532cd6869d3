//! Pod egress through CRI with CNI: from inside the sandbox, each
//! destination is reachable or not exactly as each `[network]` mode says,
//! over IPv4 and IPv6, by address and by name, for TCP, UDP and ICMP; every
//! refusal is in the audit log with its destination. Both backends: runsc
//! (gVisor) and the shim backend in front of runc-v2. Needs root. All
//! destinations are hosts of the test's own router namespace (proven before
//! any pod sends), and a guard table keeps pod traffic off every other
//! interface of the node (see `agentbox_e2e::egress`).

#[path = "common/egress.rs"]
mod egress_common;

use agentbox_e2e::agentbox::wait_until;
use agentbox_e2e::agentbox::ConfigDir;
use agentbox_e2e::egress::*;
use agentbox_e2e::skip_unless_root;
use egress_common::*;

const NODE_PORT: u16 = 18080;

/// The same probes in every mode: by address and by name, IPv4 and IPv6,
/// TCP, UDP and ICMP, plus the classes blocked in every mode.
fn matrix(node: &str) -> Vec<(String, String)> {
    let p = |a: &str, b: String| (a.to_string(), b);
    vec![
        p("ip-tcp4", format!("tcp {PUBLIC4_OTHER} 80")),
        p("ip-udp4", format!("udp {PUBLIC4_OTHER} 80")),
        p("ip-icmp4", format!("icmp {PUBLIC4_OTHER}")),
        p("ip-tcp6", format!("-6 tcp {PUBLIC6_OTHER} 80")),
        p("ip-udp6", format!("-6 udp {PUBLIC6_OTHER} 80")),
        p("ip-icmp6", format!("-6 icmp {PUBLIC6_OTHER}")),
        p("name-tcp4", "-4 tcp allowed.mirror.test 80".into()),
        p("name-udp4", "-4 udp allowed.mirror.test 80".into()),
        p("name-icmp4", "-4 icmp allowed.mirror.test".into()),
        p("name-tcp6", "-6 tcp allowed.mirror.test 80".into()),
        p("name-udp6", "-6 udp allowed.mirror.test 80".into()),
        p("name-icmp6", "-6 icmp allowed.mirror.test".into()),
        p("name-unlisted", "-4 tcp other.mirror.test 80".into()),
        p("metadata4", format!("tcp {METADATA4} 80")),
        p("metadata4-udp", format!("udp {METADATA4} 80")),
        p("metadata6", format!("-6 tcp {METADATA6} 80")),
        p("metadata-mapped", "-6 tcp ::ffff:169.254.169.254 80".into()),
        p("private", format!("tcp {PRIVATE4} 80")),
        p("node", format!("tcp {node} {NODE_PORT}")),
    ]
}

fn want(open_ip: bool, open_name: bool, unlisted_name: bool) -> Vec<(String, bool)> {
    let mut w: Vec<(String, bool)> = Vec::new();
    for l in [
        "ip-tcp4", "ip-udp4", "ip-icmp4", "ip-tcp6", "ip-udp6", "ip-icmp6",
    ] {
        w.push((l.into(), open_ip));
    }
    for l in [
        "name-tcp4",
        "name-udp4",
        "name-icmp4",
        "name-tcp6",
        "name-udp6",
        "name-icmp6",
    ] {
        w.push((l.into(), open_name));
    }
    w.push(("name-unlisted".into(), unlisted_name));
    for l in [
        "metadata4",
        "metadata4-udp",
        "metadata6",
        "metadata-mapped",
        "private",
        "node",
    ] {
        w.push((l.into(), false));
    }
    w
}

/// Every mode, one pod each, on one backend.
fn modes(delegate: bool) {
    let cfg = ConfigDir::new();
    let (ctd, mut net) = start(&cfg, &["offline", "allowlist", "open"]);
    write(
        &cfg,
        &ctd,
        &net,
        "offline",
        "mode = \"offline\"\n",
        delegate,
    );
    write(
        &cfg,
        &ctd,
        &net,
        "allowlist",
        &format!("mode = \"allowlist\"\nallow = [\"{PUBLIC4_OTHER}\", \"{PUBLIC6_OTHER}\", \"allowed.mirror.test\"]\n"),
        delegate,
    );
    write(&cfg, &ctd, &net, "open", "mode = \"open\"\n", delegate);
    let cri = ctd.cri().expect("CRI");
    let mut node = None;
    for (mode, open_ip, open_name, unlisted) in [
        ("offline", false, false, false),
        ("allowlist", true, true, false),
        ("open", true, true, true),
    ] {
        let t0 = std::time::Instant::now();
        let (_pod, id) = pod_with(&cri, &ctd, mode, &format!("{mode}-pod"), &[]);
        eprintln!("{mode}: pod up in {:?}", t0.elapsed());
        if node.is_none() {
            node = Some(net.serve_on_node(NODE_PORT).expect("node listener"));
        }
        let node = node.as_deref().unwrap();
        let t0 = std::time::Instant::now();
        let r = probe(&cri, &id, &matrix(node));
        eprintln!("{mode}: probes in {:?}: {r:#?}", t0.elapsed());
        expect(&r, &want(open_ip, open_name, unlisted));
    }
    // the rules are per pod: a plain runc pod beside them is untouched
    if !delegate {
        let pod = cri
            .run_pod(
                "runc-pod",
                "egress",
                "uid-runc-pod",
                agentbox_e2e::RUNC,
                &[],
            )
            .expect("runc pod");
        let c = agentbox_e2e::ContainerSpec::new("c", agentbox_e2e::BUSYBOX_IMAGE)
            .command(["sleep", "600"]);
        let id = cri.create_container(&pod, &c).expect("create");
        cri.start(&id).expect("start");
        let r = probe(
            &cri,
            &id,
            &[("runc-public".into(), format!("tcp {PUBLIC4_OTHER} 80"))],
        );
        expect(&r, &[("runc-public".into(), true)]);
    }
    // each refusal in the audit log with its destination and why
    let d = denied(&cfg);
    let has = |addr: &str, reason: &str, proto: &str| {
        d.iter()
            .any(|r| r["address"] == addr && r["reason"] == reason && r["protocol"] == proto)
    };
    for (addr, reason, proto) in [
        (PUBLIC4_OTHER, "offline", "tcp"),
        (PUBLIC4_OTHER, "offline", "udp"),
        (PUBLIC4_OTHER, "offline", "icmp"),
        (PUBLIC6_OTHER, "offline", "icmpv6"),
        (METADATA4, "metadata", "tcp"),
        (METADATA4, "metadata", "udp"),
        (METADATA6, "metadata", "tcp"),
        (PRIVATE4, "private", "tcp"),
    ] {
        assert!(
            has(addr, reason, proto),
            "no egress_denied for {addr} {reason} {proto}: {d:#?}"
        );
    }
    assert!(
        d.iter().any(|r| r["protocol"] == "dns"
            && r["name"] == "other.mirror.test"
            && r["reason"] == "not-allowed"),
        "{d:#?}"
    );
    // offline: names are refused at agentbox's resolver, and audited by name
    assert!(
        d.iter().any(|r| r["protocol"] == "dns"
            && r["name"] == "allowed.mirror.test"
            && r["reason"] == "offline"),
        "{d:#?}"
    );
    let node = node.unwrap();
    assert!(
        d.iter().any(|r| r["address"] == node.as_str()
            && r["reason"] == "node"
            && r["port"] == NODE_PORT),
        "{d:#?}"
    );
    // a runc container is named; every record names the pod
    assert!(d
        .iter()
        .all(|r| r["pod"].as_str().is_some_and(|p| p.ends_with("-pod"))));
}

#[test]
fn modes_in_gvisor() {
    if skip_unless_root("modes_in_gvisor") {
        return;
    }
    modes(false);
}

#[test]
fn modes_behind_the_runc_delegate() {
    if skip_unless_root("modes_behind_the_runc_delegate") {
        return;
    }
    modes(true);
}

/// Names through agentbox's resolver: only allowed names resolve, exactly
/// the answered addresses open (for the name's ports, for the answer's TTL,
/// flows outlive it), rebinding answers are removed, names that match no
/// entry never leave the node; the documented limits (shared addresses,
/// wildcard zones carrying labels upstream) shown as they are.
#[test]
fn allowlist_by_name_in_gvisor() {
    if skip_unless_root("allowlist_by_name_in_gvisor") {
        return;
    }
    let cfg = ConfigDir::new();
    let (ctd, net) = start(&cfg, &["names"]);
    write(
        &cfg,
        &ctd,
        &net,
        "names",
        "mode = \"allowlist\"\nallow = [\"allowed.mirror.test:80\", \"v6only.mirror.test:80\", \"rebind.mirror.test:80\", \"shared.cdn.test:80\", \"*.tunnel.test:80\"]\ndns_min_ttl = 1\ndns_max_ttl = 4\n",
        false,
    );
    let cri = ctd.cri().expect("CRI");
    let (_pod, id) = pod_with(&cri, &ctd, "names", "allow-name", &[]);
    let resolver = format!("10.233.{}.254", ctd.network().index);
    let p = |a: &str, b: String| (a.to_string(), b);
    let r = probe(
        &cri,
        &id,
        &[
            // an address the pod knows without asking stays closed
            p("ip-before-asking", format!("tcp {PUBLIC4} 80")),
            p("resolve-allowed", "resolve allowed.mirror.test".into()),
            p("tcp4-name", "-4 tcp allowed.mirror.test 80".into()),
            p("tcp6-name", "-6 tcp allowed.mirror.test 80".into()),
            p("udp4-name", "-4 udp allowed.mirror.test 80".into()),
            p("udp6-name", "-6 udp allowed.mirror.test 80".into()),
            p("ip-after-asking", format!("tcp {PUBLIC4} 80")),
            p(
                "tcp-name-other-port",
                "-4 tcp allowed.mirror.test 443".into(),
            ),
            p("icmp-name-port-entry", "-4 icmp allowed.mirror.test".into()),
            p("tcp6-v6only", "-6 tcp v6only.mirror.test 80".into()),
            p("resolve-other", "resolve other.mirror.test".into()),
            p("ip-of-other", format!("tcp {PUBLIC4_OTHER} 80")),
            p("rebind", "-4 tcp rebind.mirror.test 80".into()),
            p("rebind6", "-6 tcp rebind.mirror.test 80".into()),
            p("shared", "tcp shared.cdn.test 80".into()),
            p("resolve-hidden", "resolve hidden.cdn.test".into()),
            // a shared address opened for one name serves every name on it
            p("shared-by-ip", format!("tcp {PUBLIC4_SHARED} 80")),
            p("tunnel", "resolve exfil-c2VjcmV0.tunnel.test".into()),
            p(
                "not-a-tunnel",
                "resolve exfil-c2VjcmV0.attacker.test".into(),
            ),
            // the node's resolver itself is a private address
            p("direct-dns", format!("udp {resolver} 53")),
        ],
    );
    eprintln!("{r:#?}");
    let t = |s: &str| (s.to_string(), true);
    let f = |s: &str| (s.to_string(), false);
    expect(
        &r,
        &[
            f("ip-before-asking"),
            t("resolve-allowed"),
            t("tcp4-name"),
            t("tcp6-name"),
            t("udp4-name"),
            t("udp6-name"),
            t("ip-after-asking"),
            f("tcp-name-other-port"),
            f("icmp-name-port-entry"),
            t("tcp6-v6only"),
            f("resolve-other"),
            f("ip-of-other"),
            f("rebind"),
            f("rebind6"),
            t("shared"),
            f("resolve-hidden"),
            t("shared-by-ip"),
            t("tunnel"),
            f("not-a-tunnel"),
            f("direct-dns"),
        ],
    );
    assert!(r["resolve-allowed"].1.contains(PUBLIC4) && r["resolve-allowed"].1.contains(PUBLIC6));
    // names that match no entry never reached the upstream; a wildcard zone's did
    assert_eq!(net.queries_for("other.mirror.test"), 0);
    assert_eq!(net.queries_for("attacker.test"), 0);
    assert!(net.queries_for("exfil-c2VjcmV0.tunnel.test") > 0);
    let d = denied(&cfg);
    let has = |f: &dyn Fn(&serde_json::Value) -> bool| d.iter().any(f);
    assert!(
        has(&|r| r["protocol"] == "dns" && r["name"] == "other.mirror.test"),
        "{d:#?}"
    );
    assert!(
        has(&|r| r["name"] == "rebind.mirror.test"
            && r["address"] == METADATA4
            && r["answer_removed"] == true),
        "{d:#?}"
    );
    assert!(
        has(&|r| r["address"] == PUBLIC4_OTHER && r["port"] == 80),
        "{d:#?}"
    );
    // the answer's TTL (cut to 4 s) ends the admission; a new connection needs a new answer
    std::thread::sleep(std::time::Duration::from_secs(6));
    let r = probe(&cri, &id, &[p("ip-after-ttl", format!("tcp {PUBLIC4} 80"))]);
    expect(&r, &[f("ip-after-ttl")]);
}

/// The phase switch: a setup container downloads from an allowlisted host
/// and holds a connection open; creating the first agent container switches
/// the pod to the agent policy (offline) before it can start, and the open
/// connection is cut — seen from inside the sandbox. In time: the agent
/// container does not start while the setup container runs, and no setup
/// container is created after it.
fn phase_switch(delegate: bool) {
    let cfg = ConfigDir::new();
    let (ctd, net) = start(&cfg, &["phases"]);
    write(
        &cfg,
        &ctd,
        &net,
        "phases",
        &format!(
            "mode = \"offline\"\n[network.setup]\nmode = \"allowlist\"\nallow = [\"allowed.mirror.test:{DOWNLOAD_PORT}\", \"{PUBLIC4}:80\"]\n"
        ),
        delegate,
    );
    let cri = ctd.cri().expect("CRI");
    let pod = cri
        .run_pod(
            "phased",
            "egress",
            "uid-phased",
            "agentbox-phases",
            &[("agentbox.dev/setup-containers", "fetch,late")],
        )
        .expect("RunPodSandbox");
    let fetch = agentbox_e2e::ContainerSpec::new("fetch", agentbox_e2e::BUSYBOX_IMAGE)
        .command(["sh", "-c"])
        .args([format!(
            "netprobe -t 5000 get allowed.mirror.test {DOWNLOAD_PORT}; netprobe -t 3000 hold {PUBLIC4} 80 60; echo hold-exit=$?; sleep 4"
        )]);
    let fid = cri.create_container(&pod, &fetch).expect("create fetch");
    cri.start(&fid).expect("start fetch");
    let log = |name: &str| cri.container_log_text(&pod, name, None).unwrap_or_default();
    assert!(
        wait_until(T, || log("fetch").contains("ok 3")),
        "the setup container did not download and connect: {}",
        log("fetch")
    );
    assert!(
        log("fetch").contains(&format!("downloaded {DOWNLOAD_BYTES} bytes")),
        "{}",
        log("fetch")
    );

    // the first agent container (CRI creates its task at StartContainer):
    // its Create switches the pod offline, then its Start is refused while
    // the setup container still runs
    let agent = agentbox_e2e::ContainerSpec::new("agent", agentbox_e2e::BUSYBOX_IMAGE)
        .command(["sleep", "600"]);
    let aid = cri.create_container(&pod, &agent).expect("create agent");
    let e = cri
        .start(&aid)
        .expect_err("agent started beside a running setup container");
    assert!(format!("{e:#}").contains("setup container fetch"), "{e:#}");
    assert!(
        wait_until(std::time::Duration::from_secs(20), || log("fetch")
            .contains("cut:")),
        "the setup phase's connection was not cut: {}\n{}",
        log("fetch"),
        std::fs::read_to_string(cfg.path().join("audit.jsonl")).unwrap_or_default()
    );
    assert!(
        wait_until(std::time::Duration::from_secs(10), || log("fetch")
            .contains("hold-exit=3")),
        "{}",
        log("fetch")
    );
    // no setup container after an agent one
    let late =
        agentbox_e2e::ContainerSpec::new("late", agentbox_e2e::BUSYBOX_IMAGE).command(["true"]);
    let lid = cri
        .create_container(&pod, &late)
        .expect("create late (CRI)");
    let e = cri
        .start(&lid)
        .expect_err("setup container ran after the agent");
    assert!(
        format!("{e:#}").contains("after agent container agent"),
        "{e:#}"
    );
    // once the setup container exited, an agent starts, offline
    assert!(
        wait_until(T, || cri.container_status(&fid).is_ok_and(
            |s| s.state == agentbox_e2e::cri::v1::ContainerState::ContainerExited as i32
        )),
        "the setup container did not exit"
    );
    let agent2 = agentbox_e2e::ContainerSpec::new("agent2", agentbox_e2e::BUSYBOX_IMAGE)
        .command(["sleep", "600"]);
    let aid = cri.create_container(&pod, &agent2).expect("create agent2");
    cri.start(&aid).expect("start agent");
    let p = |a: &str, b: String| (a.to_string(), b);
    let r = probe(
        &cri,
        &aid,
        &[
            p("setup-host", format!("tcp {PUBLIC4} 80")),
            p(
                "setup-name",
                format!("get allowed.mirror.test {DOWNLOAD_PORT}"),
            ),
            p("public6", format!("-6 tcp {PUBLIC6} 80")),
        ],
    );
    let f = |s: &str| (s.to_string(), false);
    expect(&r, &[f("setup-host"), f("setup-name"), f("public6")]);

    let recs = agentbox_e2e::agentbox::audit(cfg.path());
    let ev = |e: &'static str| recs.iter().filter(move |r| r["event"] == e);
    assert!(
        ev("network").any(|r| r["phase"] == "setup" && r["mode"] == "allowlist"),
        "{recs:#?}"
    );
    assert!(
        ev("network_switch")
            .any(|r| r["from"]["phase"] == "setup" && r["to"]["policy"]["mode"] == "offline"),
        "{recs:#?}"
    );
    assert!(
        ev("reject").any(|r| r["at"] == "start" && r["container"] == "agent"),
        "{recs:#?}"
    );
    assert!(
        recs.iter()
            .all(|r| r["event"] != "egress_denied" || r["reason"] != "multicast"),
        "neighbour discovery and MLD pass: {recs:#?}"
    );
    assert!(ev("reject").any(|r| r["container"] == "late"), "{recs:#?}");
    // the cut connection's packets, denied under the agent policy
    assert!(
        ev("egress_denied")
            .any(|r| r["address"] == PUBLIC4 && r["port"] == 80 && r["phase"] == "agent"),
        "{recs:#?}"
    );
}

#[test]
fn phase_switch_in_gvisor() {
    if skip_unless_root("phase_switch_in_gvisor") {
        return;
    }
    phase_switch(false);
}

#[test]
fn phase_switch_behind_the_runc_delegate() {
    if skip_unless_root("phase_switch_behind_the_runc_delegate") {
        return;
    }
    phase_switch(true);
}

/// The rules are kernel state in the pod's namespace: they hold across a
/// containerd restart (the daemon reconnects), and when the agentbox daemon
/// is killed, containerd's `delete` removes them only after the sandbox;
/// nothing is left, and the next pod gets its own.
#[test]
fn rules_survive_restarts_and_go_with_the_pod() {
    if skip_unless_root("rules_survive_restarts_and_go_with_the_pod") {
        return;
    }
    let cfg = ConfigDir::new();
    let opts = egress_options(&cfg, &["restart"]);
    let mut ctd = agentbox_e2e::Containerd::start(opts.clone()).expect("start containerd");
    let net = TestNet::new(&ctd).expect("test network");
    net.prove().expect("proven");
    ctd.import_busybox(agentbox_e2e::K8S_NAMESPACE)
        .expect("busybox");
    write(
        &cfg,
        &ctd,
        &net,
        "restart",
        &format!("mode = \"allowlist\"\nallow = [\"{PUBLIC4}:80\"]\n"),
        false,
    );
    let p = |a: &str, b: String| (a.to_string(), b);
    let probes = || {
        vec![
            p("allowed", format!("tcp {PUBLIC4} 80")),
            p("denied", format!("tcp {PUBLIC4_OTHER} 80")),
        ]
    };
    let want = [("allowed".to_string(), true), ("denied".to_string(), false)];
    let cri = ctd.cri().expect("CRI");
    let (pod, id) = pod_with(&cri, &ctd, "restart", "restarts", &[]);
    expect(&probe(&cri, &id, &probes()), &want);
    let netns = pod_netns(&ctd, &pod.id);
    assert!(rules_in(&netns).contains("table netdev agentbox"));

    // containerd restarts: the daemon and the rules stay, containerd reconnects
    drop(cri);
    ctd.restart(&opts).expect("restart containerd");
    let cri = ctd.cri().expect("CRI after restart");
    expect(&probe(&cri, &id, &probes()), &want);
    assert!(rules_in(&netns).contains("table netdev agentbox"));

    // the agentbox daemon dies: containerd's `delete` tears the sandbox
    // down first, then the rules
    let daemon = agentbox_e2e::agentbox::pids_matching(&[
        "containerd-shim-agentbox-v1",
        &ctd.dir().display().to_string(),
        "-socket",
    ]);
    assert_eq!(daemon.len(), 1, "one agentbox daemon: {daemon:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let recs = || agentbox_e2e::agentbox::audit(cfg.path());
    assert!(
        wait_until(T, || recs().iter().any(|r| r["event"] == "network_cleanup")),
        "containerd's delete did not clean up: {:#?}",
        recs()
    );
    let r = recs();
    let at = |e: &str| {
        r.iter()
            .position(|x| x["event"] == e && x["container_id"] == pod.id.as_str())
    };
    assert!(
        at("cleanup").unwrap() < at("network_cleanup").unwrap(),
        "{r:#?}"
    );
    assert!(
        r.iter()
            .any(|x| x["event"] == "network_cleanup" && x["result"] == "removed"),
        "{r:#?}"
    );
    if netns.exists() {
        assert!(!rules_in(&netns).contains("agentbox"), "rules left behind");
    }
    assert!(
        agentbox_e2e::agentbox::processes_mentioning(&pod.id)
            .iter()
            .all(|p| !p.contains("runsc")),
        "sandbox left behind"
    );
    let _ = cri.stop_pod(&pod.id);
    let _ = cri.remove_pod(&pod.id);
    // the next pod has its own rules
    let (_pod2, id2) = pod_with(&cri, &ctd, "restart", "after", &[]);
    expect(&probe(&cri, &id2, &probes()), &want);
}

/// Fail closed: rules that cannot be installed mean nothing runs, with a
/// clear error and nothing left behind; a pod annotation that would loosen
/// the node's policy is refused the same way.
#[test]
fn fail_closed() {
    if skip_unless_root("fail_closed") {
        return;
    }
    let cfg = ConfigDir::new();
    let (ctd, net) = start(&cfg, &["closed"]);
    write(&cfg, &ctd, &net, "closed", "mode = \"offline\"\n", false);
    // a pod's annotation may not open what the node closed
    let cri = ctd.cri().expect("CRI");
    let e = cri
        .run_pod(
            "loosen",
            "egress",
            "uid-loosen",
            "agentbox-closed",
            &[("agentbox.dev/network", "open")],
        )
        .expect_err("a pod opened its own network");
    assert!(format!("{e:#}").contains("would loosen"), "{e:#}");

    // a namespace where agentbox's resolver link cannot be made (its name
    // is taken): Create fails, nothing runs, nothing is left
    let ns = format!("abx-fc-{}", ctd.network().index);
    let ip = |args: &[&str]| {
        assert!(
            std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap()
                .success(),
            "ip {args:?}"
        )
    };
    ip(&["netns", "add", &ns]);
    let cleanup = scopeguard(ns.clone());
    ip(&[
        "-n",
        &ns,
        "link",
        "add",
        "agentbox-dnsr",
        "type",
        "veth",
        "peer",
        "name",
        "x0",
    ]);
    ctd.import_busybox(agentbox_e2e::DEFAULT_NAMESPACE)
        .expect("busybox");
    let id = ctd.unique_id("failclosed");
    let config = cfg.path().join("closed.toml").display().to_string();
    let netns = format!("network:/var/run/netns/{ns}");
    let o = ctd.ctr_run(
        &[
            "--runtime",
            agentbox_e2e::agentbox::RUNTIME_TYPE,
            "--runtime-config-path",
            &config,
            "--with-ns",
            &netns,
        ],
        agentbox_e2e::BUSYBOX_IMAGE,
        &id,
        &["sh", "-c", "echo ran"],
    );
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success() && !out.contains("ran\n"), "{out}");
    assert!(
        out.contains("cannot install the pod's egress rules"),
        "{out}"
    );
    let rules = rules_in(std::path::Path::new(&format!("/var/run/netns/{ns}")));
    assert!(!rules.contains("agentbox"), "rules left behind: {rules}");
    let links = std::process::Command::new("ip")
        .args(["-n", &ns, "-o", "link"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("agentbox-dns:"),
        "link left behind"
    );
    // no sandbox ever ran; the daemon ends once containerd is done with it
    assert!(
        wait_until(std::time::Duration::from_secs(20), || {
            agentbox_e2e::agentbox::processes_mentioning(&id)
                .iter()
                .all(|p| !p.contains("runsc") && !p.contains("containerd-shim"))
        }),
        "{:#?}",
        agentbox_e2e::agentbox::processes_mentioning(&id)
    );
    let recs = agentbox_e2e::agentbox::audit(cfg.path());
    assert!(
        recs.iter().any(|r| r["event"] == "reject"
            && r["reason"]
                .as_str()
                .is_some_and(|s| s.contains("egress rules"))),
        "{recs:#?}"
    );
    drop(cleanup);
}

/// Removes a test namespace on drop.
struct NsGuard(String);
impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}
fn scopeguard(ns: String) -> NsGuard {
    NsGuard(ns)
}
