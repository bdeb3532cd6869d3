//! Input limits and structural validation. Every message names a location (a JSON
//! pointer) or a limit, never a value.

use std::fmt;

use serde_json::Value;
use thiserror::Error;

/// Largest accepted input (spec or process), in bytes.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;
/// Deepest accepted nesting of arrays and objects.
pub const MAX_DEPTH: usize = 64;
/// Longest pointer segment quoted in an error message.
const MAX_KEY_IN_MESSAGE: usize = 64;

/// Malformed or unreadable input.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InputError {
    #[error("input is {size} bytes, over the {limit} byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("input is not valid utf-8 (at byte {offset})")]
    NotUtf8 { offset: usize },
    #[error("input is not valid json: {0}")]
    Json(String),
    #[error("input nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("string at {pointer} contains a nul byte")]
    NulByte { pointer: String },
    #[error("{pointer} must be {expected}")]
    WrongType {
        pointer: String,
        expected: &'static str,
    },
}

/// Parse bytes into a JSON value under the size, UTF-8, depth and NUL limits.
pub fn parse(bytes: &[u8]) -> Result<Value, InputError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(InputError::TooLarge {
            size: bytes.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| InputError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let v: Value = serde_json::from_str(text).map_err(|e| {
        // serde_json's messages for a Value name a position and a category only.
        if e.to_string().contains("recursion limit") {
            InputError::TooDeep { limit: MAX_DEPTH }
        } else {
            InputError::Json(e.to_string())
        }
    })?;
    check_tree(&v)?;
    Ok(v)
}

/// Depth and NUL checks over a whole value (bounded recursion, no allocation
/// unless there is an error to report).
pub fn check_tree(v: &Value) -> Result<(), InputError> {
    let mut path: Vec<Seg<'_>> = Vec::new();
    walk(v, 0, &mut path)
}

enum Seg<'a> {
    Key(&'a str),
    Idx(usize),
}

fn pointer(path: &[Seg<'_>]) -> String {
    if path.is_empty() {
        return "the document".to_string();
    }
    let mut s = String::new();
    for p in path {
        s.push('/');
        match p {
            Seg::Key(k) => s.push_str(&seg(k)),
            Seg::Idx(i) => s.push_str(&i.to_string()),
        }
    }
    s
}

fn seg(key: &str) -> String {
    let mut s: String = key
        .chars()
        .take(MAX_KEY_IN_MESSAGE)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if key.chars().count() > MAX_KEY_IN_MESSAGE {
        s.push('…');
    }
    s.replace('~', "~0").replace('/', "~1")
}

fn has_nul(s: &str) -> bool {
    s.as_bytes().contains(&0)
}

fn walk<'a>(v: &'a Value, depth: usize, path: &mut Vec<Seg<'a>>) -> Result<(), InputError> {
    match v {
        Value::String(s) if has_nul(s) => {
            return Err(InputError::NulByte {
                pointer: pointer(path),
            });
        }
        Value::Array(a) => {
            if depth >= MAX_DEPTH {
                return Err(InputError::TooDeep { limit: MAX_DEPTH });
            }
            for (i, x) in a.iter().enumerate() {
                path.push(Seg::Idx(i));
                walk(x, depth + 1, path)?;
                path.pop();
            }
        }
        Value::Object(m) => {
            if depth >= MAX_DEPTH {
                return Err(InputError::TooDeep { limit: MAX_DEPTH });
            }
            for (k, x) in m {
                path.push(Seg::Key(k));
                if has_nul(k) {
                    return Err(InputError::NulByte {
                        pointer: pointer(path),
                    });
                }
                walk(x, depth + 1, path)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// A JSON pointer formatted only when an error needs it: `{base}/{key}[/{index}]`.
struct At<'a>(&'a dyn fmt::Display, &'static str, Option<usize>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0, self.1)?;
        if let Some(i) = self.2 {
            write!(f, "/{i}")?;
        }
        Ok(())
    }
}

fn wrong(pointer: &dyn fmt::Display, expected: &'static str) -> InputError {
    InputError::WrongType {
        pointer: pointer.to_string(),
        expected,
    }
}

fn opt_string(
    m: &serde_json::Map<String, Value>,
    key: &str,
    at: &dyn fmt::Display,
) -> Result<(), InputError> {
    match m.get(key) {
        None | Some(Value::String(_)) => Ok(()),
        Some(_) => Err(wrong(&format!("{at}/{key}"), "a string")),
    }
}

fn opt_bool(
    m: &serde_json::Map<String, Value>,
    key: &str,
    at: &dyn fmt::Display,
) -> Result<(), InputError> {
    match m.get(key) {
        None | Some(Value::Bool(_)) => Ok(()),
        Some(_) => Err(wrong(&format!("{at}/{key}"), "a boolean")),
    }
}

fn opt_string_array(
    m: &serde_json::Map<String, Value>,
    key: &str,
    at: &dyn fmt::Display,
) -> Result<(), InputError> {
    match m.get(key) {
        None => Ok(()),
        Some(Value::Array(a)) => {
            for (i, x) in a.iter().enumerate() {
                if !x.is_string() {
                    return Err(wrong(&format!("{at}/{key}/{i}"), "a string"));
                }
            }
            Ok(())
        }
        Some(_) => Err(wrong(&format!("{at}/{key}"), "an array of strings")),
    }
}

fn opt_object<'a>(
    m: &'a serde_json::Map<String, Value>,
    key: &str,
    at: &dyn fmt::Display,
) -> Result<Option<&'a serde_json::Map<String, Value>>, InputError> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(wrong(&format!("{at}/{key}"), "an object")),
    }
}

