//! The generic rule's thresholds (see docs/policy.md): random tokens of 16+
//! characters (20+ for hex) under a credential word are found at least
//! 99.9 % of the time; ordinary values under the same names are not.

use agentbox_secrets::Detector;

use crate::gen::{ALNUM, B64, G, HEX, LALNUM};

fn generic(name: &str, v: &str) -> bool {
    Detector::builtin().env_value(name, v).map(|f| f.rule) == Some("generic-secret")
}

#[test]
fn random_tokens_are_found() {
    for (cs, label, lens) in [
        (ALNUM, "base62", &[16usize, 20, 24, 32, 40, 64][..]),
        (B64, "base64", &[16, 20, 32, 40, 64]),
        (LALNUM, "lower+digits", &[16, 20, 32, 40]),
        (HEX, "hex", &[20, 24, 32, 40, 64]),
    ] {
        for &n in lens {
            let g = G::new(label, n as u64);
            let samples = 2000;
            let found = (0..samples)
                .filter(|_| generic("UPSTREAM_KEY", &g.s(cs, n)))
                .count();
            let rate = found as f64 / samples as f64;
            assert!(
                rate >= 0.999,
                "{label} length {n}: {:.2} % found",
                rate * 100.0
            );
        }
    }
}

#[test]
fn ordinary_values_under_credential_words() {
    for (n, v) in [
        ("SORT_KEY", "created_at"),
        ("GPG_KEY", "7169605F62C751356D054A26A821E680E5FA6305"),
        ("UPSTREAM_KEY", "/etc/upstream/client.key"),
        (
            "UPSTREAM_KEY",
            "https://keys.example.com/.well-known/jwks.json",
        ),
        ("UPSTREAM_KEY", "0d3c1a6e-5b1f-4a8e-9c7d-2f4e6a8b0c1d"),
        ("CACHE_KEY", "my-release-name-2024-07-15"),
        ("API_MODE", "compatibility-layer-v2"),
        ("AUTH_PROVIDER", "keycloak.auth.example.com"),
        ("SIGNING_KEY_ID", "Zq3xR8vLm2NpT5wK9bYc4"),
        ("UPSTREAM_KEY", "${UPSTREAM_KEY_FROM_VAULT}"),
        ("UPSTREAM_KEY", "****************"),
        ("ACCESS_LEVEL", "readonly"),
    ] {
        assert!(!generic(n, v), "{n}={v}");
    }
    // the same random value under a name without a credential word
    assert!(!generic("UPSTREAM", "Zq3xR8vLm2NpT5wK9bYc4"));
    assert!(generic("UPSTREAM_KEY", "Zq3xR8vLm2NpT5wK9bYc4"));
}
