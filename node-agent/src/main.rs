//! agentbox-node: the node agent the Helm chart's DaemonSet runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agentbox_node::cri::CriClient;
use agentbox_node::install::{install, record_labels, InstallOptions};
use agentbox_node::label;
use agentbox_node::paths::Layout;
use agentbox_node::restart::{parse_command, RestartCommand};
use agentbox_node::status::status;
use agentbox_node::uninstall::{uninstall, UninstallError, UninstallOptions};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use tracing::{info, warn};

#[derive(Parser)]
#[command(
    name = "agentbox-node",
    version,
    about = "Installs agentbox on a Kubernetes node and removes it again"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the shim, the handlers' policies and containerd's runtime handlers.
    Install(InstallArgs),
    /// Remove exactly what install added; refuses while agentbox pods run.
    Uninstall(UninstallArgs),
    /// What is installed, which handlers containerd loaded, how many agentbox pods run.
    Status {
        #[command(flatten)]
        node: NodeArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when the ready file exists (the DaemonSet's readiness probe).
    IsReady {
        #[arg(
            long,
            env = "AGENTBOX_READY_FILE",
            default_value = "/run/agentbox-node/ready"
        )]
        ready_file: PathBuf,
    },
    /// Wait until a DaemonSet's pods are all ready (the uninstall hook's Job).
    WaitDaemonset {
        #[arg(long, env = "POD_NAMESPACE")]
        namespace: String,
        #[arg(long)]
        name: String,
        /// Seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
}

#[derive(Args, Clone)]
struct NodeArgs {
    /// Where the host's / is mounted.
    #[arg(long, env = "AGENTBOX_HOST_ROOT", default_value = "/")]
    host_root: PathBuf,
    /// agentbox's folder on the host (binaries, install record, backups).
    #[arg(long, env = "AGENTBOX_INSTALL_DIR", default_value = "/opt/agentbox")]
    install_dir: PathBuf,
    /// The handlers' agentbox TOML files on the host.
    #[arg(long, env = "AGENTBOX_CONFIG_DIR", default_value = "/etc/agentbox")]
    config_dir: PathBuf,
    /// containerd's config on the host.
    #[arg(
        long,
        env = "AGENTBOX_CONTAINERD_CONFIG",
        default_value = "/etc/containerd/config.toml"
    )]
    containerd_config: PathBuf,
    /// Folder for agentbox's drop-in when containerd (2.x) imports one from there.
    #[arg(
        long,
        env = "AGENTBOX_CONTAINERD_DROPIN_DIR",
        default_value = "/etc/containerd/conf.d"
    )]
    containerd_dropin_dir: PathBuf,
    /// containerd's socket on the host.
    #[arg(
        long,
        env = "AGENTBOX_CONTAINERD_SOCKET",
        default_value = "/run/containerd/containerd.sock"
    )]
    containerd_socket: PathBuf,
    /// A folder on containerd's PATH for a link to the shim (containerd 1.6,
    /// which ignores runtime_path); empty: none.
    #[arg(long, env = "AGENTBOX_SHIM_LINK_DIR", default_value = "/usr/local/bin")]
    shim_link_dir: PathBuf,
}

impl NodeArgs {
    fn layout(&self) -> Layout {
        Layout {
            host_root: self.host_root.clone(),
            install_dir: self.install_dir.clone(),
            config_dir: self.config_dir.clone(),
            containerd_config: self.containerd_config.clone(),
            containerd_dropin_dir: self.containerd_dropin_dir.clone(),
            containerd_socket: self.containerd_socket.clone(),
            shim_link_dir: (!self.shim_link_dir.as_os_str().is_empty())
                .then(|| self.shim_link_dir.clone()),
        }
    }
    fn cri(&self) -> CriClient {
        let l = self.layout();
        CriClient::new(&l.on_host(&l.containerd_socket))
    }
}

#[derive(Args, Clone)]
struct ChangeArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// How to restart containerd: words, or a JSON array.
    #[arg(
        long,
        env = "AGENTBOX_RESTART_COMMAND",
        default_value = "systemctl restart containerd"
    )]
    restart_command: String,
    /// Run the restart command in the namespaces of this host PID (needs
    /// hostPID); 0 runs it in the agent's own.
    #[arg(long, env = "AGENTBOX_RESTART_NAMESPACES_OF", default_value_t = 1)]
    restart_namespaces_of: u32,
    /// Seconds containerd may take to answer again after a restart.
    #[arg(long, env = "AGENTBOX_READY_TIMEOUT", default_value_t = 120)]
    ready_timeout: u64,
    /// Node labels (KEY=VALUE), set after install, removed by uninstall.
    #[arg(long = "label", env = "AGENTBOX_NODE_LABELS", value_delimiter = ',')]
    labels: Vec<String>,
    /// This node's name (the downward API's spec.nodeName); needed for labels.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Written once done (the readiness signal), removed at start.
    #[arg(long, env = "AGENTBOX_READY_FILE")]
    ready_file: Option<PathBuf>,
    /// Once done, stay up until SIGTERM (as a DaemonSet's container).
    #[arg(long)]
    stay: bool,
}

