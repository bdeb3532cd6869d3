//! containerd's configuration: where agentbox's runtime handlers go and what
//! the file looks like afterwards. Pure text in, text out (no I/O), so every
//! case is unit-tested.
//!
//! * containerd 2.x merges drop-in files (`imports`) into the root config
//!   table by table, so when the admin's `imports` already reads a folder the
//!   handlers go into their own file there and the admin's file is untouched.
//! * containerd 1.6/1.7 replace a whole plugin section with an imported one
//!   (a drop-in would silently drop the admin's CRI settings, e.g. the `runc`
//!   handler), so there — and on 2.x without a matching import — the handler
//!   tables are added to the admin's file in place, with `toml_edit`, keeping
//!   every comment and the formatting of the rest.

use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table};

use crate::version::ContainerdVersion;

/// First line of the block agentbox adds to a config.
pub const MARKER: &str =
    "# agentbox runtime handlers, added by agentbox-node (`agentbox-node uninstall` removes them)";

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("containerd config {path} is not valid TOML: {message}")]
    BadConfig { path: PathBuf, message: String },
    #[error("handler fragment for config version {schema} is not valid TOML: {message}")]
    BadFragment { schema: u8, message: String },
    #[error("handler fragment for config version {schema}: {message}")]
    Fragment { schema: u8, message: String },
    #[error("containerd config {path}: {message}")]
    Unsupported { path: PathBuf, message: String },
    #[error("editing containerd config {path} would change more than agentbox's handlers ({what}); nothing was written")]
    Collateral { path: PathBuf, what: String },
}

/// containerd config schema: 2 (containerd 1.x, also read by 2.x) or 3 (2.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Schema {
    V2,
    V3,
}

impl Schema {
    pub fn number(self) -> u8 {
        match self {
            Schema::V2 => 2,
            Schema::V3 => 3,
        }
    }
    /// The plugin whose `containerd.runtimes` table holds CRI runtime handlers.
    pub fn cri_plugin(self) -> &'static str {
        match self {
            Schema::V2 => "io.containerd.grpc.v1.cri",
            Schema::V3 => "io.containerd.cri.v1.runtime",
        }
    }
    fn runtimes_path(self) -> [&'static str; 4] {
        ["plugins", self.cri_plugin(), "containerd", "runtimes"]
    }
}

/// The handler fragments for both schemas (from the chart's ConfigMap).
#[derive(Debug, Clone)]
pub struct Fragments {
    pub v2: DocumentMut,
    pub v3: DocumentMut,
}

impl Fragments {
    /// Parses both fragments and checks they name the same handlers.
    pub fn parse(v2: &str, v3: &str) -> Result<Self, WiringError> {
        let parse = |schema: u8, text: &str| {
            text.parse::<DocumentMut>()
                .map_err(|e| WiringError::BadFragment {
                    schema,
                    message: e.to_string(),
                })
        };
        let f = Fragments {
            v2: parse(2, v2)?,
            v3: parse(3, v3)?,
        };
        let (a, b) = (f.handlers(Schema::V2)?, f.handlers(Schema::V3)?);
        let names = |h: &[(String, Table)]| h.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        if names(&a) != names(&b) {
            return Err(WiringError::Fragment {
                schema: 3,
                message: format!(
                    "names handlers {:?}, the version 2 fragment {:?}",
                    names(&b),
                    names(&a)
                ),
            });
        }
        Ok(f)
    }

    pub fn doc(&self, schema: Schema) -> &DocumentMut {
        match schema {
            Schema::V2 => &self.v2,
            Schema::V3 => &self.v3,
        }
    }

    /// The handler tables of one schema, in file order. Anything else in the
    /// fragment (other plugins, top-level keys) is an error: the fragment may
    /// only add runtime handlers.
    pub fn handlers(&self, schema: Schema) -> Result<Vec<(String, Table)>, WiringError> {
        let err = |message: String| WiringError::Fragment {
            schema: schema.number(),
            message,
        };
        let mut cur = self.doc(schema).as_table();
        for key in schema.runtimes_path() {
            if cur.len() != 1 || !cur.contains_key(key) {
                let keys: Vec<_> = cur.iter().map(|(k, _)| k.to_string()).collect();
                return Err(err(format!(
                    "may only hold {} handler tables, found keys {keys:?}",
                    schema.runtimes_path().join(".")
                )));
            }
            cur = cur
                .get(key)
                .and_then(Item::as_table)
                .ok_or_else(|| err(format!("no table {key:?} on the way to the handlers")))?;
        }
        let mut out = vec![];
        for (name, item) in cur.iter() {
            let t = item
                .as_table()
                .ok_or_else(|| err(format!("handler {name:?} is not a table")))?;
            let rt = t.get("runtime_type").and_then(Item::as_str);
            if rt.is_none_or(str::is_empty) {
                return Err(err(format!("handler {name:?} has no runtime_type")));
            }
            out.push((name.to_string(), t.clone()));
        }
        if out.is_empty() {
            return Err(err("defines no handler".into()));
        }
        Ok(out)
    }
}

