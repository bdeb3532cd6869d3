//! `make demo`: a sample AI-agent pod through agentbox under gVisor, via CRI
//! exactly as the kubelet would run it, on a private containerd. The pod asks
//! for a GitHub token in its environment, the Docker socket and a writable
//! host folder; the demo prints what it asked for next to what it got, as
//! seen from inside the sandbox — the network rows under `[network] mode =
//! "offline"`: cloud metadata, a private host, a public host and DNS, all on
//! a router namespace the demo makes — then the audit lines. Everything it
//! starts is torn down at the end.

use std::os::unix::net::UnixListener;
use std::time::Duration;

use agentbox_e2e::agentbox::{managed_roots, options, write_config, ConfigDir, AGENTBOX};
use agentbox_e2e::egress::{TestNet, METADATA4, PRIVATE4, PUBLIC4};
use agentbox_e2e::{is_root, Binaries, ContainerSpec, Containerd, BUSYBOX_IMAGE, K8S_NAMESPACE};
use anyhow::{bail, Context, Result};

const T: Duration = Duration::from_secs(60);

fn main() {
    if let Err(e) = run() {
        eprintln!("demo failed: {e:#}");
        std::process::exit(1);
    }
}

fn row(what: &str, asked: &str, got: &str) {
    println!("  {what:<16} {asked:<44} {got}");
}

