//! The argv redactor on the cases that leaked before (issue 7, item 6), the
//! per-program credential options, and ordinary command lines that must pass
//! unchanged. Values are synthetic and built from pieces.

use agentbox_secrets::{redact_argv, redact_text, REDACTED};

fn r(argv: &[&str]) -> Vec<String> {
    redact_argv(argv)
}

/// A token-shaped value that no rule knows (so only the context can give it away).
const PW: &str = "hunter2hunter2";

#[test]
fn shell_assignments_anywhere() {
    assert_eq!(
        r(&["sh", "-c", "export DB_PASSWORD=hunter2 && ./run"]),
        ["sh", "-c", "export DB_PASSWORD=[redacted] && ./run"]
    );
    assert_eq!(
        r(&[
            "bash",
            "-lc",
            "DB_PASSWORD='hunter 2' API_TOKEN=\"x y\" ./run --flag"
        ]),
        [
            "bash",
            "-lc",
            "DB_PASSWORD='[redacted]' API_TOKEN=\"[redacted]\" ./run --flag"
        ]
    );
    assert_eq!(
        r(&[
            "env",
            &format!("AWS_SECRET_ACCESS_KEY={PW}"),
            "aws",
            "s3",
            "ls"
        ]),
        ["env", "AWS_SECRET_ACCESS_KEY=[redacted]", "aws", "s3", "ls"]
    );
    assert_eq!(
        r(&[
            "java",
            &format!("-Djavax.net.ssl.keyStorePassword={PW}"),
            "-jar",
            "app.jar"
        ]),
        [
            "java",
            "-Djavax.net.ssl.keyStorePassword=[redacted]",
            "-jar",
            "app.jar"
        ]
    );
    // nested shells
    let nested = format!("sh -c \"bash -c 'export API_TOKEN={PW}; ./x'\"");
    let out = r(&["sh", "-c", &nested]);
    assert!(!out[2].contains(PW), "{out:?}");
}

#[test]
fn flag_then_value() {
    assert_eq!(
        r(&["mysql", "--password", PW, "db"]),
        ["mysql", "--password", REDACTED, "db"]
    );
    assert_eq!(
        r(&["tool", "--api-key", PW]),
        ["tool", "--api-key", REDACTED]
    );
    assert_eq!(
        r(&["tool", &format!("--client-secret={PW}")]),
        ["tool", "--client-secret=[redacted]"]
    );
    assert_eq!(
        r(&["tool", "-password", PW]),
        ["tool", "-password", REDACTED]
    );
    // a flag that takes no value, a path under a *-file flag
    assert_eq!(
        r(&["docker", "login", "--password-stdin", "registry.example"]),
        ["docker", "login", "--password-stdin", "registry.example"]
    );
    assert_eq!(
        r(&["rsync", "--password-file", "/etc/rsync.pw", "src", "dst"]),
        ["rsync", "--password-file", "/etc/rsync.pw", "src", "dst"]
    );
    // a weak name: only a random-looking value goes
    assert_eq!(
        r(&["curl", "--key", "/etc/ssl/client.key"]),
        ["curl", "--key", "/etc/ssl/client.key"]
    );
    assert_eq!(
        r(&["tool", "--key", "Zq3xR8vLm2NpT5wK9bYc4"]),
        ["tool", "--key", REDACTED]
    );
    assert_eq!(r(&["tool", "--key", "sort"]), ["tool", "--key", "sort"]);
}

