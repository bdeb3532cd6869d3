//! `make demo`: a sample AI-agent pod through agentbox under gVisor, via CRI
//! exactly as the kubelet would run it, on a private containerd. The pod asks
//! for a GitHub token in its environment, the Docker socket and a writable
//! host folder; the demo prints what it asked for next to what it got, as
//! seen from inside the sandbox, then the audit lines. Everything it starts is
//! torn down at the end.

use std::os::unix::net::UnixListener;
use std::time::Duration;

use agentbox_e2e::agentbox::{managed_roots, options, write_config, ConfigDir, AGENTBOX};
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
    let ctd = Containerd::start(options(Binaries::system(), &cfg_path))
        .context("start a private containerd")?;
    let ca = cfg.path().join("agentbox-ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\n(the company's proxy CA)\n-----END CERTIFICATE-----\n",
    )?;
    let extra = format!(
        "profile = \"standard\"\n[mounts]\n{}\nreadonly = [\"/workspace\"]\ninject = [{{ source = \"{}\", destination = \"/etc/ssl/certs/agentbox-ca.pem\" }}]\n[lifetime]\nmax_seconds = 3600\n[activity]\nenabled = true\n",
        managed_roots(&ctd),
        ca.display()
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
    let addr = sh("ip -4 -o addr show | grep -v ' lo ' | awk '{print $4}'")?;

    println!("\ninside the pod, as seen from the agent container (pod IP {ip}):");
    row("", "ASKED FOR", "GOT");
    row("runtime", "runtimeClassName: agentbox", &kernel);
    row("GitHub token", "env GITHUB_TOKEN=ghp_…", &env_token);
    row("ordinary env", "env GIT_AUTHOR_NAME=agent", &env_author);
    row("Docker socket", "hostPath /var/run/docker.sock", &sock);
    row("repo folder", "hostPath /workspace (read-write)", &ws);
    row("company CA", "(nothing)", &ca_in);
    row("capabilities", "image default", &caps);
    row("network", "pod network", &addr);
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
    drop(ctd);
    println!("\ndone: the private containerd, the sandbox and the pod network are gone.");
    Ok(())
}
