//! One test per credential format of `detectors.rs`, and values of the same shape that must
//! stay untouched.

use super::*;

fn redact(text: &str) -> String {
    Redactor::new(&RedactionConfig::default())
        .unwrap()
        .text(text)
        .into_owned()
}

/// `secret` disappears from `text` and the rest of the text is kept.
#[track_caller]
fn assert_redacted(text: &str, secret: &str) {
    assert!(text.contains(secret), "test text holds the secret");
    let out = redact(text);
    assert!(!out.contains(secret), "{secret} kept in {out}");
    assert_eq!(out, text.replace(secret, REDACTED), "the rest is kept");
}

#[track_caller]
fn assert_untouched(text: &str) {
    assert_eq!(redact(text), text);
}

#[test]
fn card_numbers_are_redacted_written_together_spaced_or_dashed() {
    for card in [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555555555554444",
        "378282246310005",
        "3782 822463 10005",
        "6011111111111117",
        "4000056655665556",
        "4222222222222",
    ] {
        assert_redacted(&format!("charged card {card}, amount 12.50 EUR"), card);
        assert_redacted(&format!(r#"{{"card":"{card}","ok":true}}"#), card);
    }
}

#[test]
fn numbers_that_are_not_card_numbers_are_kept() {
    for text in [
        // 16 digits failing the Luhn check
        "order 4111111111111112 shipped",
        "4111 1111 1111 1112",
        // UUIDs, one of them all digits
        "request 550e8400-e29b-41d4-a716-446655440000 done",
        "id 12345678-1234-5678-1234-567812345678",
        // timestamps in ms and ns, a phone number, a decimal, an order id in a word
        "at 1732982400000 and 1732982400000000000",
        "call +1 555-123-4567 or 0049 30 1234 5678",
        "pi is 3.14159265358979323",
        "ref ORD4111111111111111",
        // trace and span ids
        "trace 5b8efff798038103d269b633813fc60c span 5b8efff798038103",
    ] {
        assert_untouched(text);
    }
}

#[test]
fn aws_access_key_ids_are_redacted() {
    for id in ["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"] {
        assert_redacted(&format!("using key {id} for s3"), id);
    }
    assert_untouched("AKIAIOSFODNN7EXAMPLEX is one character too long");
}

#[test]
fn aws_secret_keys_are_redacted_next_to_aws_context() {
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    assert_redacted(&format!("aws credentials: {secret}"), secret);
    // Next to an access key id, which goes too.
    assert_eq!(
        redact(&format!(
            r#"{{"id":"AKIAIOSFODNN7EXAMPLE","key":"{secret}"}}"#
        )),
        format!(r#"{{"id":"{REDACTED}","key":"{REDACTED}"}}"#)
    );
    assert_redacted(&format!("AWS_SECRET={secret}"), secret);
}

#[test]
fn forty_character_strings_without_aws_context_or_randomness_are_kept() {
    // Without AWS context even a random-looking 40-character string stays (too common).
    assert_untouched("session wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    // A git commit id in an AWS log is hex: not random base64.
    assert_untouched("aws deploy of commit 263207d4c1e7a6f0b5c2d9e8f7a6b5c4d3e2f1a0");
    // Part of a longer path.
    assert_untouched("aws s3 cp s3://bucket/wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY/x");
}

#[test]
fn private_key_blocks_are_redacted_keeping_their_begin_and_end_lines() {
    let body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK";
    for kind in ["RSA ", "", "EC ", "OPENSSH ", "ENCRYPTED "] {
        let block =
            format!("-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----");
        let out = redact(&format!("loaded key {block} from vault"));
        assert_eq!(
            out,
            format!(
                "loaded key -----BEGIN {kind}PRIVATE KEY-----{REDACTED}-----END {kind}PRIVATE KEY----- from vault"
            )
        );
    }
    // Cut off before its END line: everything after BEGIN goes.
    let out = redact(&format!("key: -----BEGIN PRIVATE KEY-----\n{body}"));
    assert_eq!(out, format!("key: -----BEGIN PRIVATE KEY-----{REDACTED}"));
    assert_untouched("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----");
}

#[test]
fn jwts_are_redacted_wherever_they_stand() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    assert_redacted(&format!("GET /callback?id_token={jwt}&state=1"), jwt);
    let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJib3QtNDIifQ.";
    assert_redacted(&format!("unsigned {unsigned} accepted"), unsigned);
    assert_untouched("eyJust kidding.eyJ not a token");
}

#[test]
fn saas_tokens_are_redacted_by_their_prefix() {
    let tokens = [
        "ghp_R2d2C3poLuke0Leia1Han2Chewie3Yoda456",
        "gho_R2d2C3poLuke0Leia1Han2Chewie3Yoda456",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV",
        "glpat-xY3zA9bC8dE7fG6hI5jK",
        "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxp-1234567890-1234567890-1234567890123-0123456789abcdef0123456789abcdef",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "rk_live_51H8cJ2eZvKYlo2C0aBcDeFgHiJ",
        "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
        "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",
        "SK0123456789abcdef0123456789abcdef",
        "npm_R2d2C3poLuke0Leia1Han2Chewie3Yoda456",
        "shpat_0123456789abcdef0123456789abcdef",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",
        "dapi0123456789abcdef0123456789abcdef",
        "sq0atp-AbCdEfGhIjKlMnOpQrStUv",
        "sk-proj-AbCdEfGhIjKlMnOpQrStT3BlbkFJAbCdEfGhIjKlMnOpQrSt",
        "hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    ];
    for token in tokens {
        assert_redacted(&format!("config loaded with {token} ok"), token);
        assert_redacted(&format!(r#"{{"value":"{token}"}}"#), token);
    }
}

#[test]
fn words_sharing_a_token_prefix_are_kept() {
    for text in [
        "sk_live_ is the prefix of Stripe live keys",
        "the ghp_ prefix, SKU SK-1234, npm_config_cache=/tmp",
        "SG.example.com and xox-short",
        "task ASK0123 done",
    ] {
        assert_untouched(text);
    }
}

#[test]
fn shaped_secrets_in_attributes_of_logs_are_redacted() {
    let r = Redactor::new(&RedactionConfig::default()).unwrap();
    let mut request = ExportLogsServiceRequest {
        resource_logs: vec![opentelemetry_proto::tonic::logs::v1::ResourceLogs {
            scope_logs: vec![opentelemetry_proto::tonic::logs::v1::ScopeLogs {
                log_records: vec![opentelemetry_proto::tonic::logs::v1::LogRecord {
                    body: Some(AnyValue {
                        value: Some(Value::StringValue("paid with 4111 1111 1111 1111".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    assert_eq!(r.logs(&mut request).values_redacted, 1);
    let body = &request.resource_logs[0].scope_logs[0].log_records[0].body;
    assert_eq!(
        body.as_ref().unwrap().value,
        Some(Value::StringValue(format!("paid with {REDACTED}")))
    );
}