#[test]
fn program_credential_options() {
    assert_eq!(
        r(&["mysql", "-uroot", &format!("-p{PW}"), "db"]),
        ["mysql", "-uroot", "-p[redacted]", "db"]
    );
    // `mysql -p db` prompts: `db` is the database
    assert_eq!(r(&["mysql", "-p", "db"]), ["mysql", "-p", "db"]);
    assert_eq!(
        r(&[
            "sh",
            "-c",
            &format!("mysqldump -h db -u app -p{PW} app > dump.sql")
        ]),
        [
            "sh",
            "-c",
            "mysqldump -h db -u app -p[redacted] app > dump.sql"
        ]
    );
    assert_eq!(
        r(&["sshpass", "-p", PW, "ssh", "host"]),
        ["sshpass", "-p", REDACTED, "ssh", "host"]
    );
    assert_eq!(
        r(&["docker", "login", "-u", "me", "-p", PW, "registry.example"]),
        [
            "docker",
            "login",
            "-u",
            "me",
            "-p",
            REDACTED,
            "registry.example"
        ]
    );
    // not a login: docker run -p is a port
    assert_eq!(
        r(&["docker", "run", "-p", "8080:80", "nginx"]),
        ["docker", "run", "-p", "8080:80", "nginx"]
    );
    assert_eq!(
        r(&["redis-cli", "-a", PW, "ping"]),
        ["redis-cli", "-a", REDACTED, "ping"]
    );
    assert_eq!(
        r(&[
            "openssl",
            "enc",
            "-aes-256-cbc",
            "-pass",
            &format!("pass:{PW}")
        ]),
        ["openssl", "enc", "-aes-256-cbc", "-pass", "pass:[redacted]"]
    );
    assert_eq!(
        r(&["openssl", "rsa", "-passin", "env:KEY_PW"]),
        ["openssl", "rsa", "-passin", "env:KEY_PW"]
    );
    assert_eq!(
        r(&[
            "sudo",
            "-u",
            "app",
            "env",
            "A=1",
            "redis-cli",
            &format!("-a{PW}")
        ]),
        [
            "sudo",
            "-u",
            "app",
            "env",
            "A=1",
            "redis-cli",
            "-a[redacted]"
        ]
    );
    assert_eq!(
        r(&["smbclient", "-U", &format!("user%{PW}"), "//h/s"]),
        ["smbclient", "-U", "user%[redacted]", "//h/s"]
    );
    assert_eq!(
        r(&["htpasswd", "-bc", "f", "user", PW]),
        ["htpasswd", "-bc", "f", "user", REDACTED]
    );
    assert_eq!(r(&["vault", "login", PW]), ["vault", "login", REDACTED]);
    assert_eq!(
        r(&[
            "vault",
            "kv",
            "put",
            "secret/app",
            &format!("db={PW}"),
            "user=app"
        ]),
        [
            "vault",
            "kv",
            "put",
            "secret/app",
            "db=[redacted]",
            "user=[redacted]"
        ]
    );
    assert_eq!(
        r(&[
            "kubectl",
            "create",
            "secret",
            "generic",
            "x",
            &format!("--from-literal=db={PW}")
        ]),
        [
            "kubectl",
            "create",
            "secret",
            "generic",
            "x",
            "--from-literal=db=[redacted]"
        ]
    );
    assert_eq!(
        r(&["aws", "configure", "set", "aws_secret_access_key", PW]),
        ["aws", "configure", "set", "aws_secret_access_key", REDACTED]
    );
    assert_eq!(
        r(&["git", "config", "--global", "github.token", PW]),
        ["git", "config", "--global", "github.token", REDACTED]
    );
    assert_eq!(
        r(&["sqlplus", &format!("scott/{PW}@orcl")]),
        ["sqlplus", "scott/[redacted]@orcl"]
    );
}