/// How the handlers reach containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Our own file, read through the admin's `imports`.
    DropIn { path: PathBuf },
    /// Tables added to the admin's file (`created`: there was no file).
    InPlace { created: bool },
}

/// What the configuration should be.
#[derive(Debug, Clone)]
pub struct Plan {
    pub schema: Schema,
    pub mode: Mode,
    /// Desired text of the root config (in place), or of the drop-in.
    pub text: String,
    /// Handler names wired by this plan.
    pub handlers: Vec<String>,
}

/// Everything `plan` looks at.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// Host path of containerd's root config.
    pub config_path: &'a Path,
    /// Its current text (`None`: no file).
    pub config: Option<&'a str>,
    pub version: ContainerdVersion,
    pub fragments: &'a Fragments,
    /// Host path of the drop-in agentbox would use on containerd 2.x.
    pub dropin_path: &'a Path,
    /// Handlers a previous install wired that the fragments no longer name
    /// (removed from an in-place config).
    pub stale_handlers: &'a [String],
}

fn parse_config(path: &Path, text: &str) -> Result<DocumentMut, WiringError> {
    text.parse::<DocumentMut>()
        .map_err(|e| WiringError::BadConfig {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// The schema of an existing config, checked against the running containerd.
pub fn config_schema(
    path: &Path,
    doc: &DocumentMut,
    version: ContainerdVersion,
) -> Result<Schema, WiringError> {
    let unsupported = |message: String| WiringError::Unsupported {
        path: path.to_path_buf(),
        message,
    };
    match doc.get("version").and_then(Item::as_integer) {
        Some(2) => Ok(Schema::V2),
        Some(3) if version.major >= 2 => Ok(Schema::V3),
        Some(3) => Err(unsupported(format!(
            "config version 3 needs containerd 2.x, but containerd {version} runs"
        ))),
        Some(v) => Err(unsupported(format!("config version {v} is not supported (2 or 3)"))),
        None => Err(unsupported(
            "has no `version` (the deprecated version 1 schema): migrate it first (`containerd config migrate`)"
                .into(),
        )),
    }
}

/// Does one of the config's `imports` load `dropin`?
pub fn imports_cover(config_path: &Path, doc: &DocumentMut, dropin: &Path) -> bool {
    let Some(arr) = doc.get("imports").and_then(Item::as_array) else {
        return false;
    };
    let base = config_path.parent().unwrap_or(Path::new("/"));
    arr.iter().filter_map(|v| v.as_str()).any(|imp| {
        let p = if Path::new(imp).is_absolute() {
            PathBuf::from(imp)
        } else {
            base.join(imp)
        };
        let p = clean(&p);
        if imp.contains(['*', '?', '[']) {
            globset::GlobBuilder::new(&p.to_string_lossy())
                .literal_separator(true)
                .build()
                .map(|g| g.compile_matcher().is_match(dropin))
                .unwrap_or(false)
        } else {
            p == clean(dropin)
        }
    })
}

/// Lexical `.`/`..` clean-up (as Go's filepath.Clean, which containerd uses).
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Decides how to wire the handlers and renders the resulting text.
pub fn plan(inp: &Inputs) -> Result<Plan, WiringError> {
    let path = inp.config_path;
    let Some(text) = inp.config else {
        if inp.version.major < 2 {
            return Err(WiringError::Unsupported {
                path: path.to_path_buf(),
                message: format!(
                    "does not exist; containerd {} replaces its default runtimes (runc) with any that a config names, so agentbox-node will not create one: write containerd's defaults first (`containerd config default > {}`)",
                    inp.version,
                    path.display()
                ),
            });
        }
        let mut doc: DocumentMut = "version = 3\n".parse().expect("static TOML");
        let handlers = add_handlers(&mut doc, path, inp.fragments, Schema::V3, &[])?;
        return Ok(Plan {
            schema: Schema::V3,
            mode: Mode::InPlace { created: true },
            text: doc.to_string(),
            handlers,
        });
    };
    let doc = parse_config(path, text)?;
    let schema = config_schema(path, &doc, inp.version)?;
    if inp.version.major >= 2 && imports_cover(path, &doc, inp.dropin_path) {
        let frag = inp.fragments.doc(schema).to_string();
        let handlers = inp
            .fragments
            .handlers(schema)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        return Ok(Plan {
            schema,
            mode: Mode::DropIn {
                path: inp.dropin_path.to_path_buf(),
            },
            text: format!(
                "{MARKER}\n# Read by containerd through `imports` in {}.\nversion = {}\n\n{}",
                path.display(),
                schema.number(),
                frag.trim_start_matches('\n')
            ),
            handlers,
        });
    }
    let mut edited = doc.clone();
    let handlers = add_handlers(&mut edited, path, inp.fragments, schema, inp.stale_handlers)?;
    let out = edited.to_string();
    check_collateral(path, text, &out, inp.fragments, schema, inp.stale_handlers)?;
    Ok(Plan {
        schema,
        mode: Mode::InPlace { created: false },
        // untouched tables keep the text byte for byte: no change, no write
        text: if edited.to_string() == doc.to_string() {
            text.to_string()
        } else {
            out
        },
        handlers,
    })
}

/// The `containerd.runtimes` table of `doc`, created (implicitly) if missing.
fn runtimes_mut<'d>(
    doc: &'d mut DocumentMut,
    schema: Schema,
    path_for_errors: &Path,
) -> Result<&'d mut Table, WiringError> {
    let mut cur = doc.as_table_mut();
    for key in schema.runtimes_path() {
        let entry = cur.entry(key).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        cur = match entry {
            Item::Table(t) => t,
            _ => {
                return Err(WiringError::Unsupported {
                    path: path_for_errors.to_path_buf(),
                    message: format!(
                        "`{key}` on the way to {} is an inline table or a value; agentbox-node only adds to [table] sections (add the handlers by hand, see runtimeclass/)",
                        schema.runtimes_path().join(".")
                    ),
                })
            }
        };
    }
    Ok(cur)
}

fn max_position(t: &Table) -> usize {
    let mut m = t.position().unwrap_or(0);
    for (_, item) in t.iter() {
        if let Item::Table(sub) = item {
            m = m.max(max_position(sub));
        }
    }
    m
}

/// Semantic value of a table (formatting and comments ignored).
pub fn table_value(t: &Table) -> toml::Value {
    let mut d = DocumentMut::new();
    d.insert("x", Item::Table(t.clone()));
    let parsed: toml::Table = toml::from_str(&d.to_string()).unwrap_or_default();
    parsed
        .get("x")
        .cloned()
        .unwrap_or(toml::Value::Table(Default::default()))
}

/// Sets each handler table of the fragment in `doc` (leaving one that already
/// has the same content untouched) and removes `stale` handlers.
fn add_handlers(
    doc: &mut DocumentMut,
    path: &Path,
    frags: &Fragments,
    schema: Schema,
    stale: &[String],
) -> Result<Vec<String>, WiringError> {
    let wanted = frags.handlers(schema)?;
    let mut next = max_position(doc.as_table()) + 1;
    // What follows the admin's last table (comments) stays before our block.
    let trailing = doc.trailing().as_str().unwrap_or("").to_string();
    let runtimes = runtimes_mut(doc, schema, path)?;
    for name in stale {
        if !wanted.iter().any(|(n, _)| n == name) {
            runtimes.remove(name);
        }
    }
    let has_marker = |t: &Table| {
        t.decor()
            .prefix()
            .and_then(|p| p.as_str())
            .is_some_and(|p| p.contains(MARKER))
    };
    let mut first = !runtimes
        .iter()
        .any(|(_, i)| i.as_table().is_some_and(has_marker));
    let mut appended = false;
    for (name, frag) in &wanted {
        let mut t = frag.clone();
        if let Some(Item::Table(existing)) = runtimes.get(name) {
            if table_value(existing) == table_value(frag) {
                continue;
            }
            // replaced where it stands, with its header comments
            let mut at = existing.position().unwrap_or(next);
            place(&mut t, &mut at, false);
            t.decor_mut().set_prefix(
                existing
                    .decor()
                    .prefix()
                    .and_then(|p| p.as_str())
                    .unwrap_or("\n")
                    .to_string(),
            );
        } else {
            place(&mut t, &mut next, true);
            t.decor_mut().set_prefix(if first {
                format!("{trailing}\n{MARKER}\n")
            } else {
                "\n".to_string()
            });
            appended |= first;
            first = false;
        }
        runtimes.insert(name, Item::Table(t));
    }
    if appended {
        doc.set_trailing("");
    }
    Ok(wanted.into_iter().map(|(n, _)| n).collect())
}

/// Gives `t` and its sub-tables document positions from `next` (consecutive
/// when `advance`, else all the same: the sort is stable, parents first).
fn place(t: &mut Table, next: &mut usize, advance: bool) {
    t.set_position(*next);
    if advance {
        *next += 1;
    }
    for (_, item) in t.iter_mut() {
        if let Item::Table(sub) = item {
            place(sub, next, advance);
        }
    }
}

/// The edited config must equal the original except for our handler tables.
fn check_collateral(
    path: &Path,
    before: &str,
    after: &str,
    frags: &Fragments,
    schema: Schema,
    stale: &[String],
) -> Result<(), WiringError> {
    let collateral = |what: String| WiringError::Collateral {
        path: path.to_path_buf(),
        what,
    };
    let mut a: toml::Table = toml::from_str(before).map_err(|e| WiringError::BadConfig {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut b: toml::Table =
        toml::from_str(after).map_err(|e| collateral(format!("result does not parse: {e}")))?;
    let names: Vec<String> = frags
        .handlers(schema)?
        .into_iter()
        .map(|(n, _)| n)
        .chain(stale.iter().cloned())
        .collect();
    for (name, frag) in frags.handlers(schema)? {
        let got = lookup(&b, &schema.runtimes_path(), &name);
        if got != Some(table_value(&frag)) {
            return Err(collateral(format!(
                "handler {name} not as the fragment says"
            )));
        }
    }
    strip(&mut a, schema, &names);
    strip(&mut b, schema, &names);
    if a != b {
        return Err(collateral("other settings differ".into()));
    }
    Ok(())
}

fn lookup(t: &toml::Table, path: &[&str], name: &str) -> Option<toml::Value> {
    let mut cur = t;
    for k in path {
        cur = cur.get(*k)?.as_table()?;
    }
    cur.get(name).cloned()
}

/// Removes handler `names` and then any table on the runtimes path left empty.
fn strip(t: &mut toml::Table, schema: Schema, names: &[String]) {
    fn go(t: &mut toml::Table, path: &[&str], names: &[String]) {
        let Some((head, rest)) = path.split_first() else {
            for n in names {
                t.remove(n);
            }
            return;
        };
        if let Some(toml::Value::Table(sub)) = t.get_mut(*head) {
            go(sub, rest, names);
            if sub.is_empty() {
                t.remove(*head);
            }
        }
    }
    go(t, &schema.runtimes_path(), names);
}

/// Removes agentbox's handler tables from a config the admin changed after
/// install (otherwise uninstall restores the backup byte for byte). `None`
/// when none of them is there.
pub fn remove_handlers(
    path: &Path,
    text: &str,
    schema: Schema,
    names: &[String],
) -> Result<Option<String>, WiringError> {
    let mut doc = parse_config(path, text)?;
    let mut cur = doc.as_table_mut();
    for key in schema.runtimes_path() {
        match cur.get_mut(key) {
            Some(Item::Table(t)) => cur = t,
            _ => return Ok(None),
        }
    }
    let mut removed = false;
    let mut kept_trailing = None;
    for n in names {
        if let Some(Item::Table(t)) = cur.remove(n) {
            removed = true;
            // the admin's trailing comments moved into our block's prefix
            let prefix = t.decor().prefix().and_then(|p| p.as_str()).unwrap_or("");
            if let Some((before, _)) = prefix.split_once(MARKER) {
                kept_trailing = Some(before.strip_suffix('\n').unwrap_or(before).to_string());
            }
        }
    }
    if let Some(t) = kept_trailing {
        let t = format!("{}{t}", doc.trailing().as_str().unwrap_or(""));
        doc.set_trailing(t);
    }
    Ok(removed.then(|| doc.to_string()))
}

#[cfg(test)]
#[path = "wiring_tests.rs"]
pub(crate) mod tests;
