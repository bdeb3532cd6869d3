//! agentbox end-to-end harness.
//!
//! * [`Containerd`]: a private containerd (own root, state, socket, config, CNI
//!   network, log) in a temp dir, torn down on drop, also when a test panics.
//! * [`Binaries`]: which containerd/ctr/shims run (Debian 12's, or 1.7/2.x
//!   extracted from trixie/sid by `scripts/fetch-containerd.sh`).
//! * [`RuntimeHandler`]: a CRI runtime handler section (`runc`,
//!   `runsc-runc-shim`, or yours, e.g. `io.containerd.agentbox.v1` + `ConfigPath`).
//! * [`images`]: a locally built busybox image and a static `pause` sandbox image.
//! * [`Cri`]: a blocking CRI v1 client (RunPodSandbox, CreateContainer, ExecSync…).
//! * [`leaks`]: what a test must not leave behind, checked at teardown.
//!
//! See tests/README.md.

pub mod agentbox;
pub mod binaries;
pub mod chart;
pub mod config;
pub mod containerd;
pub mod cri;
pub mod egress;
pub mod images;
pub mod kubelet;
pub mod leaks;
pub mod node;
pub mod node_image;
pub mod soak;
pub mod testhost;
pub mod util;
pub mod workload;

pub use binaries::{Binaries, ContainerdVersion};
pub use config::{CniNetwork, RuntimeHandler};
pub use containerd::{
    Containerd, ContainerdOptions, DEFAULT_NAMESPACE, K8S_NAMESPACE, RUNC, RUNSC_RUNC_SHIM,
};
pub use cri::{ContainerSpec, Cri, ExecResult, LogLine, Pod};
pub use images::{BUSYBOX_IMAGE, PAUSE_IMAGE};
pub use util::{is_root, skip, skip_unless_root, skips_forbidden, NO_SKIP_ENV};
