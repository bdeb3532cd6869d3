//! Property tests of the engine's invariants over generated specs.

use agentbox_policy::{apply, apply_value, Decision, NoHostFs, Policy, Profile, ALLOWED_CAPS};
use std::cell::Cell;

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

/// Names the generator plants that every agent container must lose.
const SECRET_NAMES: &[&str] = &[
    "GITHUB_TOKEN",
    "gh_token",
    "AWS_SECRET_ACCESS_KEY",
    "PGPASSWORD",
    "OPENAI_API_KEY",
    "DB_PASS",
    "Vault_Token",
];

const REQUIRED: [&str; 5] = ["pid", "ipc", "uts", "mount", "network"];

const SECRET_VALUES: &[&str] = &[
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "AKIAIOSFODNN7EXAMPLE",
    "xoxb-123456789012-abcdefghijkl",
    "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123",
    "postgres://u:pw12345@db/x",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
    "-----BEGIN PRIVATE KEY-----",
    "npm_abcdefghijklmnopqrstuvwxyz0123456789",
];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "PATH",
            "HOME",
            "GITHUB_TOKEN",
            "gh_token",
            "AWS_SECRET_ACCESS_KEY",
            "PGPASSWORD",
            "OPENAI_API_KEY",
            "LANG",
            "LC_ALL",
            "KUBERNETES_SERVICE_HOST",
            "NODE_ENV",
            "MY_SERVICE_PORT",
            "DB_PASS",
            "TOKENIZERS_PARALLELISM",
            "Vault_Token",
            "X",
        ])
        .prop_map(str::to_string),
        "[A-Za-z_][A-Za-z0-9_]{0,12}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(SECRET_VALUES.to_vec()).prop_map(str::to_string),
        prop::sample::select(SECRET_VALUES.to_vec()).prop_map(|s| format!("prefix {s} suffix")),
        "[ -~]{0,24}",
        Just("/usr/bin:/bin".to_string()),
    ]
}

fn env_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (name(), value()).prop_map(|(n, v)| format!("{n}={v}")),
        1 => "[ -~]{0,16}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    let comps = prop::sample::select(vec![
        "var",
        "run",
        "lib",
        "kubelet",
        "pods",
        "docker.sock",
        "containerd",
        "containerd.sock",
        "..",
        ".",
        "",
        "proc",
        "1",
        "root",
        "srv",
        "data",
        "io.containerd.grpc.v1.cri",
        "user",
        "1000",
        "etc",
        "work",
    ]);
    prop_oneof![
        prop::collection::vec(comps, 0..6).prop_map(|c| format!("/{}", c.join("/"))),
        prop::sample::select(vec![
            "/var/run/docker.sock",
            "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/w",
            "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/s/shm",
            "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/s/hostname",
            "/var/run/secrets/kubernetes.io/serviceaccount",
            "/srv/data",
            "/work",
            "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/w/sub",
            "/var/lib/kubelet/pods/u/volume-subpaths/w/agent/0",
            "relative/path",
        ])
        .prop_map(str::to_string),
    ]
}

/// Bind sources: mostly what the kubelet and containerd hand a container
/// (so most specs are allowed and their invariants checked), sometimes any path.
fn source() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/w",
            "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/w/sub",
            "/var/lib/kubelet/pods/u/volumes/kubernetes.io~configmap/c",
            "/var/lib/kubelet/pods/u/volume-subpaths/w/agent/0",
            "/var/lib/kubelet/pods/u/etc-hosts",
            "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/s/hostname",
            "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/s/shm",
        ])
        .prop_map(str::to_string),
        1 => path(),
    ]
}

fn mount() -> impl Strategy<Value = Value> {
    let opts =
        prop::sample::subsequence(vec!["rbind", "bind", "ro", "rw", "nosuid", "nodev"], 0..4);
    prop_oneof![
        (source(), path(), opts.clone()).prop_map(
            |(s, d, o)| json!({"destination": d, "type": "bind", "source": s, "options": o})
        ),
        (source(), path(), opts)
            .prop_map(|(s, d, o)| json!({"destination": d, "source": s, "options": o})),
        (
            prop::sample::select(vec!["proc", "tmpfs", "sysfs", "devpts", "mqueue", "cgroup"]),
            path()
        )
            .prop_map(
                |(t, d)| json!({"destination": d, "type": t, "source": t, "options": ["nosuid"]})
            ),
    ]
}

