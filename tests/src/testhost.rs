//! A test host in a network namespace the test creates: attached to a
//! harness instance's private bridge with an address of the pod's /24, so a
//! pod reaches it over the bridge and nothing else. Serves HTTP (busybox
//! httpd). Before any test sends to it, [`TestHost::prove_routed`] checks
//! that the address is nowhere else on the host and that the host's route to
//! it is that private bridge; a guard table drops anything the bridge's pods
//! would route off the bridge (towards the machine's uplink). All of it is
//! removed on drop.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::util::run_ok;
use crate::CniNetwork;

const T: Duration = Duration::from_secs(20);

pub struct TestHost {
    pub netns: String,
    pub address: String,
    pub port: u16,
    bridge: String,
    veth: String,
    guard: String,
    httpd: Option<Child>,
}

fn ip(args: &[&str]) -> Result<String> {
    run_ok(Command::new("ip").args(args), T)
}

impl TestHost {
    /// A host at `10.233.<index>.<last>` on `net`'s bridge serving `www`
    /// on `port`.
    pub fn on_bridge(net: &CniNetwork, last: u8, port: u16, www: &Path) -> Result<TestHost> {
        let tag = format!("{}{}", std::process::id() % 100_000, net.index);
        let mut h = TestHost {
            netns: format!("abth-{tag}"),
            address: format!("10.233.{}.{last}", net.index),
            port,
            bridge: net.bridge.clone(),
            veth: format!("abth{tag}"),
            guard: format!("agentbox_e2e_guard_{tag}"),
            httpd: None,
        };
        // half-built state is torn down by Drop
        ip(&["netns", "add", &h.netns])?;
        let peer = format!("{}p", h.veth);
        ip(&[
            "link", "add", &h.veth, "type", "veth", "peer", "name", &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &h.netns])?;
        ip(&["link", "set", &h.veth, "master", &h.bridge, "up"])?;
        let inside = |a: &[&str]| -> Result<String> {
            let mut v = vec!["netns", "exec", &h.netns, "ip"];
            v.extend_from_slice(a);
            ip(&v)
        };
        inside(&["link", "set", "lo", "up"])?;
        inside(&["link", "set", &peer, "name", "eth0"])?;
        inside(&["addr", "add", &format!("{}/24", h.address), "dev", "eth0"])?;
        inside(&["link", "set", "eth0", "up"])?;
        // the guard: what the bridge's pods would route off the bridge is dropped
        let rules = format!(
            "table inet {g} {{\n  chain guard {{\n    type filter hook forward priority -10; policy accept;\n    iifname \"{b}\" oifname != \"{b}\" drop\n  }}\n}}\n",
            g = h.guard,
            b = h.bridge
        );
        let file = www.with_extension("guard.nft");
        std::fs::write(&file, rules)?;
        run_ok(Command::new("nft").arg("-f").arg(&file), T).context("install the guard table")?;
        let child = Command::new("ip")
            .args(["netns", "exec", &h.netns, "busybox", "httpd", "-f", "-p"])
            .arg(format!("{}:{port}", h.address))
            .arg("-h")
            .arg(www)
            .spawn()
            .context("start busybox httpd in the test host")?;
        h.httpd = Some(child);
        Ok(h)
    }

    /// Prove the address leads into this namespace and nowhere else.
    pub fn prove_routed(&self) -> Result<()> {
        let elsewhere = ip(&["-o", "addr", "show", "to", &self.address])?;
        if !elsewhere.trim().is_empty() {
            bail!("{} is also on the host: {elsewhere}", self.address);
        }
        let route = ip(&["route", "get", &self.address])?;
        if !route.contains(&format!("dev {} ", self.bridge)) {
            bail!("the host routes {} elsewhere: {route}", self.address);
        }
        let inside = ip(&["netns", "exec", &self.netns, "ip", "-o", "addr"])?;
        if !inside.contains(&format!("{}/24", self.address)) {
            bail!("{} is not in {}: {inside}", self.address, self.netns);
        }
        let master = ip(&["-o", "link", "show", &self.veth])?;
        if !master.contains(&format!("master {}", self.bridge)) {
            bail!("{} is not on {}: {master}", self.veth, self.bridge);
        }
        Ok(())
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(mut c) = self.httpd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.guard])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}
