//! Credential options of common programs, the commands that wrap others,
//! and positional credentials: the per-program knowledge of the argv redactor.

use crate::generic::placeholder;

/// Which part of a credential option's value is secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Whole,
    /// `user:password` (curl `-u`): after the first `:`, or all of it when
    /// nothing follows the colon (a token given as the user name).
    AfterColon,
    /// `user%password` (smbclient `-U`).
    AfterPercent,
    /// `pass:secret` (openssl); `env:`/`file:`/`fd:` sources are kept.
    AfterPassPrefix,
    /// `key=value` (kubectl `--from-literal`): after the first `=`.
    AfterEquals,
}

/// How a credential option takes its value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Takes {
    /// `-pSECRET` only (`mysql -p x` prompts and `x` is the database).
    Attached,
    /// `-p SECRET` or `-pSECRET`.
    Both,
    /// `-passin SECRET` (a multi-letter single-dash option).
    Next,
}

/// A program's credential option.
pub(crate) struct Opt {
    pub progs: &'static [&'static str],
    /// a word that must appear in the command (`login`, `secret`)
    pub needs: Option<&'static str>,
    pub flag: &'static str,
    pub takes: Takes,
    pub part: Part,
}

const MYSQL: &[&str] = &[
    "mysql",
    "mysqldump",
    "mysqladmin",
    "mysqlimport",
    "mysqlcheck",
    "mysqlshow",
    "mysqlslap",
    "mysqlpump",
    "mysqlbinlog",
    "mysqlsh",
    "mariadb",
    "mariadb-dump",
    "mariadb-admin",
    "mariadb-import",
    "mariadb-check",
    "mariadb-show",
    "mariadb-slap",
    "mariadb-binlog",
];
const LOGIN: &[&str] = &[
    "docker", "podman", "nerdctl", "buildah", "skopeo", "helm", "oras", "regctl", "crane", "finch",
    "az", "oc", "twine",
];
const MONGO: &[&str] = &[
    "mongo",
    "mongosh",
    "mongodump",
    "mongorestore",
    "mongoexport",
    "mongoimport",
    "mongostat",
    "mongotop",
    "mongofiles",
];
const LDAP: &[&str] = &[
    "ldapsearch",
    "ldapadd",
    "ldapmodify",
    "ldapdelete",
    "ldapwhoami",
    "ldappasswd",
    "ldapcompare",
    "ldapmodrdn",
    "ldapexop",
    "ldapurl",
];
const CURL: &[&str] = &["curl"];
const HTTPIE: &[&str] = &["http", "https", "xh", "xhs"];
const SMB: &[&str] = &["smbclient", "rpcclient", "smbcacls", "smbget", "smbmap"];
const OPENSSL: &[&str] = &["openssl"];
const KEYTOOL: &[&str] = &["keytool", "jarsigner"];
const KUBECTL: &[&str] = &["kubectl", "oc", "k3s"];

const fn o(
    progs: &'static [&'static str],
    needs: Option<&'static str>,
    flag: &'static str,
    takes: Takes,
    part: Part,
) -> Opt {
    Opt {
        progs,
        needs,
        flag,
        takes,
        part,
    }
}

/// Credential options of common programs (long `--password`-like options of
/// any program are found by name; these are the ones a name does not give away).
pub(crate) const OPTS: &[Opt] = &[
    o(MYSQL, None, "-p", Takes::Attached, Part::Whole),
    o(&["sshpass"], None, "-p", Takes::Both, Part::Whole),
    o(LOGIN, Some("login"), "-p", Takes::Both, Part::Whole),
    o(&["twine"], None, "-p", Takes::Both, Part::Whole),
    o(
        &["redis-cli", "keydb-cli", "valkey-cli"],
        None,
        "-a",
        Takes::Both,
        Part::Whole,
    ),
    o(MONGO, None, "-p", Takes::Both, Part::Whole),
    o(&["sqlcmd", "bcp"], None, "-P", Takes::Both, Part::Whole),
    o(
        &["zip", "unzip", "zipcloak"],
        None,
        "-P",
        Takes::Both,
        Part::Whole,
    ),
    o(
        &["7z", "7za", "7zr", "7zz"],
        None,
        "-p",
        Takes::Attached,
        Part::Whole,
    ),
    o(LDAP, None, "-w", Takes::Both, Part::Whole),
    o(SMB, None, "-U", Takes::Both, Part::AfterPercent),
    o(SMB, None, "--user", Takes::Both, Part::AfterPercent),
    o(CURL, None, "-u", Takes::Both, Part::AfterColon),
    o(CURL, None, "-U", Takes::Both, Part::AfterColon),
    o(CURL, None, "--user", Takes::Both, Part::AfterColon),
    o(CURL, None, "--proxy-user", Takes::Both, Part::AfterColon),
    o(HTTPIE, None, "-a", Takes::Both, Part::AfterColon),
    o(HTTPIE, None, "--auth", Takes::Both, Part::AfterColon),
    o(OPENSSL, None, "-passin", Takes::Next, Part::AfterPassPrefix),
    o(
        OPENSSL,
        None,
        "-passout",
        Takes::Next,
        Part::AfterPassPrefix,
    ),
    o(OPENSSL, None, "-pass", Takes::Next, Part::AfterPassPrefix),
    o(
        OPENSSL,
        None,
        "-password",
        Takes::Next,
        Part::AfterPassPrefix,
    ),
    o(OPENSSL, None, "-k", Takes::Next, Part::Whole),
    o(OPENSSL, None, "-K", Takes::Next, Part::Whole),
    o(KEYTOOL, None, "-storepass", Takes::Next, Part::Whole),
    o(KEYTOOL, None, "-keypass", Takes::Next, Part::Whole),
    o(KEYTOOL, None, "-srcstorepass", Takes::Next, Part::Whole),
    o(KEYTOOL, None, "-deststorepass", Takes::Next, Part::Whole),
    o(KEYTOOL, None, "-srckeypass", Takes::Next, Part::Whole),
    o(KEYTOOL, None, "-destkeypass", Takes::Next, Part::Whole),
    o(&["ssh-keygen"], None, "-N", Takes::Both, Part::Whole),
    o(&["ssh-keygen"], None, "-P", Takes::Both, Part::Whole),
    o(
        &["useradd", "usermod"],
        None,
        "-p",
        Takes::Both,
        Part::Whole,
    ),
    o(
        &["mosquitto_pub", "mosquitto_sub", "mosquitto_rr"],
        None,
        "-P",
        Takes::Both,
        Part::Whole,
    ),
    o(&["gh"], Some("secret"), "-b", Takes::Both, Part::Whole),
    o(&["gh"], Some("secret"), "--body", Takes::Both, Part::Whole),
    o(
        KUBECTL,
        Some("secret"),
        "--from-literal",
        Takes::Both,
        Part::AfterEquals,
    ),
];

