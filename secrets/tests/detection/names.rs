//! The name rules, one test per rule: names that hold a secret, names that
//! do not, and the kept names.

use agentbox_secrets::{Detector, RuleKind};

fn rule(name: &str) -> Option<&'static str> {
    Detector::builtin().name_rule(name)
}

fn check(id: &str, yes: &[&str], no: &[&str]) {
    for n in yes {
        assert_eq!(rule(n), Some(id), "{n}");
    }
    for n in no {
        assert_ne!(rule(n), Some(id), "{n}");
    }
}

#[test]
fn name_password() {
    check(
        "name-password",
        &[
            "PGPASSWORD",
            "Db_Password",
            "MYSQL_PASS",
            "DB_PWD",
            "SMTP_PW",
            "KEY_PASSPHRASE",
            "passwd",
            "redis.pass",
        ],
        &[
            "PWD",
            "OLDPWD",
            "PASSAGE",
            "PASSWORD_MIN_LENGTH",
            "DB_PASSWORD_FILE",
            "BYPASS",
        ],
    );
}

#[test]
fn name_secret() {
    check(
        "name-secret",
        &[
            "AZURE_CLIENT_SECRET",
            "clientSecret",
            "SECRET",
            "JWT_SECRET",
        ],
        &["SECRET_NAME", "SECRET_TTL", "DB_SECRET_PATH"],
    );
}

#[test]
fn name_token() {
    check(
        "name-token",
        &[
            "GITHUB_TOKEN",
            "GH_TOKEN",
            "githubToken",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "TOKEN",
            "x-auth-token",
            "VAULT_TOKEN",
        ],
        &[
            "TOKENIZERS_PARALLELISM",
            "MAX_TOKENS",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            "TOKEN_TTL",
        ],
    );
}

#[test]
fn name_credential() {
    check(
        "name-credential",
        &[
            "GOOGLE_APPLICATION_CREDENTIALS",
            "DOCKER_CREDS",
            "credential",
        ],
        &["CREDIT_LIMIT", "CREDENTIALS_FILE"],
    );
}

#[test]
fn name_private_key() {
    check(
        "name-private-key",
        &["SSH_PRIVATE_KEY", "x_Private_Key", "privateKey"],
        &["PRIVATE_KEY_PATH", "PRIVATE_NETWORK"],
    );
}

#[test]
fn name_api_key() {
    check(
        "name-api-key",
        &["OPENAI_API_KEY", "STRIPE_APIKEY", "apiKey", "my_api_key"],
        &["API_KEY_NAME", "API_VERSION"],
    );
}

#[test]
fn name_access_key() {
    check(
        "name-access-key",
        &[
            "MINIO_ACCESS_KEY",
            "aws_access_key",
            "accessKey",
            "AWS_ACCESS_KEY_ID",
        ],
        &["ACCESS_LOG", "ACCESS_KEY_PATH"],
    );
}

#[test]
fn name_authorization() {
    check(
        "name-authorization",
        &[
            "AUTHORIZATION",
            "DOCKER_AUTH_CONFIG",
            "npm_config__auth",
            "BEARER",
            "Proxy-Authorization",
        ],
        &["AUTHOR", "SSH_AUTH_SOCK", "AUTH", "AUTH_MODE"],
    );
}

#[test]
fn name_connection_string() {
    check(
        "name-connection-string",
        &[
            "AZURE_STORAGE_CONNECTION_STRING",
            "ServiceBusConnectionString",
        ],
        &["CONNECTION_TIMEOUT"],
    );
}

#[test]
fn name_pat() {
    check(
        "name-pat",
        &["GITLAB_PAT", "ado-pat"],
        &["PATH", "PATTERN", "PATCH"],
    );
}

#[test]
fn name_key() {
    check(
        "name-key",
        &[
            "JWT_SIGNING_KEY",
            "X-API-KEY",
            "STORAGE_ACCOUNT_KEY",
            "AccountKey",
            "LICENSE_KEY",
            "WEBHOOK_KEY",
        ],
        &[
            "GPG_KEY",
            "SORT_KEY",
            "KEYBOARD",
            "PRIMARY_KEY",
            "CACHE_KEY_PREFIX",
            "SIGNING_KEY_TYPE",
        ],
    );
}

/// Every name rule has a test above.
#[test]
fn every_name_rule_is_tested() {
    let tested = [
        "name-password",
        "name-secret",
        "name-token",
        "name-credential",
        "name-private-key",
        "name-api-key",
        "name-access-key",
        "name-authorization",
        "name-connection-string",
        "name-pat",
        "name-key",
    ];
    let mut rules: Vec<&str> = Detector::builtin()
        .rules()
        .iter()
        .filter(|r| r.kind == RuleKind::Name)
        .map(|r| r.id)
        .collect();
    rules.sort_unstable();
    let mut t = tested.to_vec();
    t.sort_unstable();
    assert_eq!(t, rules);
}

#[test]
fn kept_names() {
    let d = Detector::builtin();
    for n in [
        "PATH",
        "HOME",
        "PWD",
        "LC_ALL",
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_PORT_443_TCP",
        "TOKEN_SVC_SERVICE_HOST",
        "TOKEN_SVC_PORT",
        "SECRET_STORE_PORT_80_TCP_ADDR",
    ] {
        assert!(d.kept_name(n), "{n}");
    }
    for n in ["GITHUB_TOKEN", "_PORT", "PORTAL"] {
        assert!(!d.kept_name(n), "{n}");
    }
}
