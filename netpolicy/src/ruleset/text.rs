//! The ruleset in `nft` syntax (what `nft list ruleset` would show, near
//! enough to read and to diff).

use std::fmt;
use std::net::IpAddr;

use super::{Elem, Expr, Field, Ruleset, Value, Verdict};
use crate::addr::{to_u128, Cidr};

fn join<T: fmt::Display>(v: &[T], sep: &str) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

fn key_str(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| f.nft())
        .collect::<Vec<_>>()
        .join(" . ")
}

impl fmt::Display for Elem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Elem::Key(k) => f.write_str(&join(k, " . ")),
            Elem::Range(a, b) => {
                let parts: Vec<String> = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| {
                        if x == y {
                            x.to_string()
                        } else if let (Value::Addr(x), Value::Addr(y)) = (x, y) {
                            range_str(*x, *y)
                        } else {
                            format!("{x}-{y}")
                        }
                    })
                    .collect();
                f.write_str(&parts.join(" . "))
            }
        }
    }
}

/// `a-b`, or the prefix it is.
fn range_str(a: IpAddr, b: IpAddr) -> String {
    let bits = if a.is_ipv4() { 32 } else { 128 };
    for len in 0..=bits {
        if let Some(c) = Cidr::new(a, len) {
            if c.first() == a && to_u128(c.last()) == to_u128(b) {
                return c.to_string();
            }
        }
    }
    format!("{a}-{b}")
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Eq(field, v) => write!(f, "{} {v}", field.nft()),
            Expr::Ne(field, v) => write!(f, "{} != {v}", field.nft()),
            Expr::Lookup { set, key } => write!(f, "{} @{set}", key_str(key)),
            Expr::Limit { per_second, burst } => {
                write!(f, "limit rate {per_second}/second burst {burst} packets")
            }
            Expr::Log { group, snaplen } => write!(f, "log group {group} snaplen {snaplen}"),
            Expr::Update {
                set,
                key,
                timeout_ms,
            } => write!(
                f,
                "update @{set} {{ {} timeout {}s }}",
                key_str(key),
                timeout_ms / 1000
            ),
        }
    }
}

impl fmt::Display for Ruleset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "table netdev {} {{", self.table)?;
        for s in &self.sets {
            writeln!(f, "\tset {} {{", s.name)?;
            let types: Vec<&str> = s.key.iter().map(|k| k.nft_type()).collect();
            writeln!(f, "\t\ttype {}", types.join(" . "))?;
            let mut flags = Vec::new();
            if s.interval {
                flags.push("interval");
            }
            if s.timeout {
                flags.push("timeout");
            }
            if s.dynamic {
                flags.push("dynamic");
            }
            if !flags.is_empty() {
                writeln!(f, "\t\tflags {}", flags.join(","))?;
            }
            if !s.elements.is_empty() {
                writeln!(f, "\t\telements = {{ {} }}", join(&s.elements, ", "))?;
            }
            writeln!(f, "\t}}")?;
        }
        for c in &self.chains {
            writeln!(f, "\tchain {} {{", c.name)?;
            if let Some(dev) = &c.device {
                writeln!(
                    f,
                    "\t\ttype filter hook egress device \"{dev}\" priority 0; policy drop;"
                )?;
            }
            for r in &c.rules {
                let mut parts: Vec<String> = r.exprs.iter().map(|e| e.to_string()).collect();
                match &r.verdict {
                    Some(Verdict::Accept) => parts.push("accept".into()),
                    Some(Verdict::Drop) => parts.push("drop".into()),
                    Some(Verdict::Jump(c)) => parts.push(format!("jump {c}")),
                    Some(Verdict::Goto(c)) => parts.push(format!("goto {c}")),
                    None => {}
                }
                writeln!(f, "\t\t{}", parts.join(" "))?;
            }
            writeln!(f, "\t}}")?;
        }
        writeln!(f, "}}")
    }
}
