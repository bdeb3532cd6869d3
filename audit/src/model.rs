//! The records of a pod gathered into a [`Run`].

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

/// The log's records, and how many lines were not JSON objects.
pub fn load(r: impl BufRead) -> std::io::Result<(Vec<Value>, usize)> {
    let mut recs = Vec::new();
    let mut bad = 0;
    for line in r.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(v @ Value::Object(_)) => recs.push(v),
            _ => bad += 1,
        }
    }
    Ok((recs, bad))
}

/// Which records to show.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Pod name, `namespace/name`, or (a prefix of) its sandbox id.
    pub pod: Option<String>,
    /// Container name or (a prefix of) its id.
    pub container: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Show reads only under these paths (all reads when empty).
    pub read_under: Vec<String>,
}

fn s<'a>(r: &'a Value, k: &str) -> &'a str {
    r.get(k).and_then(Value::as_str).unwrap_or("")
}

fn time_of(r: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s(r, "time"), &time::format_description::well_known::Rfc3339).ok()
}

impl Filter {
    fn pod_matches(&self, r: &Value) -> bool {
        let Some(want) = self.pod.as_deref() else {
            return true;
        };
        let name = s(r, "pod");
        let full = format!("{}/{}", s(r, "pod_namespace"), name);
        want == name || want == full || (want.len() >= 6 && s(r, "sandbox_id").starts_with(want))
    }

