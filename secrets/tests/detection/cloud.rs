//! Cases for structural detectors, cloud providers, forges, CI, registries,
//! AI services and secrets managers.

use crate::gen::*;
use crate::{cases, NOTE};

fn pem(g: &mut G, label: &str) -> String {
    let body: Vec<String> = (0..4).map(|_| g.s(B64, 64)).collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----",
        body.join("\n")
    )
}

cases! {
    private_key: "private-key", NOTE,
        |g| { let l = g.pick(&["RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "PGP PRIVATE KEY BLOCK"]); pem(g, l) },
        |g| vec![pem(g, "CERTIFICATE"), pem(g, "PUBLIC KEY"), "BEGIN RSA PRIVATE KEY".into()];
    url_credentials: "url-credentials", NOTE,
        |g| { let s = g.pick(&["postgres", "mysql", "https", "redis", "amqp", "mongodb+srv"]); format!("{s}://app:{}@db.internal:5432/app", g.s(ALNUM, 12)) },
        |_| vec!["postgres://app@db:5432/app".into(), "https://example.com/a@b".into(), "postgres://app:${DB_PASSWORD}@db/app".into(), "https://u:@h/".into()];
    http_authorization: "http-authorization", NOTE,
        |g| { let h = g.pick(&["Authorization: Bearer ", "Authorization: Basic ", "Proxy-Authorization: token ", "Cookie: session="]); format!("{h}{}", g.s(B64URL, 24)) },
        |_| vec!["Authorization: Bearer $TOKEN".into(), "Accept: application/json".into(), "authorization header".into()];
    command_line_credential: "command-line-credential", "EXTRA",
        |g| match g.below(5) {
            0 => format!("mysql -h db -u app -p{} app", g.s(ALNUM, 12)),
            1 => format!("sshpass -p {} ssh deploy@host", g.s(ALNUM, 12)),
            2 => format!("curl -sf -u deploy:{} https://x.example", g.s(ALNUM, 12)),
            3 => format!("redis-cli -h cache -a {} ping", g.s(ALNUM, 12)),
            _ => format!("docker login -u me -p {} registry.example", g.s(ALNUM, 12)),
        },
        |_| vec!["mysql -h db -p app".into(), "docker run -p 8080:80 nginx".into(), "curl -u deploy https://x.example".into(), "openssl rsa -passin env:KEY_PW -in k.pem".into()];
    generic_secret: "generic-secret", "UPSTREAM_KEY",
        |g| g.s(ALNUM, 16 + g.below(40)),
        |g| vec!["/etc/upstream/key.pem".into(), "created_at".into(), g.uuid(), "https://keys.example.com/jwks.json".into(), "my-release-name-2024".into(), g.s(LALNUM, 12)];

    aws_access_key_id: "aws-access-key-id", NOTE,
        |g| { let p = g.pick(&["AKIA", "ASIA", "ABIA", "ACCA"]); format!("{p}{}", g.s(UALNUM, 16)) },
        |g| vec![format!("AKIA{}", g.s(UALNUM, 15)), format!("AKIA{}", g.s(UALNUM, 17)), format!("AKIA{}", g.s("abcdefgh", 16)), format!("XAKIA{}", g.s(UALNUM, 16))];
    aws_secret_access_key: "aws-secret-access-key", "AWS",
        |g| g.s(B64, 40),
        |g| vec![g.s(B64, 39), g.s(B64, 41)];
    aws_bedrock_api_key: "aws-bedrock-api-key", NOTE,
        |g| format!("ABSK{}", g.s(B64, 120)),
        |g| vec![format!("ABSK{}", g.s(B64, 60)), format!("absk{}", g.s(B64, 120))];
    gcp_api_key: "gcp-api-key", NOTE,
        |g| format!("AIza{}", g.s(B64URL, 35)),
        |g| vec![format!("AIza{}", g.s(ALNUM, 34)), format!("AIZa{}", g.s(ALNUM, 35)), format!("AIza{}", g.s(ALNUM, 36))];
    google_oauth_client_secret: "google-oauth-client-secret", NOTE,
        |g| format!("GOCSPX-{}", g.s(B64URL, 28)),
        |g| vec![format!("GOCSPX-{}", g.s(ALNUM, 27)), format!("GOCSPX{}", g.s(ALNUM, 28))];
    google_oauth_access_token: "google-oauth-access-token", NOTE,
        |g| format!("ya29.{}", g.s(B64URL, 60 + g.below(100))),
        |g| vec![format!("ya29.{}", g.s(ALNUM, 12)), format!("ya28.{}", g.s(ALNUM, 60))];
    azure_ad_client_secret: "azure-ad-client-secret", NOTE,
        |g| format!("{}{}Q~{}", g.s(ALNUM, 3), g.s(DIGIT, 1), g.s("abcdefghABCDEFGH0123456789_~.-", 31 + g.below(4))),
        |g| vec![format!("{}xQ~{}", g.s(ALNUM, 3), g.s(ALNUM, 32)), format!("{}5Q~{}", g.s(ALNUM, 3), g.s(ALNUM, 20))];
    alibaba_access_key_id: "alibaba-access-key-id", NOTE,
        |g| format!("LTAI{}", g.s(ALNUM, 20)),
        |g| vec![format!("LTAI{}", g.s(ALNUM, 19)), format!("LTAI{}", g.s(ALNUM, 21))];
    alibaba_secret_key: "alibaba-secret-key", "ALIBABA_CLOUD",
        |g| g.s(LALNUM, 30),
        |g| vec![g.s(LALNUM, 29), g.s(LALNUM, 31)];
    tencent_secret_id: "tencent-secret-id", NOTE,
        |g| format!("AKID{}", g.s(ALNUM, 32)),
        |g| vec![format!("AKID{}", g.s(ALNUM, 31)), format!("AKID{}", g.s(ALNUM, 33))];
    yandex_api_key: "yandex-api-key", "YANDEX",
        |g| format!("AQVN{}", g.s(B64URL, 35 + g.below(4))),
        |g| vec![format!("AQVN{}", g.s(B64URL, 30)), format!("AQVX{}", g.s(B64URL, 36))];
    yandex_aws_access_token: "yandex-aws-access-token", "YANDEX",
        |g| format!("YC{}", g.s(B64URL, 38)),
        |g| vec![format!("YC{}", g.s(B64URL, 37)), format!("YD{}", g.s(B64URL, 38))];
    yandex_access_token: "yandex-access-token", "YANDEX",
        |g| format!("t1.{}.{}", g.s(B64URL, 20), g.s(B64URL, 86)),
        |g| vec![format!("t1.{}.{}", g.s(B64URL, 20), g.s(B64URL, 85)), format!("t2.{}.{}", g.s(B64URL, 20), g.s(B64URL, 86))];
    digitalocean_pat: "digitalocean-pat", NOTE,
        |g| format!("dop_v1_{}", g.s(HEX, 64)),
        |g| vec![format!("dop_v1_{}", g.s(HEX, 63)), format!("dop_v2_{}", g.s(HEX, 64)), format!("dop_v1_{}", g.s("ABCDEF", 64))];
    digitalocean_access_token: "digitalocean-access-token", NOTE,
        |g| format!("doo_v1_{}", g.s(HEX, 64)),
        |g| vec![format!("doo_v1_{}", g.s(HEX, 63))];
    digitalocean_refresh_token: "digitalocean-refresh-token", NOTE,
        |g| format!("dor_v1_{}", g.s(HEX, 64)),
        |g| vec![format!("dor_v1_{}", g.s(HEX, 65))];
    heroku_api_key_v2: "heroku-api-key-v2", NOTE,
        |g| format!("HRKU-AA{}", g.s(B64URL, 58)),
        |g| vec![format!("HRKU-AA{}", g.s(ALNUM, 57)), format!("HRKU-AB{}", g.s(ALNUM, 58))];
    heroku_api_key: "heroku-api-key", "HEROKU",
        |g| g.uuid(),
        |g| vec![g.uuid()[..35].to_string(), format!("{}-{}", g.s(HEX, 8), g.s(HEX, 27))];
    flyio_access_token: "flyio-access-token", NOTE,
        |g| { if g.below(2) == 0 { format!("fo1_{}", g.s(B64URL, 43)) } else { format!("fm2_{}", g.s(B64, 150)) } },
        |g| vec![format!("fo1_{}", g.s(ALNUM, 42)), format!("fm2_{}", g.s(B64, 60))];
    cloudflare_origin_ca_key: "cloudflare-origin-ca-key", NOTE,
        |g| format!("v1.0-{}-{}", g.s(HEX, 24), g.s(HEX, 146)),
        |g| vec![format!("v1.0-{}-{}", g.s(HEX, 24), g.s(HEX, 145)), format!("v1.1-{}-{}", g.s(HEX, 24), g.s(HEX, 146))];
    cloudflare_api_key: "cloudflare-api-key", "CLOUDFLARE",
        |g| { if g.below(2) == 0 { g.s(B64URL, 40) } else { g.s(HEX, 37) } },
        |g| vec![g.s(ALNUM, 39), g.s(HEX, 36)];
    scalingo_api_token: "scalingo-api-token", NOTE,
        |g| format!("tk-us-{}", g.s(B64URL, 48)),
        |g| vec![format!("tk-us-{}", g.s(ALNUM, 47)), format!("tk-eu-{}", g.s(ALNUM, 48))];
    netlify_access_token: "netlify-access-token", "NETLIFY",
        |g| g.s(B64URL, 40 + g.below(7)),
        |g| vec![g.s(ALNUM, 39), g.s(ALNUM, 47)];
    openshift_user_token: "openshift-user-token", NOTE,
        |g| format!("sha256~{}", g.s(B64URL, 43)),
        |g| vec![format!("sha256~{}", g.s(ALNUM, 42)), format!("sha256:{}", g.s(HEX, 64))];

    github_pat: "github-pat", NOTE,
        |g| format!("ghp_{}", crc_body(g)),
        |g| vec![format!("ghp_{}", g.s(ALNUM, 35)), format!("ghp-{}", g.s(ALNUM, 36)), format!("xghp_{}", g.s(ALNUM, 36))];
    github_oauth: "github-oauth", NOTE,
        |g| format!("gho_{}", crc_body(g)),
        |g| vec![format!("gho_{}", g.s(ALNUM, 35)), format!("gho_{}", g.s(B64URL, 10))];
    github_app_token: "github-app-token", NOTE,
        |g| { let p = g.pick(&["ghu_", "ghs_"]); format!("{p}{}", crc_body(g)) },
        |g| vec![format!("ghs_{}", g.s(ALNUM, 35)), format!("ghx_{}", g.s(ALNUM, 36))];
    github_refresh_token: "github-refresh-token", NOTE,
        |g| format!("ghr_{}", crc_body(g)),
        |g| vec![format!("ghr_{}", g.s(ALNUM, 20))];
    github_fine_grained_pat: "github-fine-grained-pat", NOTE,
        |g| format!("github_pat_{}_{}", g.s(ALNUM, 22), g.s(ALNUM, 59)),
        |g| vec![format!("github_pat_{}", g.s(ALNUM, 12)), format!("github_pat{}", g.s(ALNUM, 40))];
    gitlab_pat: "gitlab-pat", NOTE,
        |g| format!("glpat-{}", g.s(B64URL, 20)),
        |g| vec![format!("glpat-{}", g.s(ALNUM, 19)), format!("glpat_{}", g.s(ALNUM, 20))];
    gitlab_pat_routable: "gitlab-pat-routable", NOTE,
        |g| format!("glpat-{}.{}", g.s(B64URL, 27 + g.below(30)), g.s(LALNUM, 9)),
        |g| vec![format!("glpat-{}.{}", g.s(ALNUM, 30), g.s(LALNUM, 8)), format!("glpat-{}.{}", g.s(ALNUM, 20), g.s(LALNUM, 9))];
    gitlab_deploy_token: "gitlab-deploy-token", NOTE,
        |g| format!("gldt-{}", g.s(B64URL, 20)),
        |g| vec![format!("gldt-{}", g.s(ALNUM, 19))];
    gitlab_runner_token: "gitlab-runner-token", NOTE,
        |g| { if g.below(2) == 0 { format!("glrt-{}", g.s(B64URL, 20)) } else { format!("GR1348941{}", g.s(B64URL, 20)) } },
        |g| vec![format!("glrt-{}", g.s(ALNUM, 19)), format!("GR1348942{}", g.s(ALNUM, 20))];
    gitlab_cicd_job_token: "gitlab-cicd-job-token", NOTE,
        |g| format!("glcbt-{}_{}", g.s(ALNUM, 1 + g.below(5)), g.s(B64URL, 20)),
        |g| vec![format!("glcbt-{}_{}", g.s(ALNUM, 3), g.s(ALNUM, 19)), format!("glcbt-{}_{}", g.s(ALNUM, 6), g.s(ALNUM, 20))];
    gitlab_other_token: "gitlab-other-token", NOTE,
        |g| { let p = g.pick(&["glft-", "glffct-", "glsoat-"]); format!("{p}{}", g.s(B64URL, 20)) },
        |g| vec![format!("glft-{}", g.s(ALNUM, 19)), format!("glptt-{}", g.s(HEX, 39))];
    gitlab_session_cookie: "gitlab-session-cookie", NOTE,
        |g| format!("_gitlab_session={}", g.s(LALNUM, 32)),
        |g| vec![format!("_gitlab_session={}", g.s(LALNUM, 31)), format!("x_gitlab_session={}", g.s(LALNUM, 32))];
    bitbucket_app_password: "bitbucket-app-password", NOTE,
        |g| format!("ATBB{}", g.s(ALNUM, 32)),
        |g| vec![format!("ATBB{}", g.s(ALNUM, 31))];
    bitbucket_client_secret: "bitbucket-client-secret", "BITBUCKET_OAUTH",
        |g| g.s("abcdefABCDEF0123456789=_-", 64),
        |g| vec![g.s(ALNUM, 63)];
    atlassian_api_token: "atlassian-api-token", NOTE,
        |g| format!("ATATT3{}", g.s(B64URLEQ, 186)),
        |g| vec![format!("ATATT3{}", g.s(ALNUM, 185)), format!("ATATT4{}", g.s(ALNUM, 186))];
    atlassian_api_token_legacy: "atlassian-api-token-legacy", "JIRA",
        |g| g.s(LALNUM, 24),
        |g| vec![g.s(LALNUM, 23), g.s(UALNUM, 24)];
    sourcegraph_access_token: "sourcegraph-access-token", NOTE,
        |g| { if g.below(2) == 0 { format!("sgp_{}_{}", g.s(HEX, 16), g.s(HEX, 40)) } else { format!("sgp_{}", g.s(HEX, 40)) } },
        |g| vec![format!("sgp_{}", g.s(HEX, 39)), format!("sgp_{}", g.s(LALNUM, 40))];
    sourcegraph_access_token_legacy: "sourcegraph-access-token-legacy", "SOURCEGRAPH",
        |g| g.s(HEX, 40),
        |g| vec![g.s(HEX, 39)];
    travisci_access_token: "travisci-access-token", "TRAVIS",
        |g| g.s(LALNUM, 22),
        |g| vec![g.s(LALNUM, 21)];
    droneci_access_token: "droneci-access-token", "DRONECI",
        |g| g.s(LALNUM, 32),
        |g| vec![g.s(LALNUM, 31)];
    codecov_access_token: "codecov-access-token", "CODECOV",
        |g| { if g.below(2) == 0 { g.s(LALNUM, 32) } else { g.uuid() } },
        |g| vec![g.s(LALNUM, 33)];
    sonar_api_token: "sonar-api-token", NOTE,
        |g| { let p = g.pick(&["squ_", "sqp_", "sqa_"]); format!("{p}{}", g.s(HEX, 40)) },
        |g| vec![format!("squ_{}", g.s(HEX, 39)), format!("sqx_{}", g.s(HEX, 40))];
    sonar_api_token_legacy: "sonar-api-token-legacy", "SONAR_LOGIN",
        |g| g.s(B64URL, 40),
        |g| vec![g.s(ALNUM, 39)];
    harness_api_key: "harness-api-key", NOTE,
        |g| { let p = g.pick(&["pat", "sat"]); format!("{p}.{}.{}.{}", g.s(B64URL, 22), g.s(ALNUM, 24), g.s(ALNUM, 20)) },
        |g| vec![format!("pat.{}.{}.{}", g.s(ALNUM, 22), g.s(ALNUM, 24), g.s(ALNUM, 19))];
    octopus_deploy_api_key: "octopus-deploy-api-key", NOTE,
        |g| format!("API-{}", g.s(UALNUM, 26)),
        |g| vec![format!("API-{}", g.s(UALNUM, 25)), "API-AAAAAAAAAAAAAAAAAAAAAAAAAA".into()];
    artifactory_api_key: "artifactory-api-key", NOTE,
        |g| { if g.below(2) == 0 { format!("AKCp{}", g.s(ALNUM, 69)) } else { format!("cmVmd{}", g.s(ALNUM, 59)) } },
        |g| vec![format!("AKCp{}", g.s(ALNUM, 68)), format!("cmVmd{}", g.s(ALNUM, 58))];
    jfrog_identity_token: "jfrog-identity-token", "ARTIFACTORY_IDENTITY",
        |g| { let n = if g.below(2) == 0 { 64 } else { 73 }; g.s(LALNUM, n) },
        |g| vec![g.s(LALNUM, 63)];

    npm_access_token: "npm-access-token", NOTE,
        |g| format!("npm_{}", crc_body(g)),
        |g| vec![format!("npm_{}", g.s(ALNUM, 35)), format!("npm_{}", g.s(ALNUM, 37))];
    pypi_upload_token: "pypi-upload-token", NOTE,
        |g| format!("pypi-AgEIcHlwaS5vcmc{}", g.s(B64URL, 60 + g.below(100))),
        |g| vec![format!("pypi-AgEIcHlwaS5vcmc{}", g.s(ALNUM, 40)), format!("pypi-{}", g.s(ALNUM, 80))];
    rubygems_api_token: "rubygems-api-token", NOTE,
        |g| format!("rubygems_{}", g.s(HEX, 48)),
        |g| vec![format!("rubygems_{}", g.s(HEX, 47))];
    nuget_api_key: "nuget-api-key", NOTE,
        |g| format!("oy2{}", g.s(LALNUM, 43)),
        |g| vec![format!("oy2{}", g.s(LALNUM, 42)), format!("oy3{}", g.s(LALNUM, 43))];
    crates_io_api_token: "crates-io-api-token", NOTE,
        |g| format!("cio{}", g.s(ALNUM, 32)),
        |g| vec![format!("cio{}", g.s(ALNUM, 31))];
    clojars_api_token: "clojars-api-token", NOTE,
        |g| format!("CLOJARS_{}", g.s(LALNUM, 60)),
        |g| vec![format!("CLOJARS_{}", g.s(LALNUM, 59))];
    docker_hub_token: "docker-hub-token", NOTE,
        |g| { let p = g.pick(&["dckr_pat_", "dckr_oat_"]); format!("{p}{}", g.s(B64URL, 27)) },
        |g| vec![format!("dckr_pat_{}", g.s(ALNUM, 26)), format!("dckr_xxx_{}", g.s(ALNUM, 27))];
    sidekiq_secret: "sidekiq-secret", "BUNDLE_GEMS__CONTRIBSYS__COM",
        |g| format!("{}:{}", g.s(HEX, 8), g.s(HEX, 8)),
        |g| vec![format!("{}:{}", g.s(HEX, 8), g.s(HEX, 7))];

    anthropic_api_key: "anthropic-api-key", NOTE,
        |g| format!("sk-ant-api03-{}AA", g.s(B64URL, 93)),
        |g| vec![format!("sk-ant-api03-{}", g.s(ALNUM, 12)), format!("sk-ant-api04-{}", g.s(ALNUM, 12))];
    anthropic_admin_api_key: "anthropic-admin-api-key", NOTE,
        |g| format!("sk-ant-admin01-{}AA", g.s(B64URL, 93)),
        |g| vec![format!("sk-ant-admin01-{}", g.s(ALNUM, 10))];
    anthropic_key: "anthropic-key", NOTE,
        |g| format!("sk-ant-oat01-{}", g.s(B64URL, 80)),
        |g| vec![format!("sk-ant-{}", g.s(ALNUM, 12)), format!("sk-anx-{}", g.s(ALNUM, 40))];
    openai_api_key: "openai-api-key", NOTE,
        |g| match g.below(3) {
            0 => format!("sk-proj-{}", g.s(B64URL, 120)),
            1 => format!("sk-{}T3BlbkFJ{}", g.s(ALNUM, 20), g.s(ALNUM, 20)),
            _ => format!("sk-{}", g.s(ALNUM, 48)),
        },
        |g| vec![format!("sk-proj-{}", g.s(ALNUM, 8)), "sk-learn-tutorial-notebooks-for-everyone".into(), format!("sk-{}", g.s(ALNUM, 10))];
    huggingface_access_token: "huggingface-access-token", NOTE,
        |g| format!("hf_{}", g.s(ALPHA, 34)),
        |g| vec![format!("hf_{}", g.s(ALPHA, 20)), format!("hf-{}", g.s(ALPHA, 34))];
    huggingface_organization_api_token: "huggingface-organization-api-token", NOTE,
        |g| format!("api_org_{}", g.s(ALPHA, 34)),
        |g| vec![format!("api_org_{}", g.s(ALPHA, 33)), format!("api_org_{}", g.s(ALNUM, 34))];
    perplexity_api_key: "perplexity-api-key", NOTE,
        |g| format!("pplx-{}", g.s(ALNUM, 48)),
        |g| vec![format!("pplx-{}", g.s(ALNUM, 47))];
    groq_api_key: "groq-api-key", NOTE,
        |g| format!("gsk_{}", g.s(ALNUM, 52)),
        |g| vec![format!("gsk_{}", g.s(ALNUM, 51))];
    replicate_api_token: "replicate-api-token", NOTE,
        |g| format!("r8_{}", g.s(ALNUM, 37)),
        |g| vec![format!("r8_{}", g.s(ALNUM, 36))];
    xai_api_key: "xai-api-key", NOTE,
        |g| format!("xai-{}", g.s(ALNUM, 80)),
        |g| vec![format!("xai-{}", g.s(ALNUM, 79))];
    langsmith_api_key: "langsmith-api-key", NOTE,
        |g| { let p = g.pick(&["lsv2_pt_", "lsv2_sk_"]); format!("{p}{}_{}", g.s(HEX, 32), g.s(HEX, 10)) },
        |g| vec![format!("lsv2_pt_{}_{}", g.s(HEX, 32), g.s(HEX, 9))];
    cohere_api_token: "cohere-api-token", "COHERE",
        |g| g.s(ALNUM, 40),
        |g| vec![g.s(ALNUM, 39), "a".repeat(40)];
    privateai_api_token: "privateai-api-token", "PRIVATEAI",
        |g| g.s(LALNUM, 32),
        |g| vec![g.s(LALNUM, 31)];
    clickhouse_cloud_api_secret_key: "clickhouse-cloud-api-secret-key", NOTE,
        |g| format!("4b1d{}", g.s(ALNUM, 38)),
        |g| vec![format!("4b1d{}", g.s(ALNUM, 37)), format!("4b1d{}", g.s(HEX, 60))];
    databricks_api_token: "databricks-api-token", NOTE,
        |g| format!("dapi{}", g.s(HEX, 32)),
        |g| vec![format!("dapi{}", g.s(HEX, 31))];

    vault_service_token: "vault-service-token", NOTE,
        |g| format!("hvs.{}", g.s(B64URL, 90 + g.below(30))),
        |g| vec![format!("hvs.{}", g.s(ALNUM, 50))];
    vault_batch_token: "vault-batch-token", NOTE,
        |g| format!("hvb.{}", g.s(B64URL, 138 + g.below(100))),
        |g| vec![format!("hvb.{}", g.s(ALNUM, 60))];
    vault_recovery_token: "vault-recovery-token", NOTE,
        |g| format!("hvr.{}", g.s(B64URL, 90 + g.below(30))),
        |g| vec![format!("hvr.{}", g.s(ALNUM, 60))];
    vault_service_token_legacy: "vault-service-token-legacy", "VAULT",
        |g| format!("s.{}", g.s(ALNUM, 24)),
        |g| vec![format!("s.{}", g.s(ALNUM, 23))];
    hashicorp_tf_api_token: "hashicorp-tf-api-token", NOTE,
        |g| format!("{}.atlasv1.{}", g.s(ALNUM, 14), g.s(B64URLEQ, 60 + g.below(11))),
        |g| vec![format!("{}.atlasv1.{}", g.s(ALNUM, 13), g.s(ALNUM, 65)), format!("{}.atlasv2.{}", g.s(ALNUM, 14), g.s(ALNUM, 65))];
    doppler_api_token: "doppler-api-token", NOTE,
        |g| { let p = g.pick(&["dp.pt.", "dp.ct.", "dp.sa."]); format!("{p}{}", g.s(ALNUM, 43)) },
        |g| vec![format!("dp.pt.{}", g.s(ALNUM, 20)), format!("dp.xx.{}", g.s(ALNUM, 43))];
    onepassword_secret_key: "1password-secret-key", NOTE,
        |g| format!("A3-{}-{}-{}-{}-{}", g.s(UALNUM, 6), g.s(UALNUM, 11), g.s(UALNUM, 5), g.s(UALNUM, 5), g.s(UALNUM, 5)),
        |g| vec![format!("A3-{}-{}-{}-{}-{}", g.s(UALNUM, 6), g.s(UALNUM, 11), g.s(UALNUM, 5), g.s(UALNUM, 5), g.s(UALNUM, 4))];
    onepassword_service_account_token: "1password-service-account-token", NOTE,
        |g| format!("ops_eyJ{}", g.s(B64, 300)),
        |g| vec![format!("ops_eyJ{}", g.s(B64, 50))];
    age_secret_key: "age-secret-key", NOTE,
        |g| format!("AGE-SECRET-KEY-1{}", g.s(BECH32, 58)),
        |g| vec![format!("AGE-SECRET-KEY-1{}", g.s(BECH32, 57)), format!("AGE-SECRET-KEY-1{}", g.s(LALNUM, 58))];
    pulumi_api_token: "pulumi-api-token", NOTE,
        |g| format!("pul-{}", g.s(HEX, 40)),
        |g| vec![format!("pul-{}", g.s(HEX, 39))];
    infracost_api_token: "infracost-api-token", NOTE,
        |g| format!("ico-{}", g.s(ALNUM, 32)),
        |g| vec![format!("ico-{}", g.s(ALNUM, 31))];
    defined_networking_api_token: "defined-networking-api-token", NOTE,
        |g| format!("dnkey-{}-{}", g.s(B64URL, 26), g.s(B64URL, 52)),
        |g| vec![format!("dnkey-{}-{}", g.s(ALNUM, 26), g.s(ALNUM, 51))];
    authress_service_client_access_key: "authress-service-client-access-key", NOTE,
        |g| { let p = g.pick(&["sc", "ext", "scauth", "authress"]); format!("{p}_{}.{}.acc_{}.{}", g.s(ALNUM, 10), g.s(ALNUM, 5), g.s(LALNUM, 20), g.s(B64, 40)) },
        |g| vec![format!("sc_{}.{}.acx_{}.{}", g.s(ALNUM, 10), g.s(ALNUM, 5), g.s(LALNUM, 20), g.s(B64, 40))];
    jwt: "jwt", NOTE,
        |g| format!("eyJ{}.eyJ{}.{}", g.s(B64URL, 30), g.s(B64URL, 60), g.s(B64URL, 43)),
        |g| vec![format!("eyJ{}.{}.{}", g.s(ALNUM, 30), g.s(ALNUM, 60), g.s(ALNUM, 43)), format!("eyJ{}", g.s(ALNUM, 9))];
    jwt_base64: "jwt-base64", NOTE,
        |g| format!("ZXlK{}", g.s(B64, 80)),
        |g| vec![format!("ZXlK{}", g.s(B64, 30)), format!("ZXlK{}", "A".repeat(60))];
}
