//! Shared setup of the egress end-to-end tests: a containerd whose CNI
//! routes pods to the test's router (see `agentbox_e2e::egress`), an
//! agentbox config with a `[network]` table, probes run from inside a pod.

use std::collections::BTreeMap;
use std::time::Duration;

use agentbox_e2e::agentbox::*;
use agentbox_e2e::cri::Pod;
use agentbox_e2e::egress::TestNet;
use agentbox_e2e::{
    Binaries, ContainerSpec, Containerd, ContainerdOptions, Cri, BUSYBOX_IMAGE, K8S_NAMESPACE,
};

pub const T: Duration = Duration::from_secs(120);

/// Options for a containerd for egress tests: one agentbox handler per
/// name in `handlers` (`agentbox-<name>`, config `<name>.toml`), CNI routes
/// to the test's router.
pub fn egress_options(cfg: &ConfigDir, handlers: &[&str]) -> ContainerdOptions {
    let first = cfg.path().join(format!("{}.toml", handlers[0]));
    let mut opts = with_handlers(options(Binaries::system(), &first), cfg.path(), handlers);
    opts.cni_egress = true;
    opts
}

/// A containerd (see [`egress_options`]) and its test network, proven before use.
pub fn start(cfg: &ConfigDir, handlers: &[&str]) -> (Containerd, TestNet) {
    let ctd = Containerd::start(egress_options(cfg, handlers)).expect("start containerd");
    let net = TestNet::new(&ctd).expect("build the test network");
    net.prove().expect("every destination is the test router's");
    ctd.import_busybox(K8S_NAMESPACE).expect("import busybox");
    (ctd, net)
}

/// Write handler `name`'s agentbox config: `network` is the body of
/// `[network]` (the upstream line is added) and may carry `[network.setup]`
/// after it; `top` goes first (e.g. `[phases]`).
pub fn write(
    cfg: &ConfigDir,
    ctd: &Containerd,
    net: &TestNet,
    name: &str,
    network: &str,
    delegate: bool,
) {
    let extra = format!(
        "profile = \"standard\"\n[mounts]\n{}\n[network]\n{}\n{network}\n",
        managed_roots(ctd),
        net.upstream()
    );
    let path = write_config(cfg.path(), name, "sandbox", &extra);
    if delegate {
        use_runc_delegate(&path);
    }
}

/// A pod on handler `agentbox-<handler>` with one long-running container;
/// its id. Proves first that the pod's default routes go to the test's router.
pub fn pod_with(
    cri: &Cri,
    ctd: &Containerd,
    handler: &str,
    name: &str,
    annotations: &[(&str, &str)],
) -> (Pod, String) {
    let mut config = cri.pod_config(name, "egress", &format!("uid-{name}"), annotations);
    if let Some(l) = config.linux.as_mut() {
        // runc pods: unprivileged ICMP sockets, as gVisor has them
        l.sysctls
            .insert("net.ipv4.ping_group_range".into(), "0 2147483647".into());
    }
    let pod = cri
        .run_pod_with_config(config, &format!("agentbox-{handler}"))
        .expect("RunPodSandbox");
    let c = ContainerSpec::new("agent", BUSYBOX_IMAGE).command(["sleep", "600"]);
    let id = cri.create_container(&pod, &c).expect("CreateContainer");
    cri.start(&id).expect("StartContainer");
    let (r4, r6) = ctd.network().router();
    let routes = cri.exec_sync(&id, &["ip", "route"], T).expect("ip route");
    assert!(
        routes.stdout.contains(&format!("default via {r4}")),
        "the pod must route through the test router only: {routes:?}"
    );
    let routes6 = cri
        .exec_sync(&id, &["ip", "-6", "route"], T)
        .expect("ip -6 route");
    assert!(
        routes6.stdout.contains(&format!("default via {r6}")),
        "the pod must route through the test router only: {routes6:?}"
    );
    (pod, id)
}

/// Run `netprobe ARGS` for each (label, args) in one exec; label → (worked, output).
pub fn probe(cri: &Cri, id: &str, probes: &[(String, String)]) -> BTreeMap<String, (bool, String)> {
    let mut script = String::new();
    for (label, args) in probes {
        script.push_str(&format!(
            "echo '@@ {label}'; netprobe -t 1000 {args} 2>&1; echo \"@@rc $?\"\n"
        ));
    }
    let r = cri
        .exec_sync(id, &["sh", "-c", &script], Duration::from_secs(300))
        .expect("exec probes");
    let mut out = BTreeMap::new();
    let mut label = None;
    let mut text = String::new();
    for l in r.stdout.lines() {
        if let Some(rest) = l.strip_prefix("@@rc ") {
            if let Some(lb) = label.take() {
                out.insert(lb, (rest.trim() == "0", std::mem::take(&mut text)));
            }
        } else if let Some(lb) = l.strip_prefix("@@ ") {
            label = Some(lb.to_string());
            text.clear();
        } else {
            text.push_str(l);
            text.push('\n');
        }
    }
    assert_eq!(out.len(), probes.len(), "probes lost: {r:?}");
    out
}

/// Compare probe results with what each should do; every mismatch at once.
pub fn expect(results: &BTreeMap<String, (bool, String)>, want: &[(String, bool)]) {
    let mut bad = Vec::new();
    for (label, ok) in want {
        let (got, text) = &results[label];
        if got != ok {
            bad.push(format!(
                "{label}: expected {} but {}",
                if *ok { "reachable" } else { "refused" },
                text.trim()
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} probe(s) wrong:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// `nft list ruleset` inside the network namespace at `netns`.
pub fn rules_in(netns: &std::path::Path) -> String {
    let o = std::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["nft", "list", "ruleset"])
        .output()
        .expect("nsenter nft");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The pod's network namespace, as agentbox recorded it in the sandbox's bundle.
pub fn pod_netns(ctd: &Containerd, sandbox_id: &str) -> std::path::PathBuf {
    agentbox_e2e::agentbox::pod_netns(ctd, sandbox_id).expect("agentbox-network.json")
}

/// The egress_denied records so far.
pub fn denied(cfg: &ConfigDir) -> Vec<serde_json::Value> {
    audit(cfg.path())
        .into_iter()
        .filter(|r| r["event"] == "egress_denied")
        .collect()
}