    fn keeps(&self, r: &Value) -> bool {
        if !self.pod_matches(r) {
            return false;
        }
        if let Some(c) = self.container.as_deref() {
            let pod_level = s(r, "container_id").is_empty();
            let id = s(r, "container_id");
            if !pod_level && s(r, "container") != c && !(c.len() >= 6 && id.starts_with(c)) {
                return false;
            }
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(t) = time_of(r) else { return false };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t > u) {
                return false;
            }
        }
        true
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Run {
    pub sandbox_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    pub first: String,
    pub last: String,
    pub containers: Vec<Container>,
    /// Whether gVisor's runtime monitoring recorded this pod's activity.
    pub activity: bool,
    pub processes: Vec<Process>,
    pub files_written: Vec<FileUse>,
    pub files_read: Vec<FileUse>,
    pub network: Vec<Destination>,
    pub listeners: Vec<Destination>,
    /// Records the pod's rate limit, queue or gVisor dropped.
    pub dropped: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Container {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Policy changes at create.
    pub changes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// Task API execs: their argv.
    pub execs: Vec<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i64>,
    /// `lifetime`, `oom`: what ended it, if agentbox did.
    pub ended_by: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq, Clone)]
pub struct Process {
    pub pid: i64,
    pub ppid: i64,
    pub container: String,
    pub binary: String,
    pub argv: Vec<String>,
    pub cwd: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i64>,
    /// The argv of the images this process ran before it exec'd the last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub execed_from: Vec<Vec<String>>,
    pub children: Vec<Process>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct FileUse {
    pub path: String,
    /// `container: binary [pid]` of each process that opened it.
    pub by: Vec<String>,
    pub intent: Vec<String>,
    pub opens: u64,
    pub failed: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Destination {
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u64>,
    pub family: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `allowed`, `denied` (by the egress rules), or `failed: ERRNO`.
    pub verdict: String,
    pub by: Vec<String>,
    pub attempts: u64,
}

/// The runs (one per pod, in order of first appearance) the filter keeps.
pub fn build(records: &[Value], f: &Filter) -> Vec<Run> {
    let mut order: Vec<String> = Vec::new();
    let mut by_pod: HashMap<String, Vec<&Value>> = HashMap::new();
    for r in records.iter().filter(|r| f.keeps(r)) {
        let id = s(r, "sandbox_id").to_string();
        if !by_pod.contains_key(&id) {
            order.push(id.clone());
        }
        by_pod.entry(id).or_default().push(r);
    }
    order
        .into_iter()
        .map(|id| run(&id, &by_pod[&id], f))
        .collect()
}

fn who(r: &Value, names: &HashMap<(String, i64), String>) -> String {
    let pid = r.get("pid").and_then(Value::as_i64).unwrap_or(0);
    let c = container_name(r);
    let bin = names
        .get(&(c.clone(), pid))
        .cloned()
        .unwrap_or_else(|| "?".into());
    format!("{c}: {bin} [{pid}]")
}

fn container_name(r: &Value) -> String {
    let n = s(r, "container");
    if n.is_empty() && s(r, "container_id") == s(r, "sandbox_id") {
        "(pod sandbox)".to_string()
    } else if n.is_empty() {
        s(r, "container_id").chars().take(12).collect()
    } else {
        n.to_string()
    }
}

fn run(id: &str, recs: &[&Value], f: &Filter) -> Run {
    let mut containers: Vec<Container> = Vec::new();
    let mut procs: Vec<Process> = Vec::new();
    let mut pidx: HashMap<(String, i64), usize> = HashMap::new();
    let mut names: HashMap<(String, i64), String> = HashMap::new();
    let mut files: BTreeMap<String, FileUse> = BTreeMap::new();
    let mut net: BTreeMap<(String, String), Destination> = BTreeMap::new();
    let mut listen: BTreeMap<(String, String), Destination> = BTreeMap::new();
    let mut denied: Vec<(String, Option<u64>, Option<String>)> = Vec::new();
    let mut dropped = 0u64;
    let mut activity = false;
    let mut pod = None;
    for r in recs {
        if pod.is_none() && !s(r, "pod").is_empty() {
            pod = Some(format!("{}/{}", s(r, "pod_namespace"), s(r, "pod")));
        }
        let cid = s(r, "container_id").to_string();
        let cname = container_name(r);
        let container = |cs: &mut Vec<Container>| -> usize {
            if let Some(i) = cs.iter().position(|c| c.id == cid) {
                return i;
            }
            cs.push(Container {
                id: cid.clone(),
                name: cname.clone(),
                phase: None,
                changes: 0,
                rejected: None,
                execs: Vec::new(),
                exit_status: None,
                ended_by: Vec::new(),
            });
            cs.len() - 1
        };
        let pid = r.get("pid").and_then(Value::as_i64).unwrap_or(0);
        match s(r, "event") {
            "create" => {
                let i = container(&mut containers);
                let c = &mut containers[i];
                c.phase = r.get("phase").and_then(Value::as_str).map(str::to_string);
                c.changes = r
                    .get("changes")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
            }
            "reject" => {
                let i = container(&mut containers);
                containers[i].rejected = Some(s(r, "reason").to_string());
            }
            "exec" => {
                let i = container(&mut containers);
                containers[i].execs.push(strings(r.get("argv")));
            }
            "exit" if r.get("exec_id").is_none_or(|e| e.as_str() == Some("")) => {
                let i = container(&mut containers);
                containers[i].exit_status = r.get("exit_status").and_then(Value::as_i64);
            }
            e @ ("lifetime" | "oom") => {
                let i = container(&mut containers);
                containers[i].ended_by.push(e.to_string());
            }
            "activity" => activity = true,
            "process" => {
                activity = true;
                let p = Process {
                    pid,
                    ppid: r.get("ppid").and_then(Value::as_i64).unwrap_or(0),
                    container: cname.clone(),
                    binary: s(r, "binary").to_string(),
                    argv: strings(r.get("argv")),
                    cwd: s(r, "cwd").to_string(),
                    uid: r.get("uid").and_then(Value::as_i64),
                    exit_code: None,
                    signal: None,
                    execed_from: Vec::new(),
                    children: Vec::new(),
                };
                names.insert((cname.clone(), pid), display_name(&p));
                match pidx.get(&(cname.clone(), pid)) {
                    // an exec: the same process with a new image
                    Some(&i) if procs[i].exit_code.is_none() && procs[i].signal.is_none() => {
                        let old = std::mem::replace(&mut procs[i], p);
                        procs[i].ppid = old.ppid;
                        procs[i].execed_from = old.execed_from;
                        procs[i].execed_from.push(old.argv);
                    }
                    _ => {
                        pidx.insert((cname.clone(), pid), procs.len());
                        procs.push(p);
                    }
                }
            }
            "process_exit" => {
                if let Some(&i) = pidx.get(&(cname.clone(), pid)) {
                    procs[i].exit_code = r.get("exit_code").and_then(Value::as_i64);
                    procs[i].signal = r.get("signal").and_then(Value::as_i64);
                }
            }
            "file" => {
                let path = s(r, "path").to_string();
                let intent = strings(r.get("intent"));
                let u = files.entry(path.clone()).or_insert_with(|| FileUse {
                    path,
                    by: Vec::new(),
                    intent: Vec::new(),
                    opens: 0,
                    failed: 0,
                });
                let w = who(r, &names);
                if !u.by.contains(&w) {
                    u.by.push(w);
                }
                for i in intent {
                    if !u.intent.contains(&i) {
                        u.intent.push(i);
                    }
                }
                u.opens += r.get("opens").and_then(Value::as_u64).unwrap_or(1);
                u.failed += r.get("failed").and_then(Value::as_u64).unwrap_or(0);
            }
            e @ ("connect" | "bind" | "accept") => {
                let addr = s(r, "address").to_string();
                let port = r.get("port").and_then(Value::as_u64);
                let key = (
                    addr.clone(),
                    port.map(|p| p.to_string()).unwrap_or_default(),
                );
                let table = if e == "connect" {
                    &mut net
                } else {
                    &mut listen
                };
                let d = table.entry(key).or_insert_with(|| Destination {
                    address: addr,
                    port,
                    family: s(r, "family").to_string(),
                    name: None,
                    verdict: String::new(),
                    by: Vec::new(),
                    attempts: 0,
                });
                d.attempts += 1;
                let w = who(r, &names);
                if !d.by.contains(&w) {
                    d.by.push(w);
                }
                let result = s(r, "result");
                if d.verdict != "allowed" {
                    d.verdict = match (e, result) {
                        (_, "ok") => "allowed".into(),
                        // a non-blocking connect: the outcome is not known here
                        (_, "EINPROGRESS") => "attempted".into(),
                        (_, err) => format!("failed: {err}"),
                    };
                }
            }
            "egress_denied" => {
                denied.push((
                    s(r, "address").to_string(),
                    r.get("port").and_then(Value::as_u64),
                    r.get("name").and_then(Value::as_str).map(str::to_string),
                ));
            }
            "dropped" => {
                dropped += ["rate_limited", "queue_full", "gvisor_dropped"]
                    .iter()
                    .filter_map(|k| r.get(*k).and_then(Value::as_u64))
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    for (addr, port, name) in denied {
        let key = (
            addr.clone(),
            port.map(|p| p.to_string()).unwrap_or_default(),
        );
        let d = net.entry(key).or_insert_with(|| Destination {
            address: addr,
            port,
            family: String::new(),
            name: None,
            verdict: String::new(),
            by: Vec::new(),
            attempts: 0,
        });
        d.verdict = "denied".into();
        if name.is_some() {
            d.name = name;
        }
    }
    let (written, read): (Vec<FileUse>, Vec<FileUse>) = files
        .into_values()
        .partition(|u| u.intent.iter().any(|i| i == "write" || i == "create"));
    let read = read
        .into_iter()
        .filter(|u| f.read_under.is_empty() || f.read_under.iter().any(|p| under(&u.path, p)))
        .collect();
    let times: Vec<&str> = recs
        .iter()
        .map(|r| s(r, "time"))
        .filter(|t| !t.is_empty())
        .collect();
    Run {
        sandbox_id: id.to_string(),
        pod,
        first: times
            .iter()
            .min()
            .map(|t| t.to_string())
            .unwrap_or_default(),
        last: times
            .iter()
            .max()
            .map(|t| t.to_string())
            .unwrap_or_default(),
        containers,
        activity,
        processes: tree(procs),
        files_written: written,
        files_read: read,
        network: net.into_values().collect(),
        listeners: listen.into_values().collect(),
        dropped,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// How a process is named in lists: its argv[0], else its binary.
pub fn display_name(p: &Process) -> String {
    let n = p.argv.first().map(String::as_str).unwrap_or(&p.binary);
    n.rsplit('/').next().unwrap_or(n).to_string()
}

fn under(path: &str, prefix: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    p.is_empty() || path == p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
}

/// Processes nested under their parents (within a container); roots keep
/// the order they appeared in.
fn tree(procs: Vec<Process>) -> Vec<Process> {
    let keys: Vec<(String, i64)> = procs.iter().map(|p| (p.container.clone(), p.pid)).collect();
    let mut children: HashMap<(String, i64), Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        let parent = (p.container.clone(), p.ppid);
        if p.ppid != 0 && p.ppid != p.pid && keys.contains(&parent) {
            children.entry(parent).or_default().push(i);
        } else {
            roots.push(i);
        }
    }
    let mut slots: Vec<Option<Process>> = procs.into_iter().map(Some).collect();
    fn take(
        i: usize,
        slots: &mut Vec<Option<Process>>,
        children: &HashMap<(String, i64), Vec<usize>>,
        depth: usize,
    ) -> Option<Process> {
        let mut p = slots[i].take()?;
        if depth < 256 {
            if let Some(kids) = children.get(&(p.container.clone(), p.pid)) {
                for &k in kids {
                    p.children.extend(take(k, slots, children, depth + 1));
                }
            }
        }
        Some(p)
    }
    roots
        .into_iter()
        .filter_map(|i| take(i, &mut slots, &children, 0))
        .collect()
}