#[derive(Args)]
struct InstallArgs {
    #[command(flatten)]
    change: ChangeArgs,
    /// The chart's ConfigMap: handler fragments and policies.
    #[arg(long, env = "AGENTBOX_SOURCE", default_value = "/etc/agentbox-node")]
    source: PathBuf,
    /// The binaries to install (the image's).
    #[arg(
        long,
        env = "AGENTBOX_BINARIES",
        default_value = "/opt/agentbox-node/bin"
    )]
    binaries: PathBuf,
}

#[derive(Args)]
struct UninstallArgs {
    #[command(flatten)]
    change: ChangeArgs,
    /// Uninstall (and restart containerd) even while agentbox pods run.
    #[arg(long, env = "AGENTBOX_FORCE")]
    force: bool,
}

impl ChangeArgs {
    fn restarter(&self) -> Result<RestartCommand> {
        Ok(RestartCommand {
            command: parse_command(&self.restart_command).map_err(anyhow::Error::msg)?,
            namespaces_of: (self.restart_namespaces_of != 0).then_some(self.restart_namespaces_of),
            timeout: Duration::from_secs(180),
        })
    }
    fn labels(&self) -> Result<BTreeMap<String, String>> {
        self.labels
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| label::parse_label(s.trim()).map_err(Into::into))
            .collect()
    }
    fn start(&self) -> Result<()> {
        if let Some(f) = &self.ready_file {
            match std::fs::remove_file(f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("remove {}", f.display()))
                }
                _ => {}
            }
        }
        Ok(())
    }
    fn done(&self) -> Result<()> {
        if let Some(f) = &self.ready_file {
            if let Some(d) = f.parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::write(f, b"ok\n").with_context(|| format!("write {}", f.display()))?;
        }
        if self.stay {
            info!("done; staying up until SIGTERM");
            wait_for_term();
        }
        Ok(())
    }
}

/// Patches labels with a few retries (the API server may be busy).
fn relabel(node: Option<&str>, set: &BTreeMap<String, String>, remove: &[String]) -> Result<()> {
    if set.is_empty() && remove.is_empty() {
        return Ok(());
    }
    let node = node.context("node labels need the node's name (--node-name or NODE_NAME)")?;
    label::block_on(async {
        let client = label::in_cluster().await?;
        let mut delay = Duration::from_secs(1);
        for attempt in 1.. {
            match label::patch_labels(&client, node, set, remove).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 5 => {
                    warn!(%e, attempt, "labelling node {node} failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(anyhow::Error::from(e)),
            }
        }
        unreachable!()
    })
    .with_context(|| format!("label node {node}"))
}

fn wait_for_term() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    if set.thread_block().is_ok() {
        let _ = set.wait();
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Install(a) => {
            let c = &a.change;
            c.start()?;
            let layout = c.node.layout();
            let labels = c.labels()?;
            let opts = InstallOptions {
                layout: layout.clone(),
                source_dir: a.source.clone(),
                binaries_dir: a.binaries.clone(),
                ready_timeout: Duration::from_secs(c.ready_timeout),
            };
            let prev_labels = agentbox_node::uninstall::installed(&layout)?
                .map(|s| s.labels)
                .unwrap_or_default();
            let report = install(&opts, &mut c.node.cri(), &mut c.restarter()?)?;
            info!("{report}");
            println!("{report}");
            let stale: Vec<String> = prev_labels
                .keys()
                .filter(|k| !labels.contains_key(*k))
                .cloned()
                .collect();
            relabel(c.node_name.as_deref(), &labels, &stale)?;
            record_labels(&layout, &labels)?;
            c.done()?;
        }
        Cmd::Uninstall(a) => {
            let c = &a.change;
            c.start()?;
            let layout = c.node.layout();
            // first the labels: no new agentbox pod is scheduled here from now on
            let mut remove: Vec<String> = c.labels()?.into_keys().collect();
            if let Some(st) = agentbox_node::uninstall::installed(&layout)? {
                remove.extend(st.labels.into_keys());
            }
            remove.sort();
            remove.dedup();
            relabel(c.node_name.as_deref(), &BTreeMap::new(), &remove)?;
            let opts = UninstallOptions {
                layout,
                ready_timeout: Duration::from_secs(c.ready_timeout),
                force: a.force,
            };
            match uninstall(&opts, &mut c.node.cri(), &mut c.restarter()?) {
                Ok(report) => {
                    info!("{report}");
                    println!("{report}");
                }
                Err(e @ UninstallError::PodsRunning(_)) => {
                    eprintln!("agentbox-node: {e}");
                    return Ok(ExitCode::from(3));
                }
                Err(e) => return Err(e.into()),
            }
            c.done()?;
        }
        Cmd::Status { node, json } => {
            let s = status(&node.layout(), &mut node.cri())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{s}");
            }
            if !s.healthy() {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::IsReady { ready_file } => {
            if !ready_file.exists() {
                bail!("not ready: {} does not exist", ready_file.display());
            }
        }
        Cmd::WaitDaemonset {
            namespace,
            name,
            timeout,
        } => {
            label::block_on(async {
                let client = label::in_cluster().await?;
                label::wait_daemonset(
                    &client,
                    &namespace,
                    &name,
                    Duration::from_secs(timeout),
                    Duration::from_secs(5),
                )
                .await
            })?;
            println!("DaemonSet {namespace}/{name}: done on every node");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AGENTBOX_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let cli = Cli::parse();
    info!(
        version = env!("CARGO_PKG_VERSION"),
        "agentbox-node starting"
    );
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agentbox-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}