fn caps() -> impl Strategy<Value = Vec<&'static str>> {
    prop::sample::subsequence(
        vec![
            "CAP_CHOWN",
            "CAP_KILL",
            "CAP_SYS_ADMIN",
            "CAP_NET_RAW",
            "CAP_NET_ADMIN",
            "CAP_SETUID",
            "cap_kill",
        ],
        0..5,
    )
}

fn annotations() -> impl Strategy<Value = Map<String, Value>> {
    let pairs = prop::sample::subsequence(
        vec![
            ("dev.gvisor.flag.network", "host"),
            ("io.katacontainers.config.hypervisor.kernel_params", "x"),
            ("io.katacontainers.config_path", "/tmp/k.toml"),
            ("io.katacontainers.config.hypervisor.default_memory", "4096"),
            ("dev.gvisor.spec.mount.w.source", "/"),
            ("dev.gvisor.spec.cgroup-parent", "/x"),
            ("DEV.GVISOR.FLAG.debug", "true"),
            ("io.kubernetes.cri.container-name", "agent"),
            ("io.kubernetes.cri.container-type", "container"),
            ("agentbox.dev/setup-containers", "agent"),
            ("agentbox.dev/profile", "sensitive"),
            ("agentbox.dev/readonly-mounts", "/srv,/work"),
            ("agentbox.dev/strip-env", "NODE_*"),
            ("example.com/vendor", "v"),
        ],
        0..6,
    );
    pairs.prop_map(|p| {
        p.into_iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect()
    })
}

fn spec() -> impl Strategy<Value = Value> {
    (
        prop_oneof![16 => Just(REQUIRED.to_vec()), 1 => prop::sample::subsequence(REQUIRED.to_vec(), 3..=5)],
        prop::collection::vec(env_entry(), 0..10),
        prop::collection::vec(mount(), 0..6),
        (caps(), caps()),
        annotations(),
        prop_oneof![12 => prop::sample::select(vec!["/", "/work", "/tmp"]), 1 => Just("/proc/1")],
        prop::option::of(any::<bool>()),
        prop::collection::vec(("x-[a-z]{1,6}", any::<i64>()), 0..3),
        prop_oneof![16 => prop::sample::select(vec!["rootfs", "./rootfs", "rootfs/"]), 1 => prop::sample::select(vec!["/", "rootfs/..", "/rootfs", "../x/rootfs"])],
    )
        .prop_map(|(ns, env, mounts, (bset, amb), ann, cwd, nnp, extra, rootp)| {
            let mut s = json!({
                "ociVersion": "1.1.0",
                "process": {"args": ["sh"], "cwd": cwd, "env": env,
                    "capabilities": {"bounding": bset, "effective": bset, "ambient": amb}},
                "root": {"path": rootp},
                "mounts": mounts,
                "annotations": ann,
                "linux": {"namespaces": ns.iter().map(|t| json!({"type": t})).collect::<Vec<_>>(),
                          "sysctl": {"kernel.core_pattern": "x", "net.ipv4.tcp_syncookies": "1"}},
            });
            if let Some(b) = nnp {
                s["process"]["noNewPrivileges"] = json!(b);
            }
            for (k, v) in extra {
                s[k.as_str()] = json!({"nested": [v, {"k": "v"}]});
                s["process"][k.as_str()] = json!(v);
            }
            s
        })
}

/// A node policy and what its `[phases]`/`[annotations]` allow.
#[derive(Debug, Clone)]
struct Node {
    policy: Policy,
    /// `None`: any name (standard profile only); else the allowed names.
    setup: Option<Vec<&'static str>>,
    allow: Vec<&'static str>,
}

const CONFIG: &str = "[mounts]\nreadonly = [\"/work\"]\n[phases]\nsetup_containers = [\"agent\"]\n[annotations]\nkata_allow = [\"io.katacontainers.config.hypervisor.default_memory\"]\ngvisor_allow = [\"dev.gvisor.spec.cgroup-parent\"]\n";

fn policy() -> impl Strategy<Value = Node> {
    prop::sample::select(vec![0, 1, 2, 3]).prop_map(|i| match i {
        0 => Node {
            policy: Policy::from_profile(Profile::Standard),
            setup: None,
            allow: vec![],
        },
        1 => Node {
            policy: Policy::from_profile(Profile::Sensitive),
            setup: Some(vec![]),
            allow: vec![],
        },
        n => Node {
            policy: Policy::from_toml_str(&format!(
                "profile = \"{}\"\n{CONFIG}",
                if n == 2 { "standard" } else { "sensitive" }
            ))
            .unwrap(),
            setup: Some(vec!["agent"]),
            allow: vec![
                "io.katacontainers.config.hypervisor.default_memory",
                "dev.gvisor.spec.cgroup-parent",
            ],
        },
    })
}