fn run() -> Result<()> {
    if !is_root() {
        bail!("the demo starts containerd and gVisor sandboxes: run it as root");
    }
    println!("agentbox demo: an agent pod through containerd-shim-agentbox-v1 (runsc backend)\n");
    let cfg = ConfigDir::new();
    let cfg_path = cfg.path().join("agentbox.toml");
    let mut opts = options(Binaries::system(), &cfg_path);
    // pods route to a test router namespace only (metadata, private and
    // "public" hosts there); a guard table keeps them off every other interface
    opts.cni_egress = true;
    let ctd = Containerd::start(opts).context("start a private containerd")?;
    let net = TestNet::new(&ctd).context("build the demo's network")?;
    net.prove()?;
    let ca = cfg.path().join("agentbox-ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\n(the company's proxy CA)\n-----END CERTIFICATE-----\n",
    )?;
    let extra = format!(
        "profile = \"standard\"\n[mounts]\n{}\nreadonly = [\"/workspace\"]\ninject = [{{ source = \"{}\", destination = \"/etc/ssl/certs/agentbox-ca.pem\" }}]\n[lifetime]\nmax_seconds = 3600\n[activity]\nenabled = true\n[network]\nmode = \"offline\"\n{}\n",
        managed_roots(&ctd),
        ca.display(),
        net.upstream()
    );
    write_config(cfg.path(), "agentbox", "sandbox", &extra);
    println!("node policy ({}):", cfg_path.display());
    for l in std::fs::read_to_string(&cfg_path)?
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        println!("  | {l}");
    }
    ctd.import_busybox(K8S_NAMESPACE)?;
    let cri = ctd.cri()?;

    // what the agent pod asks for
    let repo = cfg.path().join("repo");
    std::fs::create_dir_all(&repo)?;
    std::fs::write(repo.join("main.rs"), "fn main() {}\n")?;
    let docker = cfg.path().join("docker.sock");
    let _docker_listener = UnixListener::bind(&docker).context("fake docker socket")?;
    let token = format!("ghp_{}", "DemoDemoDemoDemoDemoDemoDemoDemo1234");
    let pod = cri.run_pod("coding-agent", "agents", "uid-demo-1", AGENTBOX, &[])?;
    let spec = ContainerSpec::new("agent", BUSYBOX_IMAGE)
        .command(["sleep", "3600"])
        .env("GITHUB_TOKEN", &token)
        .env("GIT_AUTHOR_NAME", "agent")
        .mount(&docker, "/var/run/docker.sock", false)
        .mount(&repo, "/workspace", false);
    let id = cri.create_container(&pod, &spec)?;
    cri.start(&id)?;
    let sh = |cmd: &str| -> Result<String> {
        let r = cri.exec_sync(&id, &["sh", "-c", cmd], T)?;
        Ok(r.stdout.trim().to_string())
    };

    let kernel = sh("dmesg | head -1")?;
    let env_token = sh("if [ -n \"$GITHUB_TOKEN\" ]; then echo \"GITHUB_TOKEN=${GITHUB_TOKEN%${GITHUB_TOKEN#????}}… (set)\"; else echo 'GITHUB_TOKEN unset'; fi")?;
    let env_author = sh("echo GIT_AUTHOR_NAME=$GIT_AUTHOR_NAME")?;
    let sock = sh(
        "[ -S /var/run/docker.sock ] && echo 'socket present' || echo 'no /var/run/docker.sock'",
    )?;
    let ws = sh(
        "touch /workspace/pwned 2>/dev/null && echo writable || echo 'read-only (write refused)'",
    )?;
    let ca_in =
        sh("[ -f /etc/ssl/certs/agentbox-ca.pem ] && echo 'injected, read-only' || echo missing")?;
    let caps = sh("grep CapEff /proc/self/status | tr -s '\\t' ' '")?;
    let ip = cri.pod_ip(&pod.id)?;
    let addr = sh("ip -4 -o addr show eth0 | awk '{print $4}'")?;
    let reach = |dest: &str| -> Result<String> {
        let out = sh(&format!("netprobe -t 1500 {dest} 2>&1"))?;
        Ok(if out.starts_with("failed") {
            format!("refused: {}", out.rsplit(": ").next().unwrap_or(&out))
        } else {
            format!("REACHED ({out})")
        })
    };
    let metadata = reach(&format!("tcp {METADATA4} 80"))?;
    let private = reach(&format!("tcp {PRIVATE4} 80"))?;
    let public = reach(&format!("tcp {PUBLIC4} 443"))?;
    let dns = reach("resolve allowed.mirror.test")?;
    // the fast runsc configuration: small-file work in the root filesystem
    let files = sh(
        "mkdir -p /home/demo && cd /home/demo && read s _ </proc/uptime && i=0 && \
         while [ $i -lt 1000 ]; do echo \"file $i\" > f$i; read l < f$i; i=$((i+1)); done && \
         read e _ </proc/uptime && cd / && rm -r /home/demo && \
         echo \"1,000 files written and read in $(awk \"BEGIN{print $e-$s}\") s\"",
    )?;

    println!("\ninside the pod, as seen from the agent container (pod IP {ip}):");
    row("", "ASKED FOR", "GOT");
    row("runtime", "runtimeClassName: agentbox", &kernel);
    row("GitHub token", "env GITHUB_TOKEN=ghp_…", &env_token);
    row("ordinary env", "env GIT_AUTHOR_NAME=agent", &env_author);
    row("Docker socket", "hostPath /var/run/docker.sock", &sock);
    row("repo folder", "hostPath /workspace (read-write)", &ws);
    row("company CA", "(nothing)", &ca_in);
    row("capabilities", "image default", &caps);
    row("root filesystem", "image layers, read-write", &files);
    row("network", "pod network", &format!("{addr}, egress offline"));
    row("cloud metadata", &format!("http://{METADATA4}/"), &metadata);
    row("private network", &format!("{PRIVATE4}:80"), &private);
    row("public internet", &format!("{PUBLIC4}:443"), &public);
    row("DNS", "allowed.mirror.test", &dns);
    for got in [&metadata, &private, &public, &dns] {
        if got.starts_with("REACHED") {
            bail!("an offline pod reached the network: {got}");
        }
    }
    if repo.join("pwned").exists() {
        bail!("the read-only workspace was written to");
    }

    cri.stop_container(&id, Duration::from_secs(2))?;
    cri.remove_container(&id)?;
    cri.stop_pod(&pod.id)?;
    cri.remove_pod(&pod.id)?;

    let audit = std::fs::read_to_string(cfg.path().join("audit.jsonl"))?;
    if audit.contains(&token) {
        bail!("the audit log holds the token");
    }
    println!(
        "\naudit log ({}), one JSON object per event:",
        cfg.path().join("audit.jsonl").display()
    );
    for l in audit.lines() {
        let v: serde_json::Value = serde_json::from_str(l)?;
        if v["source"] == "gvisor" {
            continue; // what ran inside the sandbox: shown by agentbox-audit below
        }
        let who = v["container"].as_str().unwrap_or("(pod sandbox)");
        let mut line = format!(
            "  {} {:<9} {:<14}",
            v["time"].as_str().unwrap_or(""),
            v["event"].as_str().unwrap_or(""),
            who
        );
        if let Some(ch) = v["changes"].as_array() {
            // the headline changes; the standard hardening (masked paths,
            // capabilities, no-new-privileges) is summed up
            let (hardening, notable): (Vec<_>, Vec<_>) = ch.iter().partition(|c| {
                let r = c["rule"].as_str().unwrap_or("");
                r.starts_with("linux.") || r.starts_with("caps.") || r.starts_with("process.")
            });
            let items: Vec<String> = notable
                .iter()
                .map(|c| {
                    format!(
                        "{} {} ({})",
                        c["target"].as_str().unwrap_or(""),
                        c["action"].as_str().unwrap_or(""),
                        c["rule"].as_str().unwrap_or("")
                    )
                })
                .collect();
            if !items.is_empty() {
                line.push_str(&format!(" {};", items.join(", ")));
            }
            if !hardening.is_empty() {
                line.push_str(&format!(" +{} hardening changes", hardening.len()));
            }
        }
        if let Some(sig) = v.get("signal") {
            line.push_str(&format!(" signal={sig}"));
        }
        if let Some(s) = v.get("exit_status") {
            line.push_str(&format!(" exit_status={s}"));
        }
        if v["event"] == "egress_denied" {
            line.push_str(&format!(
                " {} {}{}{} ({})",
                v["protocol"].as_str().unwrap_or(""),
                v["address"].as_str().or(v["name"].as_str()).unwrap_or(""),
                if v["port"].is_number() { ":" } else { "" },
                v["port"]
                    .as_u64()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                v["reason"].as_str().unwrap_or("")
            ));
        }
        if v["event"] == "network" {
            line.push_str(&format!(
                " mode={} phase={} interfaces={} install_ms={:.1}",
                v["mode"].as_str().unwrap_or(""),
                v["phase"].as_str().unwrap_or(""),
                v["interfaces"],
                v["install_ms"].as_f64().unwrap_or(0.0)
            ));
        }
        if v["event"] == "tuning" {
            line.push_str(&format!(
                " {} flags={}",
                v["runsc"].as_str().unwrap_or(""),
                v["flags"]
            ));
        }
        if let Some(a) = v.get("argv") {
            line.push_str(&format!(" argv={a}"));
        }
        println!("{line}");
    }
    // what ran inside the sandbox, from gVisor's runtime monitoring
    let (records, _) = agentbox_audit::load(audit.as_bytes())?;
    let filter = agentbox_audit::Filter {
        container: Some("agent".into()),
        ..Default::default()
    };
    println!(
        "\nagentbox-audit {} --container agent (the agent's processes, files, network):\n",
        cfg.path().join("audit.jsonl").display()
    );
    for l in agentbox_audit::text::render(&agentbox_audit::build(&records, &filter)).lines() {
        println!("  {l}");
    }
    drop(cri);
    drop(net);
    drop(ctd);
    println!("\ndone: the private containerd, the sandbox and the pod network are gone.");
    Ok(())
}
