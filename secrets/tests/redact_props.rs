//! Property tests for the argv redactor. The oracle is the planted value, not
//! the detector: a secret value planted in a generated command line (shell
//! assignments, flags, program credential options, headers, URLs, JSON
//! bodies, known token formats, behind wrappers and inside nested shells)
//! must not appear anywhere in the redacted argv. And generated ordinary
//! command lines pass unchanged.

use agentbox_secrets::redact_argv;
use proptest::prelude::*;

const NAMES: &[&str] = &[
    "DB_PASSWORD",
    "API_TOKEN",
    "GITHUB_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "client_secret",
    "PGPASSWORD",
    "npm_config__auth",
    "SLACK_BOT_TOKEN",
    "STRIPE_API_KEY",
    "MYSQL_PWD",
    "vault.token",
    "privateKey",
];
const FLAGS: &[&str] = &[
    "password",
    "token",
    "api-key",
    "client-secret",
    "secret",
    "auth-token",
    "access-token",
    "passphrase",
    "db-password",
    "private-key",
    "apikey",
    "bearer",
];
const PROGS: &[&str] = &[
    "tool",
    "deploy.sh",
    "./bin/app",
    "/usr/local/bin/cli",
    "python3",
];
const URLS: &[&str] = &[
    "https://api.example/v1",
    "http://10.0.0.5:8080/x",
    "https://git.example/org/repo.git",
];

/// A secret-looking value: never a placeholder, never a flag, no shell or URL
/// specials (a template quotes it where a shell would need it).
fn value() -> impl Strategy<Value = String> {
    "[a-z]{2}[0-9][A-Za-z0-9._~+=,-]{3,21}"
}

/// A token in a known format, built from random pieces.
fn token() -> impl Strategy<Value = String> {
    (0usize..6, "[A-Za-z0-9]{40}", "[0-9]{13}", "[A-Z0-9]{16}").prop_map(
        |(k, an, dg, up)| match k {
            0 => format!("ghp_{}", &an[..36]),
            1 => format!("glpat-{}", &an[..20]),
            2 => format!("xoxb-{dg}-{dg}-{}", &an[..24]),
            3 => format!("AKIA{up}"),
            4 => format!("sk-ant-api03-{an}{an}"),
            _ => format!("hf_{}", &an[..34]),
        },
    )
}

fn pick<T: Clone + std::fmt::Debug + 'static>(xs: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(xs)
}

fn s(x: &str) -> String {
    x.to_string()
}

/// A command line with `v` planted in one of the ways secrets reach argv.
fn plant(kind: usize, v: &str, name: &str, flag: &str, prog: &str, url: &str) -> Vec<String> {
    match kind {
        0 => vec![s("sh"), s("-c"), format!("export {name}={v} && ./run")],
        1 => vec![s("sh"), s("-c"), format!("{name}='{v}' ./run --x")],
        2 => vec![
            s("bash"),
            s("-lc"),
            format!("cd /app; {name}=\"{v}\" make deploy"),
        ],
        3 => vec![s(prog), format!("--{flag}"), s(v)],
        4 => vec![s(prog), format!("--{flag}={v}")],
        5 => vec![s(prog), s("-password"), s(v), s("-v")],
        6 => vec![s("mysql"), s("-u"), s("root"), format!("-p{v}"), s("db")],
        7 => vec![
            s("sh"),
            s("-c"),
            format!("mysqldump -uroot -p{v} app > dump.sql"),
        ],
        8 => vec![
            s("curl"),
            s("-H"),
            format!("Authorization: Bearer {v}"),
            s(url),
        ],
        9 => vec![
            s("sh"),
            s("-c"),
            format!("curl -sf -H 'Authorization: token {v}' {url}"),
        ],
        10 => vec![s("curl"), s("-u"), format!("user:{v}"), s(url)],
        11 => vec![s("curl"), format!("-uuser:{v}"), s(url)],
        12 => vec![
            s("git"),
            s("clone"),
            format!("https://user:{v}@git.example/x.git"),
        ],
        13 => vec![
            s("sh"),
            s("-c"),
            format!("pg_dump postgres://app:{v}@db:5432/app > d.sql"),
        ],
        14 => vec![
            s("docker"),
            s("login"),
            s("-u"),
            s("me"),
            s("-p"),
            s(v),
            s("registry.example"),
        ],
        15 => vec![s("sshpass"), s("-p"), s(v), s("ssh"), s("host")],
        16 => vec![s("redis-cli"), s("-a"), s(v), s("ping")],
        17 => vec![s("env"), format!("{name}={v}"), s("cmd")],
        18 => vec![
            s("kubectl"),
            s("create"),
            s("secret"),
            s("generic"),
            s("x"),
            format!("--from-literal=k={v}"),
        ],
        19 => vec![
            s("openssl"),
            s("enc"),
            s("-aes-256-cbc"),
            s("-pass"),
            format!("pass:{v}"),
        ],
        20 => vec![
            s("curl"),
            s("-d"),
            format!("{{\"password\": \"{v}\", \"user\": \"me\"}}"),
            s(url),
        ],
        21 => vec![s("curl"), format!("{url}?access_token={v}&page=2")],
        22 => vec![
            s("sh"),
            s("-c"),
            format!("bash -c \"export {name}={v}; ./x\""),
        ],
        23 => vec![
            s("aws"),
            s("configure"),
            s("set"),
            s("aws_secret_access_key"),
            s(v),
        ],
        24 => vec![
            s("java"),
            format!("-Djavax.net.ssl.keyStorePassword={v}"),
            s("-jar"),
            s("x.jar"),
        ],
        25 => vec![s("curl"), s("-H"), format!("X-Api-Key: {v}"), s(url)],
        26 => vec![
            s("sh"),
            s("-c"),
            format!("echo start\n{prog} --{flag} {v}\necho done"),
        ],
        _ => vec![
            s("docker"),
            s("run"),
            s("-e"),
            format!("{name}={v}"),
            s("image"),
        ],
    }
}