fn is_bind(m: &Value) -> bool {
    m["type"] == "bind"
        || m["options"]
            .as_array()
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

fn under(p: &str, root: &str) -> bool {
    root == "/" || p == root || p.starts_with(&format!("{root}/"))
}

/// Every invariant of an allowed decision; `Ok(false)` when refused.
fn check(s: &Value, node: &Node) -> Result<bool, TestCaseError> {
    let s = s.clone();
    let p = &node.policy;
    let d = apply_value(p, s.clone(), &NoHostFs);
    let report_text = serde_json::to_string(d.report()).unwrap();
    for v in SECRET_VALUES {
        prop_assert!(!report_text.contains(v), "report leaks a value");
    }
    let Decision::Allowed { spec: out, report } = d else {
        return Ok(false);
    };

    // no host namespace
    let ns = out["linux"]["namespaces"].as_array().unwrap();
    for t in REQUIRED {
        prop_assert!(ns.iter().any(|n| n["type"] == t));
    }
    // no planted secret survives for agent containers: the oracle is
    // the planted lists, not the detector under test
    if report.phase == "agent" {
        for e in out["process"]["env"].as_array().unwrap() {
            let e = e.as_str().unwrap();
            let (n, v) = e.split_once('=').expect("malformed entries are removed");
            prop_assert!(
                !SECRET_VALUES.iter().any(|p| v.contains(p)),
                "a planted value survived for {n}"
            );
            prop_assert!(!SECRET_NAMES.contains(&n), "{n} survived");
        }
    }
    // capabilities reduced, ambient cleared, noNewPrivileges set
    let caps = &out["process"]["capabilities"];
    for set in ["bounding", "effective"] {
        for c in caps[set].as_array().unwrap() {
            prop_assert!(ALLOWED_CAPS.contains(&c.as_str().unwrap()));
        }
    }
    prop_assert_eq!(&caps["ambient"], &json!([]));
    prop_assert_eq!(&out["process"]["noNewPrivileges"], &json!(true));
    // no runtime annotation the node does not list
    for k in out["annotations"].as_object().unwrap().keys() {
        let l = k.to_ascii_lowercase();
        if l.starts_with("dev.gvisor.") || l.starts_with("io.katacontainers.") {
            prop_assert!(node.allow.contains(&k.as_str()), "{k} survived");
        }
    }
    // setup phase only for a name the node allows
    if report.phase == "setup" {
        let me = s["annotations"]["io.kubernetes.cri.container-name"]
            .as_str()
            .unwrap();
        match &node.setup {
            None => prop_assert_eq!(report.profile.as_str(), "standard"),
            Some(names) => prop_assert!(names.contains(&me)),
        }
    }
    // the root is the bundle's rootfs
    prop_assert_eq!(
        norm(&format!("/{}", out["root"]["path"].as_str().unwrap())),
        "/rootfs"
    );
    // read-only follows the source of every bind at a read-only destination
    let mut ro_dests: Vec<String> = if node.allow.is_empty() {
        vec![]
    } else {
        vec!["/work".into()]
    };
    if let Some(a) = s["annotations"]["agentbox.dev/readonly-mounts"].as_str() {
        ro_dests.extend(a.split(',').map(norm));
    }
    let mounts = out["mounts"].as_array().unwrap();
    let ro_srcs: Vec<String> = mounts
        .iter()
        .filter(|m| {
            is_bind(m)
                && ro_dests
                    .iter()
                    .any(|r| under(&norm(m["destination"].as_str().unwrap()), r))
        })
        .map(|m| norm(m["source"].as_str().unwrap()))
        .collect();
    for m in mounts.iter().filter(|m| is_bind(m)) {
        let src = norm(m["source"].as_str().unwrap());
        if ro_srcs.iter().any(|r| under(&src, r) || under(r, &src)) {
            let o = m["options"].as_array().unwrap();
            prop_assert!(
                o.iter().any(|x| x == "ro") && !o.iter().any(|x| x == "rw"),
                "{m} writable"
            );
        }
    }
    // unknown fields preserved
    for (k, v) in s.as_object().unwrap() {
        if k.starts_with("x-") {
            prop_assert_eq!(&out[k.as_str()], v);
            prop_assert_eq!(&out["process"][k.as_str()], &s["process"][k.as_str()]);
        }
    }
    prop_assert_eq!(&out["root"], &s["root"]);
    prop_assert!(
        report.kind == "container"
            && report.container.as_deref()
                == s["annotations"]["io.kubernetes.cri.container-name"].as_str()
    );
    // no mount onto a runtime socket path
    for m in out["mounts"].as_array().unwrap() {
        let d = norm(m["destination"].as_str().unwrap());
        prop_assert!(
            d != "/run/docker.sock" && d != "/run/containerd/containerd.sock",
            "{d}"
        );
    }
    // idempotence
    match apply_value(p, out.clone(), &NoHostFs) {
        Decision::Allowed {
            spec: again,
            report,
        } => {
            prop_assert_eq!(&again, &out);
            prop_assert!(
                report.changes.is_empty(),
                "second pass: {:?}",
                report.changes
            );
        }
        Decision::Rejected { reason, .. } => prop_assert!(false, "second pass refused: {reason}"),
    }
    Ok(true)
}

/// The invariants over generated specs, most of them allowed: a refused
/// spec proves only that it was refused, so the ratio is reported and bounded.
#[test]
fn invariants() {
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    });
    let (total, allowed) = (Cell::new(0u32), Cell::new(0u32));
    runner
        .run(&(spec(), policy()), |(s, node)| {
            total.set(total.get() + 1);
            if check(&s, &node)? {
                allowed.set(allowed.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    let ratio = f64::from(allowed.get()) / f64::from(total.get());
    println!(
        "invariants: {} of {} generated specs allowed ({:.0} %)",
        allowed.get(),
        total.get(),
        ratio * 100.0
    );
    assert!(
        ratio >= 0.6,
        "only {:.0} % of generated specs were allowed: the invariants were barely exercised",
        ratio * 100.0
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn exec_process_invariants(env in prop::collection::vec(env_entry(), 0..10), (bset, amb) in (caps(), caps()), setup in any::<bool>()) {
        let p = Policy::from_toml_str("[phases]\nsetup_containers = [\"agent\"]").unwrap();
        let mut ann = Map::new();
        ann.insert("io.kubernetes.cri.container-name".into(), json!("agent"));
        if setup {
            ann.insert("agentbox.dev/setup-containers".into(), json!("agent"));
        }
        let process = json!({"args": ["sh"], "cwd": "/", "env": env,
            "capabilities": {"bounding": bset, "ambient": amb}});
        let d = agentbox_policy::apply_process(&p, &serde_json::to_vec(&process).unwrap(), &ann).unwrap();
        let Decision::Allowed { spec: out, report } = d else { panic!("refused") };
        prop_assert_eq!(report.phase.as_str(), if setup { "setup" } else { "agent" });
        prop_assert_eq!(&out["noNewPrivileges"], &json!(true));
        prop_assert_eq!(&out["capabilities"]["ambient"], &json!([]));
        if !setup {
            for e in out["env"].as_array().unwrap() {
                let (n, v) = e.as_str().unwrap().split_once('=').unwrap();
                prop_assert!(!SECRET_VALUES.iter().any(|p| v.contains(p)), "a planted value survived for {n}");
                prop_assert!(!SECRET_NAMES.contains(&n), "{n} survived");
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let p = Policy::from_profile(Profile::Sensitive);
        let _ = apply(&p, &bytes, &NoHostFs);
    }

    #[test]
    fn mutated_json_never_panics(s in spec(), cut in 0usize..2000, byte in any::<u8>()) {
        let p = Policy::from_profile(Profile::Standard);
        let mut bytes = serde_json::to_vec(&s).unwrap();
        if !bytes.is_empty() {
            let i = cut % bytes.len();
            bytes[i] = byte;
        }
        let _ = apply(&p, &bytes, &NoHostFs);
        bytes.truncate(cut.min(bytes.len()));
        let _ = apply(&p, &bytes, &NoHostFs);
    }

    #[test]
    fn wrong_types_never_panic(v in any_json(3)) {
        let p = Policy::from_profile(Profile::Standard);
        for key in ["process", "mounts", "linux", "annotations", "hooks"] {
            let s = json!({ key: v.clone() });
            let _ = apply_value(&p, s.clone(), &NoHostFs);
            let _ = apply(&p, &serde_json::to_vec(&s).unwrap(), &NoHostFs);
        }
    }
}

fn any_json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        "[a-z/=_]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "env",
                    "type",
                    "destination",
                    "source",
                    "options",
                    "namespaces",
                    "capabilities",
                    "bounding",
                    "devices",
                    "sysctl",
                    "cwd",
                    "prestart"
                ])
                .prop_map(str::to_string),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Lexical normal form with `/var/run` folded to `/run`.
fn norm(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    let s = format!("/{}", out.join("/"));
    match s.strip_prefix("/var/run") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("/run{rest}"),
        _ => s,
    }
}