/// Words that make the next positional a secret when it follows a secret
/// name (`aws configure set aws_secret_access_key X`, `git config github.token X`).
pub(crate) const CONFIG_VERBS: &[&str] = &["set", "config", "configure", "config:set"];

/// Commands that wrap another command (their own options skipped).
pub(crate) fn wrapper(prog: &str) -> Option<&'static [&'static str]> {
    // options of the wrapper that take a value
    Some(match prog {
        "sudo" | "doas" => &["-u", "-g", "-p", "-C", "-D", "-r", "-t", "-U", "-h", "-R"],
        "env" => &["-u", "-C", "-S", "--unset", "--chdir"],
        "nice" => &["-n", "--adjustment"],
        "timeout" => &["-s", "-k", "--signal", "--kill-after"],
        "nohup" | "exec" | "command" | "builtin" | "time" | "stdbuf" | "setsid" | "chroot"
        | "unbuffer" | "xargs" | "watch" | "strace" | "ltrace" | "ionice" | "taskset" | "su" => &[],
        _ => return None,
    })
}

/// The secret part of `v` (a byte range of it), per `part`.
pub(crate) fn part_of(v: &str, part: Part) -> Option<(usize, usize)> {
    let r = match part {
        Part::Whole => (0, v.len()),
        Part::AfterColon => match v.find(':') {
            Some(i) if i + 1 < v.len() => (i + 1, v.len()),
            Some(i) => (0, i),
            None => return None,
        },
        Part::AfterPercent => {
            let i = v.find('%')?;
            (i + 1, v.len())
        }
        Part::AfterPassPrefix => {
            let rest = v.strip_prefix("pass:")?;
            (v.len() - rest.len(), v.len())
        }
        Part::AfterEquals => {
            let i = v.find('=')?;
            (i + 1, v.len())
        }
    };
    (r.0 < r.1 && !placeholder(&v[r.0..r.1])).then_some(r)
}

/// Does word `w` give option `o`? `Some(None)`: the value is the next word;
/// `Some(Some(off))`: the value is attached at byte `off`.
pub(crate) fn match_opt<'o>(o: &'o Opt, w: &str) -> Option<(&'o Opt, Option<usize>)> {
    if w == o.flag {
        return (o.takes != Takes::Attached).then_some((o, None));
    }
    if o.flag.starts_with("--") {
        return w
            .strip_prefix(o.flag)?
            .strip_prefix('=')
            .map(|_| (o, Some(o.flag.len() + 1)));
    }
    if o.takes == Takes::Next {
        return w
            .strip_prefix(o.flag)?
            .strip_prefix('=')
            .map(|_| (o, Some(o.flag.len() + 1)));
    }
    // attached short option: `-pSECRET`
    (w.len() > o.flag.len() && w.starts_with(o.flag)).then_some((o, Some(o.flag.len())))
}

/// Positional secrets: `vault login TOKEN`, `sqlplus user/password@db`,
/// `vault kv put path key=value`.
pub(crate) fn positional(
    prog: &str,
    words: &[&str],
    i: usize,
    j: usize,
    emit: &mut dyn FnMut(usize, usize, usize),
) {
    let w = words[j];
    let before = &words[i + 1..j];
    match prog {
        "vault" if before.last() == Some(&"login") && !w.contains('=') => emit(j, 0, w.len()),
        "vault"
            if before.contains(&"kv") && (before.contains(&"put") || before.contains(&"patch")) =>
        {
            if let Some(eq) = w.find('=') {
                if !placeholder(&w[eq + 1..]) && eq + 1 < w.len() {
                    emit(j, eq + 1, w.len());
                }
            }
        }
        "sqlplus" | "sqlldr" | "expdp" | "impdp" | "rman"
            if before.iter().all(|x| x.starts_with('-')) =>
        {
            if let Some(slash) = w.find('/') {
                let end = w[slash..].find('@').map_or(w.len(), |k| slash + k);
                if end > slash + 1 {
                    emit(j, slash + 1, end);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        assert_eq!(part_of("user:pw", Part::AfterColon), Some((5, 7)));
        assert_eq!(part_of("tok:", Part::AfterColon), Some((0, 3)));
        assert_eq!(part_of("user", Part::AfterColon), None);
        assert_eq!(part_of("pass:x1", Part::AfterPassPrefix), Some((5, 7)));
        assert_eq!(part_of("env:VAR", Part::AfterPassPrefix), None);
        assert_eq!(part_of("dom\\u%pw", Part::AfterPercent), Some((6, 8)));
    }
}