#[test]
fn http_credentials() {
    assert_eq!(
        r(&[
            "curl",
            "-H",
            &format!("Authorization: Bearer {PW}"),
            "https://api.example"
        ]),
        [
            "curl",
            "-H",
            "Authorization: [redacted]",
            "https://api.example"
        ]
    );
    assert_eq!(
        r(&[
            "sh",
            "-c",
            &format!("curl -sf -H 'Authorization: token {PW}' https://x.example")
        ]),
        [
            "sh",
            "-c",
            "curl -sf -H 'Authorization: [redacted]' https://x.example"
        ]
    );
    assert_eq!(
        r(&[
            "curl",
            "-H",
            &format!("X-Api-Key: {PW}"),
            "https://api.example"
        ]),
        ["curl", "-H", "X-Api-Key: [redacted]", "https://api.example"]
    );
    assert_eq!(
        r(&["curl", "-u", &format!("user:{PW}"), "https://x"]),
        ["curl", "-u", "user:[redacted]", "https://x"]
    );
    assert_eq!(
        r(&["curl", &format!("-uuser:{PW}"), "https://x"]),
        ["curl", "-uuser:[redacted]", "https://x"]
    );
    assert_eq!(
        r(&[
            "git",
            "clone",
            &format!("https://user:{PW}@git.example/org/repo.git")
        ]),
        [
            "git",
            "clone",
            "https://user:[redacted]@git.example/org/repo.git"
        ]
    );
    assert_eq!(
        r(&[
            "curl",
            &format!("https://api.example/v1?access_token={PW}&page=2")
        ]),
        [
            "curl",
            "https://api.example/v1?access_token=[redacted]&page=2"
        ]
    );
    assert_eq!(
        r(&[
            "curl",
            "-d",
            &format!("{{\"password\": \"{PW}\", \"user\": \"me\"}}"),
            "https://x"
        ]),
        [
            "curl",
            "-d",
            "{\"password\": \"[redacted]\", \"user\": \"me\"}",
            "https://x"
        ]
    );
}

#[test]
fn known_formats_anywhere() {
    let tok = format!("ghp_{}", "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2");
    assert_eq!(r(&["echo", &tok]), ["echo", REDACTED]);
    assert_eq!(
        r(&[
            "sh",
            "-c",
            &format!("echo {tok} | gh auth login --with-token")
        ]),
        ["sh", "-c", "echo [redacted] | gh auth login --with-token"]
    );
    assert_eq!(
        redact_text(&format!("note {tok} end")),
        "note [redacted] end"
    );
}

#[test]
fn ordinary_command_lines_unchanged() {
    let lines: &[&[&str]] = &[
        &["ls", "-la", "/tmp"],
        &["sh", "-c", "echo plain; exit 3"],
        &[
            "git",
            "commit",
            "-m",
            "fix: token refresh when the password is empty",
        ],
        &["python3", "-m", "pip", "install", "requests==2.31.0"],
        &["mysql", "-u", "root", "-h", "db", "-e", "select 1"],
        &[
            "curl",
            "-H",
            "Accept: application/json",
            "https://example.com/api?page=2&per_page=50",
        ],
        &[
            "docker",
            "run",
            "--rm",
            "-e",
            "LOG_LEVEL=debug",
            "-p",
            "8080:80",
            "nginx:1.25",
        ],
        &[
            "kubectl",
            "get",
            "secret",
            "-n",
            "kube-system",
            "-o",
            "yaml",
        ],
        &["ssh", "-o", "StrictHostKeyChecking=no", "git@github.com"],
        &["npm", "ci", "--no-audit", "--prefer-offline"],
        &["sh", "-c", "for f in *.txt; do wc -l \"$f\"; done"],
        &["grep", "-rn", "PASSWORD", "src/"],
        &["tar", "-xzf", "archive.tar.gz", "-C", "/work"],
        &["git", "log", "--format=%H %s", "-n", "5"],
        &["sh", "-c", "export PATH=/usr/local/bin:$PATH && make test"],
        &[
            "sh",
            "-c",
            "DB_PASSWORD=$DB_PASSWORD ./run --token-file /run/secrets/token",
        ],
        &["go", "test", "./...", "-run", "TestKey", "-count=1"],
        &["psql", "-h", "db", "-U", "app", "-d", "app"],
        &[
            "openssl",
            "x509",
            "-in",
            "cert.pem",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
        &[
            "ssh-keygen",
            "-t",
            "ed25519",
            "-f",
            "/tmp/id",
            "-C",
            "agent",
        ],
        &[
            "sha256sum",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ],
    ];
    for argv in lines {
        assert_eq!(r(argv), argv.to_vec(), "{argv:?}");
    }
}