fn opt_array<'a>(
    m: &'a serde_json::Map<String, Value>,
    key: &str,
    at: &dyn fmt::Display,
) -> Result<Option<&'a Vec<Value>>, InputError> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(wrong(&format!("{at}/{key}"), "an array")),
    }
}

/// Types of the `process` fields the rules read or rewrite.
pub fn validate_process(p: &Value, at: &dyn fmt::Display) -> Result<(), InputError> {
    let m = p.as_object().ok_or_else(|| wrong(at, "an object"))?;
    opt_string_array(m, "env", at)?;
    opt_string(m, "cwd", at)?;
    opt_bool(m, "noNewPrivileges", at)?;
    if let Some(caps) = opt_object(m, "capabilities", at)? {
        let cat = At(at, "capabilities", None);
        for set in [
            "bounding",
            "effective",
            "inheritable",
            "permitted",
            "ambient",
        ] {
            opt_string_array(caps, set, &cat)?;
        }
    }
    Ok(())
}

/// Types of the spec fields the rules read or rewrite. Everything else is opaque
/// and passes through.
pub fn validate_spec(spec: &Value) -> Result<(), InputError> {
    let root = spec
        .as_object()
        .ok_or_else(|| wrong(&"the document", "an object"))?;
    if let Some(p) = root.get("process") {
        validate_process(p, &"/process")?;
    }
    if let Some(mounts) = opt_array(root, "mounts", &"")? {
        for (i, m) in mounts.iter().enumerate() {
            let at = At(&"", "mounts", Some(i));
            let mo = m.as_object().ok_or_else(|| wrong(&at, "an object"))?;
            match mo.get("destination") {
                Some(Value::String(_)) => {}
                _ => return Err(wrong(&format!("{at}/destination"), "a string")),
            }
            opt_string(mo, "source", &at)?;
            opt_string(mo, "type", &at)?;
            opt_string_array(mo, "options", &at)?;
        }
    }
    if let Some(ann) = opt_object(root, "annotations", &"")? {
        for (k, v) in ann {
            if !v.is_string() {
                return Err(wrong(&format!("/annotations/{}", seg(k)), "a string"));
            }
        }
    }
    opt_object(root, "hooks", &"")?;
    if let Some(r) = opt_object(root, "root", &"")? {
        opt_string(r, "path", &"/root")?;
    }
    if let Some(linux) = opt_object(root, "linux", &"")? {
        if let Some(ns) = opt_array(linux, "namespaces", &"/linux")? {
            for (i, n) in ns.iter().enumerate() {
                let at = At(&"/linux", "namespaces", Some(i));
                let no = n.as_object().ok_or_else(|| wrong(&at, "an object"))?;
                match no.get("type") {
                    Some(Value::String(_)) => {}
                    _ => return Err(wrong(&format!("{at}/type"), "a string")),
                }
                opt_string(no, "path", &at)?;
            }
        }
        if let Some(devs) = opt_array(linux, "devices", &"/linux")? {
            for (i, d) in devs.iter().enumerate() {
                if !d.is_object() {
                    return Err(wrong(&format!("/linux/devices/{i}"), "an object"));
                }
            }
        }
        if let Some(res) = opt_object(linux, "resources", &"/linux")? {
            if let Some(devs) = opt_array(res, "devices", &"/linux/resources")? {
                for (i, d) in devs.iter().enumerate() {
                    let at = At(&"/linux/resources", "devices", Some(i));
                    let dobj = d.as_object().ok_or_else(|| wrong(&at, "an object"))?;
                    opt_bool(dobj, "allow", &at)?;
                    opt_string(dobj, "type", &at)?;
                    opt_string(dobj, "access", &at)?;
                }
            }
        }
        if let Some(sysctl) = opt_object(linux, "sysctl", &"/linux")? {
            for (k, v) in sysctl {
                if !v.is_string() {
                    return Err(wrong(&format!("/linux/sysctl/{}", seg(k)), "a string"));
                }
            }
        }
        opt_string_array(linux, "maskedPaths", &"/linux")?;
        opt_string_array(linux, "readonlyPaths", &"/linux")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert!(matches!(parse(b"{"), Err(InputError::Json(_))));
        assert!(matches!(
            parse(&[0xff, 0xfe]),
            Err(InputError::NotUtf8 { .. })
        ));
        assert!(matches!(
            parse(br#"{"a":"x\u0000y"}"#),
            Err(InputError::NulByte { .. })
        ));
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(
            parse(deep.as_bytes()),
            Err(InputError::TooDeep { limit: MAX_DEPTH })
        );
        let deeper = "[".repeat(1000) + &"]".repeat(1000);
        assert_eq!(
            parse(deeper.as_bytes()),
            Err(InputError::TooDeep { limit: MAX_DEPTH })
        );
        let big = vec![b' '; MAX_INPUT_BYTES + 1];
        assert!(matches!(parse(&big), Err(InputError::TooLarge { .. })));
    }

    #[test]
    fn types() {
        let v = parse(br#"{"process":{"env":"PATH=/bin"}}"#).unwrap();
        assert_eq!(
            validate_spec(&v).unwrap_err().to_string(),
            "/process/env must be an array of strings"
        );
        let v = parse(br#"{"mounts":[{"source":"/x"}]}"#).unwrap();
        assert!(validate_spec(&v).is_err());
        let v = parse(br#"[]"#).unwrap();
        assert!(validate_spec(&v).is_err());
    }
}
