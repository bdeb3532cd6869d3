//! runsc's OCI command line, built as plain argument vectors so the exact
//! command lines are unit-tested without running anything.

use std::path::{Path, PathBuf};

/// Everything needed to build a runsc command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunscCli {
    /// The runsc binary.
    pub binary: PathBuf,
    /// runsc's state root (`--root`).
    pub root: PathBuf,
    /// Admin-configured global flags, already rendered as `--key=value`.
    pub global_flags: Vec<String>,
    /// Optional log file for runsc's own debug output (`--log`).
    pub log: Option<PathBuf>,
}

/// A built command: program and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Argv {
    /// Add a global flag (before the subcommand), e.g. `--pod-init-config=F`
    /// for the one `create` that makes the sandbox.
    pub fn with_global_flag(mut self, flag: String) -> Argv {
        let at = self
            .args
            .iter()
            .position(|a| !a.starts_with("--"))
            .unwrap_or(self.args.len());
        self.args.insert(at, flag);
        self
    }

    pub fn to_strings(&self) -> Vec<String> {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

impl RunscCli {
    fn base(&self, sub: &str) -> Vec<String> {
        let mut a = vec![format!("--root={}", p(&self.root))];
        if let Some(log) = &self.log {
            a.push(format!("--log={}", p(log)));
            a.push("--log-format=json".to_string());
        }
        a.extend(self.global_flags.iter().cloned());
        a.push(sub.to_string());
        a
    }

    fn argv(&self, args: Vec<String>) -> Argv {
        Argv {
            program: self.binary.clone(),
            args,
        }
    }

    /// `runsc create --bundle B --pid-file P [--console-socket S] ID`
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
    ) -> Argv {
        let mut a = self.base("create");
        a.extend([
            "--bundle".into(),
            p(bundle),
            "--pid-file".into(),
            p(pid_file),
        ]);
        if let Some(s) = console_socket {
            a.extend(["--console-socket".into(), p(s)]);
        }
        a.push(id.to_string());
        self.argv(a)
    }

    /// `runsc start ID`
    pub fn start(&self, id: &str) -> Argv {
        let mut a = self.base("start");
        a.push(id.to_string());
        self.argv(a)
    }

    /// `runsc state ID`
    pub fn state(&self, id: &str) -> Argv {
        let mut a = self.base("state");
        a.push(id.to_string());
        self.argv(a)
    }

    /// `runsc wait [--pid N] ID` (prints `{"id":..,"exitStatus":N}`)
    pub fn wait(&self, id: &str, pid: Option<u32>) -> Argv {
        let mut a = self.base("wait");
        if let Some(pid) = pid {
            a.extend(["--pid".into(), pid.to_string()]);
        }
        a.push(id.to_string());
        self.argv(a)
    }

    /// `runsc kill [--all] [--pid N] ID SIGNAL`
    pub fn kill(&self, id: &str, signal: u32, all: bool, pid: Option<u32>) -> Argv {
        let mut a = self.base("kill");
        if all {
            a.push("--all".into());
        }
        if let Some(pid) = pid {
            a.extend(["--pid".into(), pid.to_string()]);
        }
        a.extend([id.to_string(), signal.to_string()]);
        self.argv(a)
    }

    /// `runsc exec --process F --detach --pid-file P --internal-pid-file I [--console-socket S] ID`
    pub fn exec(
        &self,
        id: &str,
        process_file: &Path,
        pid_file: &Path,
        internal_pid_file: &Path,
        console_socket: Option<&Path>,
    ) -> Argv {
        let mut a = self.base("exec");
        a.extend([
            "--process".into(),
            p(process_file),
            "--detach".into(),
            "--pid-file".into(),
            p(pid_file),
            "--internal-pid-file".into(),
            p(internal_pid_file),
        ]);
        if let Some(s) = console_socket {
            a.extend(["--console-socket".into(), p(s)]);
        }
        a.push(id.to_string());
        self.argv(a)
    }

    /// `runsc ps --format json ID`
    pub fn ps(&self, id: &str) -> Argv {
        let mut a = self.base("ps");
        a.extend(["--format".into(), "json".into(), id.to_string()]);
        self.argv(a)
    }

    /// `runsc events --stats ID`
    pub fn stats(&self, id: &str) -> Argv {
        let mut a = self.base("events");
        a.extend(["--stats".into(), id.to_string()]);
        self.argv(a)
    }

    /// `runsc delete [--force] ID`
    pub fn delete(&self, id: &str, force: bool) -> Argv {
        let mut a = self.base("delete");
        if force {
            a.push("--force".into());
        }
        a.push(id.to_string());
        self.argv(a)
    }

    /// `runsc pause ID` / `runsc resume ID`
    pub fn pause(&self, id: &str, pause: bool) -> Argv {
        let mut a = self.base(if pause { "pause" } else { "resume" });
        a.push(id.to_string());
        self.argv(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> RunscCli {
        RunscCli {
            binary: "/usr/bin/runsc".into(),
            root: "/run/agentbox/runsc/k8s.io".into(),
            global_flags: vec!["--network=none".into(), "--platform=ptrace".into()],
            log: None,
        }
    }

    #[test]
    fn create_line() {
        let a = cli().create("c1", Path::new("/b"), Path::new("/b/pid"), None);
        assert_eq!(
            a.to_strings(),
            [
                "/usr/bin/runsc",
                "--root=/run/agentbox/runsc/k8s.io",
                "--network=none",
                "--platform=ptrace",
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/b/pid",
                "c1"
            ]
        );
    }

    #[test]
    fn create_with_console_and_log() {
        let mut c = cli();
        c.log = Some("/b/runsc.log".into());
        let a = c.create(
            "c1",
            Path::new("/b"),
            Path::new("/b/pid"),
            Some(Path::new("/b/pty.sock")),
        );
        let s = a.to_strings();
        assert_eq!(s[2], "--log=/b/runsc.log");
        assert_eq!(s[3], "--log-format=json");
        assert!(s
            .windows(2)
            .any(|w| w == ["--console-socket", "/b/pty.sock"]));
        assert_eq!(s.last().unwrap(), "c1");
    }

    #[test]
    fn global_flags_come_before_the_subcommand() {
        for a in [
            cli().start("x"),
            cli().state("x"),
            cli().delete("x", true),
            cli().ps("x"),
        ] {
            let s = a.args;
            let sub = s.iter().position(|x| !x.starts_with("--")).unwrap();
            assert!(s[..sub].contains(&"--network=none".to_string()));
            assert_eq!(s.last().unwrap(), "x");
        }
    }

    #[test]
    fn pod_init_config_goes_before_the_subcommand() {
        let a = cli()
            .create("c1", Path::new("/b"), Path::new("/b/pid"), None)
            .with_global_flag("--pod-init-config=/b/agentbox-activity.json".into());
        assert_eq!(
            a.args[..5],
            [
                "--root=/run/agentbox/runsc/k8s.io",
                "--network=none",
                "--platform=ptrace",
                "--pod-init-config=/b/agentbox-activity.json",
                "create"
            ]
        );
    }

    #[test]
    fn kill_lines() {
        assert_eq!(
            cli().kill("c", 9, true, None).args[3..],
            ["kill", "--all", "c", "9"]
        );
        assert_eq!(
            cli().kill("c", 15, false, Some(7)).args[3..],
            ["kill", "--pid", "7", "c", "15"]
        );
    }

    #[test]
    fn wait_and_exec_lines() {
        assert_eq!(cli().wait("c", None).args[3..], ["wait", "c"]);
        assert_eq!(
            cli().wait("c", Some(4)).args[3..],
            ["wait", "--pid", "4", "c"]
        );
        let e = cli().exec(
            "c",
            Path::new("/t/p.json"),
            Path::new("/t/pid"),
            Path::new("/t/ipid"),
            None,
        );
        assert_eq!(
            e.args[3..],
            [
                "exec",
                "--process",
                "/t/p.json",
                "--detach",
                "--pid-file",
                "/t/pid",
                "--internal-pid-file",
                "/t/ipid",
                "c"
            ]
        );
    }

    #[test]
    fn delete_force_and_stats() {
        assert_eq!(
            cli().delete("c", true).args[3..],
            ["delete", "--force", "c"]
        );
        assert_eq!(cli().delete("c", false).args[3..], ["delete", "c"]);
        assert_eq!(cli().stats("c").args[3..], ["events", "--stats", "c"]);
    }
}