const KINDS: usize = 28;

fn wrap(w: usize, mut argv: Vec<String>) -> Vec<String> {
    let pre: &[&str] = match w {
        0 => &[],
        1 => &["sudo", "-u", "app"],
        2 => &["env", "LANG=C"],
        3 => &["nice", "-n", "5"],
        4 => &["timeout", "30"],
        _ => &["nohup"],
    };
    let mut out: Vec<String> = pre.iter().map(|x| s(x)).collect();
    out.append(&mut argv);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, .. ProptestConfig::default() })]

    #[test]
    fn planted_values_never_survive(
        kind in 0..KINDS,
        v in value(),
        name in pick(NAMES),
        flag in pick(FLAGS),
        prog in pick(PROGS),
        url in pick(URLS),
        w in 0usize..6,
        tail in prop::collection::vec(pick(&["-v", "--retries", "3", "/tmp/out", "--color=auto", "--", "x"][..]), 0..3),
    ) {
        let mut argv = wrap(w, plant(kind, &v, name, flag, prog, url));
        argv.extend(tail.iter().map(|x| s(x)));
        let without = wrap(w, plant(kind, "", name, flag, prog, url)).join(" ");
        prop_assume!(!without.contains(&v));
        let out = redact_argv(&argv);
        prop_assert_eq!(out.len(), argv.len());
        let joined = out.join("\u{1}");
        prop_assert!(!joined.contains(&v), "kind {}: {:?} -> {:?}", kind, argv, out);
    }

    #[test]
    fn planted_tokens_never_survive(tok in token(), k in 0usize..4, prog in pick(PROGS)) {
        let argv = match k {
            0 => vec![s("echo"), tok.clone()],
            1 => vec![s("sh"), s("-c"), format!("{prog} --note {tok} | tee log")],
            2 => vec![s(prog), format!("--config={{\"upstream\": \"{tok}\"}}")],
            _ => vec![s("git"), s("clone"), format!("https://{tok}@git.example/x.git")],
        };
        let out = redact_argv(&argv).join("\u{1}");
        prop_assert!(!out.contains(&tok), "{:?}", argv);
    }

    #[test]
    fn ordinary_command_lines_unchanged(
        prog in pick(&["ls", "git", "make", "cargo", "python3", "sort", "grep", "tar", "kubectl", "node"][..]),
        words in prop::collection::vec(pick(&[
            "-la", "/tmp", "status", "--color=auto", "-n", "5", "build", "--release", "-k", "2",
            "-rn", "TODO", "src/", "-xzf", "a.tar.gz", "get", "pods", "-o", "yaml", "--watch",
            "main.py", "--verbose", "test", "-j4", "origin/main", "--format=%H", "README.md",
            "--max-old-space-size=4096", "LOG_LEVEL=debug", "http://example.com/a?b=1",
        ][..]), 0..8),
        shell in any::<bool>(),
    ) {
        let mut argv = vec![s(prog)];
        argv.extend(words.iter().map(|x| s(x)));
        let argv = if shell { vec![s("sh"), s("-c"), argv.join(" ")] } else { argv };
        prop_assert_eq!(redact_argv(&argv), argv);
    }
}
