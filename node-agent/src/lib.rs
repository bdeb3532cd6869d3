//! agentbox-node: puts agentbox on a Kubernetes node and takes it off again.
//!
//! * [`wiring`]: containerd's config — drop-in or in-place edit, pure text.
//! * [`source`]: what to install (the chart's ConfigMap and the image's
//!   binaries), validated before the host is touched.
//! * [`files`]: atomic writes, hashes, a journal to roll a run back.
//! * [`state`]: the record of what an install added (what uninstall removes).
//! * [`cri`], [`restart`], [`label`]: containerd's CRI, restarting it, the
//!   node's labels through the Kubernetes API.
//! * [`install`], [`uninstall`], [`status`]: the commands.

pub mod cri;
pub mod files;
pub mod install;
pub mod label;
pub mod paths;
pub mod restart;
pub mod source;
pub mod state;
pub mod status;
pub mod uninstall;
pub mod version;
pub mod wiring;

pub use version::ContainerdVersion;
