//! Cases for messaging, collaboration, e-mail, observability, payments and
//! other SaaS formats.

use crate::gen::*;
use crate::{cases, NOTE};

cases! {
    slack_bot_token: "slack-bot-token", NOTE,
        |g| format!("xoxb-{}-{}-{}", g.s(DIGIT, 12), g.s(DIGIT, 13), g.s(ALNUM, 24)),
        |g| vec![format!("xoxb-{}", g.s(DIGIT, 9)), format!("xoxq-{}-{}", g.s(DIGIT, 12), g.s(ALNUM, 24))];
    slack_user_token: "slack-user-token", NOTE,
        |g| format!("xoxp-{}-{}-{}-{}", g.s(DIGIT, 12), g.s(DIGIT, 12), g.s(DIGIT, 13), g.s(HEX, 32)),
        |g| vec![format!("xoxp-{}", g.s(DIGIT, 5))];
    slack_app_token: "slack-app-token", NOTE,
        |g| format!("xapp-1-{}-{}-{}", g.s(UALNUM, 11), g.s(DIGIT, 13), g.s(HEX, 64)),
        |g| vec![format!("xapp-{}", g.s(DIGIT, 4))];
    slack_config_token: "slack-config-token", NOTE,
        |g| { let p = g.pick(&["xoxe.xoxp-1-", "xoxe.xoxb-1-", "xoxe-1-"]); format!("{p}{}", g.s(UALNUM, 146)) },
        |g| vec![format!("xoxe-{}", g.s(DIGIT, 3))];
    slack_legacy_token: "slack-legacy-token", NOTE,
        |g| { let p = g.pick(&["xoxa-", "xoxr-", "xoxo-", "xoxs-"]); format!("{p}{}-{}", g.s(DIGIT, 10), g.s(ALNUM, 30)) },
        |g| vec![format!("xoxs-{}", g.s(DIGIT, 6))];
    slack_webhook_url: "slack-webhook-url", NOTE,
        |g| format!("https://hooks.slack.com/services/T{}/B{}/{}", g.s(UALNUM, 10), g.s(UALNUM, 10), g.s(ALNUM, 24)),
        |g| vec![format!("https://hooks.slack.com/services/T{}", g.s(UALNUM, 10)), "https://api.slack.com/apps".into()];
    microsoft_teams_webhook: "microsoft-teams-webhook", NOTE,
        |g| format!("https://{}.webhook.office.com/webhookb2/{}@{}/IncomingWebhook/{}/{}", g.s(LALNUM, 8), g.uuid(), g.uuid(), g.s(LALNUM, 32), g.uuid()),
        |g| vec![format!("https://{}.webhook.office.com/webhookb2/{}@{}/IncomingWebhook/{}/{}", g.s(LALNUM, 8), g.uuid(), g.uuid(), g.s(LALNUM, 31), g.uuid())];
    discord_api_token: "discord-api-token", "DISCORD_BOT",
        |g| { if g.below(2) == 0 { g.s(HEX, 64) } else { g.s(B64URL, 32) } },
        |g| vec![g.s(HEX, 63), g.s(ALNUM, 33)];
    telegram_bot_api_token: "telegram-bot-api-token", NOTE,
        |g| format!("{}:A{}", g.s(DIGIT, 10), g.s(B64URL, 34)),
        |g| vec![format!("{}:A{}", g.s(DIGIT, 10), g.s(ALNUM, 33)), format!("{}:B{}", g.s(DIGIT, 10), g.s(ALNUM, 34)), format!("{}:A{}", g.s(DIGIT, 4), g.s(ALNUM, 34))];
    mattermost_access_token: "mattermost-access-token", "MATTERMOST",
        |g| g.s(LALNUM, 26),
        |g| vec![g.s(LALNUM, 25)];
    gitter_access_token: "gitter-access-token", "GITTER",
        |g| g.s(B64URL, 40),
        |g| vec![g.s(ALNUM, 41)];
    twitter_bearer_token: "twitter-bearer-token", NOTE,
        |g| format!("{}{}", "A".repeat(22), g.s("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789%", 80 + g.below(21))),
        |g| vec![format!("{}{}", "A".repeat(22), g.s(ALNUM, 70))];
    twitter_api_secret: "twitter-api-secret", "TWITTER",
        |g| match g.below(3) {
            0 => g.s(LALNUM, 25),
            1 => g.s(LALNUM, 50),
            _ => format!("{}-{}", g.s(DIGIT, 19), g.s(ALNUM, 30)),
        },
        |g| vec![g.s(LALNUM, 44), g.s(LALNUM, 24)];
    facebook_page_access_token: "facebook-page-access-token", NOTE,
        |g| { let p = g.pick(&["EAAM", "EAAC"]); format!("{p}{}", g.s(ALNUM, 120)) },
        |g| vec![format!("EAAM{}", g.s(ALNUM, 90))];
    facebook_secret: "facebook-secret", "FACEBOOK",
        |g| { if g.below(2) == 0 { g.s(HEX, 32) } else { format!("{}|{}", g.s(DIGIT, 15), g.s(B64URL, 32)) } },
        |g| vec![g.s(HEX, 31)];
    linkedin_client_secret: "linkedin-client-secret", "LINKEDIN",
        |g| g.s(ALNUM, 16),
        |g| vec![g.s(ALNUM, 15), "aaaaaaaabbbbbbbb".into()];
    twitch_api_token: "twitch-api-token", "TWITCH",
        |g| g.s(LALNUM, 30),
        |g| vec![g.s(LALNUM, 29)];
    intercom_api_key: "intercom-api-key", "INTERCOM",
        |g| g.s(B64URLEQ, 60),
        |g| vec![g.s(ALNUM, 59)];
    zendesk_secret_key: "zendesk-secret-key", "ZENDESK",
        |g| g.s(ALNUM, 40),
        |g| vec![g.s(ALNUM, 39)];
    notion_api_token: "notion-api-token", NOTE,
        |g| { if g.below(2) == 0 { format!("ntn_{}{}", g.s(DIGIT, 11), g.s(ALNUM, 35)) } else { format!("secret_{}", g.s(ALNUM, 43)) } },
        |g| vec![format!("ntn_{}{}", g.s(DIGIT, 11), g.s(ALNUM, 34)), format!("secret_{}", g.s(ALNUM, 42))];
    linear_api_key: "linear-api-key", NOTE,
        |g| format!("lin_api_{}", g.s(ALNUM, 40)),
        |g| vec![format!("lin_api_{}", g.s(ALNUM, 39))];
    linear_client_secret: "linear-client-secret", "LINEAR_OAUTH",
        |g| g.s(HEX, 32),
        |g| vec![g.s(HEX, 31)];
    asana_client_secret: "asana-client-secret", "ASANA",
        |g| g.s(LALNUM, 32),
        |g| vec![g.s(LALNUM, 31)];
    airtable_personal_access_token: "airtable-personal-access-token", NOTE,
        |g| format!("pat{}.{}", g.s(ALNUM, 14), g.s(HEX, 64)),
        |g| vec![format!("pat{}.{}", g.s(ALNUM, 14), g.s(HEX, 63)), format!("pat{}.{}", g.s(ALNUM, 13), g.s(HEX, 64))];
    airtable_api_key: "airtable-api-key", "AIRTABLE",
        |g| g.s(ALNUM, 17),
        |g| vec![g.s(ALNUM, 16)];
    figma_pat: "figma-pat", NOTE,
        |g| format!("figd_{}", g.s(B64URL, 40)),
        |g| vec![format!("figd_{}", g.s(ALNUM, 20))];
    typeform_api_token: "typeform-api-token", NOTE,
        |g| format!("tfp_{}", g.s("abcdefghABCDEFGH0123456789_.=-", 59)),
        |g| vec![format!("tfp_{}", g.s(ALNUM, 58))];
    beamer_api_token: "beamer-api-token", "BEAMER",
        |g| format!("b_{}", g.s(B64URLEQ, 44)),
        |g| vec![format!("b_{}", g.s(ALNUM, 43))];
    frameio_api_token: "frameio-api-token", NOTE,
        |g| format!("fio-u-{}", g.s(B64URLEQ, 64)),
        |g| vec![format!("fio-u-{}", g.s(ALNUM, 63))];
    readme_api_token: "readme-api-token", NOTE,
        |g| format!("rdme_{}", g.s(LALNUM, 70)),
        |g| vec![format!("rdme_{}", g.s(LALNUM, 69))];
    postman_api_token: "postman-api-token", NOTE,
        |g| format!("PMAK-{}-{}", g.s(HEX, 24), g.s(HEX, 34)),
        |g| vec![format!("PMAK-{}-{}", g.s(HEX, 24), g.s(HEX, 33))];
    rapidapi_access_token: "rapidapi-access-token", "RAPIDAPI",
        |g| g.s(B64URL, 50),
        |g| vec![g.s(ALNUM, 49)];
    nytimes_access_token: "nytimes-access-token", "NYTIMES",
        |g| g.s(B64URL, 32),
        |g| vec![g.s(ALNUM, 31)];
    settlemint_access_token: "settlemint-access-token", NOTE,
        |g| { let p = g.pick(&["sm_aat_", "sm_pat_", "sm_sat_"]); format!("{p}{}", g.s(ALNUM, 16)) },
        |g| vec![format!("sm_pat_{}", g.s(ALNUM, 15))];
    maxmind_license_key: "maxmind-license-key", NOTE,
        |g| format!("{}_{}_mmk", g.s(ALNUM, 6), g.s(ALNUM, 29)),
        |g| vec![format!("{}_{}_mmk", g.s(ALNUM, 6), g.s(ALNUM, 28)), format!("{}_{}_mmx", g.s(ALNUM, 6), g.s(ALNUM, 29))];
    intra42_client_secret: "intra42-client-secret", NOTE,
        |g| { let p = g.pick(&["s-s4t2ud-", "s-s4t2af-"]); format!("{p}{}", g.s(HEX, 64)) },
        |g| vec![format!("s-s4t2ud-{}", g.s(HEX, 63))];
    adafruit_api_key: "adafruit-api-key", NOTE,
        |g| format!("aio_{}", g.s(ALNUM, 28)),
        |g| vec![format!("aio_{}", g.s(ALNUM, 27))];
    adafruit_api_key_legacy: "adafruit-api-key-legacy", "ADAFRUIT_IO",
        |g| g.s(B64URL, 32),
        |g| vec![g.s(ALNUM, 31)];
    adobe_client_secret: "adobe-client-secret", NOTE,
        |g| format!("p8e-{}", g.s(ALNUM, 32)),
        |g| vec![format!("p8e-{}", g.s(ALNUM, 31))];
    etsy_access_token: "etsy-access-token", "ETSY",
        |g| g.s(LALNUM, 24),
        |g| vec![g.s(LALNUM, 23)];
    flickr_access_token: "flickr-access-token", "FLICKR",
        |g| g.s(LALNUM, 32),
        |g| vec![g.s(LALNUM, 31)];
    contentful_delivery_api_token: "contentful-delivery-api-token", "CONTENTFUL_DELIVERY",
        |g| g.s(B64URL, 43),
        |g| vec![g.s(ALNUM, 42)];
    algolia_api_key: "algolia-api-key", "ALGOLIA",
        |g| g.s(LALNUM, 32),
        |g| vec![g.s(LALNUM, 31), g.s(UALNUM, 32)];
    squarespace_access_token: "squarespace-access-token", "SQUARESPACE",
        |g| g.uuid(),
        |g| vec![g.s(HEX, 32)];
    hubspot_api_key: "hubspot-api-key", "HUBSPOT",
        |g| { if g.below(2) == 0 { g.uuid() } else { format!("pat-na1-{}", g.uuid()) } },
        |g| vec![g.s(HEX, 36)];
    launchdarkly_access_token: "launchdarkly-access-token", "LAUNCHDARKLY",
        |g| g.s(B64URL, 40),
        |g| vec![g.s(ALNUM, 39)];
    okta_access_token: "okta-access-token", "OKTA",
        |g| format!("00{}", g.s(B64URLEQ, 40)),
        |g| vec![format!("00{}", g.s(ALNUM, 39)), format!("01{}", g.s(ALNUM, 40))];
    looker_client_secret: "looker-client-secret", "LOOKER",
        |g| g.s(LALNUM, 24),
        |g| vec![g.s(LALNUM, 23)];
    messagebird_api_token: "messagebird-api-token", "MESSAGEBIRD",
        |g| g.s(LALNUM, 25),
        |g| vec![g.s(LALNUM, 24)];
    sendbird_access_token: "sendbird-access-token", "SENDBIRD",
        |g| g.s(HEX, 40),
        |g| vec![g.s(HEX, 39)];
    snyk_api_token: "snyk-api-token", "SNYK",
        |g| g.uuid(),
        |g| vec![g.s(HEX, 36)];

    sendgrid_api_token: "sendgrid-api-token", NOTE,
        |g| format!("SG.{}.{}", g.s(B64URL, 22), g.s(B64URL, 43)),
        |g| vec![format!("SG.{}.{}", g.s(ALNUM, 22), g.s(ALNUM, 42)), format!("SG.{}", g.s(ALNUM, 66))];
    sendinblue_api_token: "sendinblue-api-token", NOTE,
        |g| { let p = g.pick(&["xkeysib-", "xsmtpsib-"]); format!("{p}{}-{}", g.s(HEX, 64), g.s(ALNUM, 16)) },
        |g| vec![format!("xkeysib-{}-{}", g.s(HEX, 64), g.s(ALNUM, 15))];
    mailchimp_api_key: "mailchimp-api-key", NOTE,
        |g| format!("{}-us{}", g.s(HEX, 32), g.s(DIGIT, 2)),
        |g| vec![format!("{}-us{}", g.s(HEX, 31), g.s(DIGIT, 2)), format!("{}-eu{}", g.s(HEX, 32), g.s(DIGIT, 2))];
    mailgun_private_api_token: "mailgun-private-api-token", "MAILGUN",
        |g| { if g.below(2) == 0 { format!("key-{}", g.s(HEX, 32)) } else { format!("{}-{}-{}", g.s("abcdefgh0123456789", 32), g.s("abcdefgh0123456789", 8), g.s("abcdefgh0123456789", 8)) } },
        |g| vec![format!("key-{}", g.s(HEX, 31))];
    twilio_api_key: "twilio-api-key", NOTE,
        |g| format!("SK{}", g.s(HEX, 32)),
        |g| vec![format!("SK{}", g.s(HEX, 31)), format!("SK{}", g.s(HEX, 33)), format!("SK{}", "0".repeat(32))];
    twilio_auth_token: "twilio-auth-token", "TWILIO",
        |g| g.s(HEX, 32),
        |g| vec![g.s(HEX, 31)];
    new_relic_user_api_key: "new-relic-user-api-key", NOTE,
        |g| format!("NRAK-{}", g.s(UALNUM, 27)),
        |g| vec![format!("NRAK-{}", g.s(UALNUM, 26))];
    new_relic_browser_api_token: "new-relic-browser-api-token", NOTE,
        |g| format!("NRJS-{}", g.s(HEX, 19)),
        |g| vec![format!("NRJS-{}", g.s(HEX, 18))];
    new_relic_insert_key: "new-relic-insert-key", NOTE,
        |g| format!("NRII-{}", g.s(UALNUM, 32)),
        |g| vec![format!("NRII-{}", g.s(UALNUM, 31))];
    datadog_access_token: "datadog-access-token", "DATADOG",
        |g| { if g.below(2) == 0 { g.s(HEX, 32) } else { g.s(LALNUM, 40) } },
        |g| vec![g.s(HEX, 31), g.s(LALNUM, 39)];
    sentry_user_token: "sentry-user-token", NOTE,
        |g| format!("sntryu_{}", g.s(HEX, 64)),
        |g| vec![format!("sntryu_{}", g.s(HEX, 63))];
    sentry_org_token: "sentry-org-token", NOTE,
        |g| format!("sntrys_eyJ{}_{}", g.s(B64, 60), g.s(B64, 43)),
        |g| vec![format!("sntrys_eyJ{}_{}", g.s(B64, 60), g.s(B64, 42)), format!("sntrys_{}", g.s(ALNUM, 80))];
    sentry_access_token: "sentry-access-token", "SENTRY",
        |g| g.s(HEX, 64),
        |g| vec![g.s(HEX, 63)];
    grafana_api_key: "grafana-api-key", NOTE,
        |g| format!("eyJrIjoi{}", g.s(B64, 80)),
        |g| vec![format!("eyJrIjoi{}", g.s(B64, 60))];
    grafana_cloud_api_token: "grafana-cloud-api-token", NOTE,
        |g| format!("glc_{}", g.s(B64, 40 + g.below(100))),
        |g| vec![format!("glc_{}", g.s(B64, 31))];
    grafana_service_account_token: "grafana-service-account-token", NOTE,
        |g| format!("glsa_{}_{}", g.s(ALNUM, 32), g.s(HEX, 8)),
        |g| vec![format!("glsa_{}_{}", g.s(ALNUM, 32), g.s(HEX, 7))];
    dynatrace_api_token: "dynatrace-api-token", NOTE,
        |g| format!("dt0c01.{}.{}", g.s(ALNUM, 24), g.s(ALNUM, 64)),
        |g| vec![format!("dt0c01.{}.{}", g.s(ALNUM, 24), g.s(ALNUM, 63))];
    sumologic_access_token: "sumologic-access-token", "SUMO",
        |g| { if g.below(2) == 0 { format!("su{}", g.s(ALNUM, 12)) } else { g.s(ALNUM, 64) } },
        |g| vec![format!("su{}", g.s(ALNUM, 11)), g.s(ALNUM, 63)];
    cisco_meraki_api_key: "cisco-meraki-api-key", "MERAKI_DASHBOARD",
        |g| g.s(HEX, 40),
        |g| vec![g.s(HEX, 39)];
    fastly_api_token: "fastly-api-token", "FASTLY",
        |g| g.s(B64URL, 32),
        |g| vec![g.s(ALNUM, 31)];

    stripe_access_token: "stripe-access-token", NOTE,
        |g| { let p = g.pick(&["sk_live_", "sk_test_", "rk_live_", "rk_test_"]); format!("{p}{}", g.s(ALNUM, 24 + g.below(75))) },
        |g| vec![format!("sk_live_{}", g.s(ALNUM, 10)), "sk_test_integrationsuite".into(), format!("pk_live_{}", g.s(ALNUM, 24))];
    stripe_webhook_secret: "stripe-webhook-secret", NOTE,
        |g| format!("whsec_{}", g.s(ALNUM, 32)),
        |g| vec![format!("whsec_{}", g.s(ALNUM, 15))];
    square_access_token: "square-access-token", NOTE,
        |g| { if g.below(2) == 0 { format!("EAAA{}", g.s(B64URL, 60)) } else { format!("sq0atp-{}", g.s(B64URL, 22)) } },
        |g| vec![format!("EAAA{}", g.s(ALNUM, 21)), format!("sq0atp-{}", g.s(ALNUM, 21))];
    shopify_access_token: "shopify-access-token", NOTE,
        |g| { let p = g.pick(&["shpat_", "shpca_", "shppa_", "shpss_"]); format!("{p}{}", g.s(HEX, 32)) },
        |g| vec![format!("shpat_{}", g.s(HEX, 31)), format!("shpxx_{}", g.s(HEX, 32))];
    braintree_access_token: "braintree-access-token", NOTE,
        |g| { let e = g.pick(&["production", "sandbox"]); format!("access_token${e}${}${}", g.s(LALNUM, 16), g.s(HEX, 32)) },
        |g| vec![format!("access_token$production${}${}", g.s(LALNUM, 16), g.s(HEX, 31))];
    plaid_api_token: "plaid-api-token", NOTE,
        |g| { let e = g.pick(&["sandbox", "development", "production"]); format!("access-{e}-{}", g.uuid()) },
        |g| vec![format!("access-staging-{}", g.uuid())];
    plaid_secret_key: "plaid-secret-key", "PLAID",
        |g| g.s(LALNUM, 30),
        |g| vec![g.s(LALNUM, 29)];
    flutterwave_secret_key: "flutterwave-secret-key", NOTE,
        |g| format!("FLWSECK_TEST-{}-X", g.s(HEX, 32)),
        |g| vec![format!("FLWPUBK_TEST-{}-X", g.s(HEX, 32))];
    gocardless_api_token: "gocardless-api-token", "GOCARDLESS",
        |g| format!("live_{}", g.s(B64URLEQ, 40)),
        |g| vec![format!("live_{}", g.s(ALNUM, 39))];
    lob_api_key: "lob-api-key", "LOB_LIVE",
        |g| { let e = g.pick(&["live", "test"]); format!("{e}_{}", g.s(HEX, 35)) },
        |g| vec![format!("live_{}", g.s(HEX, 34))];
    easypost_api_token: "easypost-api-token", NOTE,
        |g| { let p = g.pick(&["EZAK", "EZTK"]); format!("{p}{}", g.s(ALNUM, 54)) },
        |g| vec![format!("EZAK{}", g.s(ALNUM, 53))];
    shippo_api_token: "shippo-api-token", NOTE,
        |g| { let e = g.pick(&["live", "test"]); format!("shippo_{e}_{}", g.s(HEX, 40)) },
        |g| vec![format!("shippo_live_{}", g.s(HEX, 39))];
    duffel_api_token: "duffel-api-token", NOTE,
        |g| { let e = g.pick(&["live", "test"]); format!("duffel_{e}_{}", g.s(B64URLEQ, 43)) },
        |g| vec![format!("duffel_test_{}", g.s(ALNUM, 42))];
    coinbase_access_token: "coinbase-access-token", "COINBASE",
        |g| g.s(B64URL, 64),
        |g| vec![g.s(ALNUM, 63)];
    kraken_access_token: "kraken-access-token", "KRAKEN",
        |g| g.s("abcdefghABCDEFGH0123456789/=_+-", 80 + g.below(11)),
        |g| vec![g.s(ALNUM, 79)];
    kucoin_access_token: "kucoin-access-token", "KUCOIN",
        |g| { if g.below(2) == 0 { g.s(HEX, 24) } else { g.uuid() } },
        |g| vec![g.s(HEX, 23)];
    bittrex_access_key: "bittrex-access-key", "BITTREX",
        |g| g.s(LALNUM, 32),
        |g| vec![g.s(LALNUM, 31)];
    finicity_api_token: "finicity-api-token", "FINICITY",
        |g| { if g.below(2) == 0 { g.s(HEX, 32) } else { g.s(LALNUM, 20) } },
        |g| vec![g.s(LALNUM, 19)];
    finnhub_access_token: "finnhub-access-token", "FINNHUB",
        |g| g.s(LALNUM, 20),
        |g| vec![g.s(LALNUM, 19)];
    freshbooks_access_token: "freshbooks-access-token", "FRESHBOOKS",
        |g| g.s(LALNUM, 64),
        |g| vec![g.s(LALNUM, 63)];
    mapbox_secret_token: "mapbox-secret-token", NOTE,
        |g| format!("sk.eyJ{}.{}", g.s(B64URL, 60), g.s(B64URL, 22)),
        |g| vec![format!("pk.eyJ{}.{}", g.s(ALNUM, 60), g.s(ALNUM, 22))];
    mapbox_api_token: "mapbox-api-token", "MAPBOX",
        |g| format!("pk.{}.{}", g.s(ALNUM, 60), g.s(ALNUM, 22)),
        |g| vec![format!("pk.{}.{}", g.s(ALNUM, 60), g.s(ALNUM, 21))];
    planetscale_token: "planetscale-token", NOTE,
        |g| { let p = g.pick(&["pscale_tkn_", "pscale_oauth_", "pscale_pw_"]); format!("{p}{}", g.s(B64URL, 43)) },
        |g| vec![format!("pscale_tkn_{}", g.s(ALNUM, 31))];
    prefect_api_token: "prefect-api-token", NOTE,
        |g| format!("pnu_{}", g.s(ALNUM, 36)),
        |g| vec![format!("pnu_{}", g.s(ALNUM, 35))];
    confluent_secret_key: "confluent-secret-key", "CONFLUENT_CLOUD",
        |g| { if g.below(2) == 0 { g.s(ALNUM, 16) } else { g.s(B64, 64) } },
        |g| vec![g.s(ALNUM, 15)];
    dropbox_api_token: "dropbox-api-token", NOTE,
        |g| format!("sl.{}", g.s(B64URLEQ, 135 + g.below(60))),
        |g| vec![format!("sl.{}", g.s(ALNUM, 40))];
    dropbox_long_lived_api_token: "dropbox-long-lived-api-token", "DROPBOX",
        |g| { if g.below(2) == 0 { format!("{}AAAAAAAAAA{}", g.s(ALNUM, 11), g.s(B64URL, 43)) } else { g.s(LALNUM, 15) } },
        |g| vec![g.s(LALNUM, 14)];
}
