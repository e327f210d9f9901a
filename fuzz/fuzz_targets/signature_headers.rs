//! Every credential and signature-header parser on arbitrary header values: the Stripe
//! `t=...,v1=...` list, the Standard Webhooks `v1,<base64>` list, the `prefix + hex/base64` of
//! the GitHub (`sha256=`), Slack (`v0=`), Shopify (base64) and generic HMAC schemes, timestamps,
//! `signed` templates, Bearer tokens (header and query) and Basic credentials.
//!
//! Each scheme is driven through the public `Authenticator` with fixed secrets. Checked on every
//! input: no panic; parsed signatures are non-empty and re-encode to what was sent; a request
//! with made-up credentials or signatures is refused (a missing header as `missing_*`); and a
//! request signed by `Authenticator::sign` for the fuzzed body at a fuzzed clock skew verifies
//! exactly when the skew is within the tolerance, and never for another body.

#![no_main]

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Uri;
use actix_web::test::TestRequest;
use actix_web::web::Bytes;
use actix_web::HttpRequest;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

use hookrelay::auth::hmac::{self, HmacScheme, SignedContent};
use hookrelay::auth::Algorithm;
use hookrelay::auth::{
    github, shopify, slack, standard_webhooks, stripe, AuthError, Authenticator, BasicAuth,
    Encoding, Preset, StandardWebhooksScheme, StripeScheme, TokenAuth, TokenLocation, Unverified,
};
use hookrelay::config::Secret;

const TOLERANCE_SECS: u64 = 300;
const KEY: &[u8] = b"fuzz-signing-key-3fT9qLm2";
const TOKEN: &[u8] = b"fuzz-token-Zq8wVb2Lr5Tn";

/// The headers a signature scheme reads; the fuzzed values go into all of them.
const SIGNATURE_HEADERS: &[&str] = &[
    github::SIGNATURE_HEADER,
    shopify::SIGNATURE_HEADER,
    slack::SIGNATURE_HEADER,
    stripe::SIGNATURE_HEADER,
    "x-signature",
];
const TIMESTAMP_HEADERS: &[&str] = &[slack::TIMESTAMP_HEADER, "x-timestamp"];

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    signature: &'a [u8],
    timestamp: &'a [u8],
    id: &'a [u8],
    /// Send the Standard Webhooks headers under their `svix-` names.
    svix: bool,
    authorization: Option<&'a [u8]>,
    query: &'a str,
    /// Seconds between the signer's clock and the relay's.
    skew: i16,
    body: &'a [u8],
}

fn key() -> Vec<Secret> {
    vec![Secret::from_bytes(KEY.to_vec()).expect("a non-empty key")]
}

fn token() -> Vec<Secret> {
    vec![Secret::from_bytes(TOKEN.to_vec()).expect("a non-empty token")]
}

/// One authenticator per scheme, and whether it signs a timestamp.
fn authenticators() -> Vec<(Authenticator, bool)> {
    let generic =
        |algorithm, encoding, prefix: &str, signed: &str, timestamped: bool| Authenticator::Hmac {
            scheme: HmacScheme {
                header: HeaderName::from_static("x-signature"),
                algorithm,
                encoding,
                prefix: prefix.to_owned(),
                signed: SignedContent::parse(signed).expect("a valid template"),
                timestamp: timestamped
                    .then(|| (HeaderName::from_static("x-timestamp"), TOLERANCE_SECS)),
                keys: key(),
            },
            preset: Preset::Generic,
        };
    vec![
        (
            Authenticator::Hmac {
                scheme: github::scheme(key()),
                preset: Preset::Github,
            },
            false,
        ),
        (
            Authenticator::Hmac {
                scheme: shopify::scheme(key()),
                preset: Preset::Shopify,
            },
            false,
        ),
        (
            Authenticator::Hmac {
                scheme: slack::scheme(key(), TOLERANCE_SECS),
                preset: Preset::Slack,
            },
            true,
        ),
        (
            Authenticator::Stripe(StripeScheme {
                keys: key(),
                tolerance_secs: TOLERANCE_SECS,
            }),
            true,
        ),
        (
            Authenticator::StandardWebhooks(StandardWebhooksScheme {
                keys: key(),
                tolerance_secs: TOLERANCE_SECS,
            }),
            true,
        ),
        (
            generic(
                Algorithm::Sha1,
                Encoding::Hex,
                "sha1=",
                "{timestamp}:{body}",
                true,
            ),
            true,
        ),
        (
            generic(Algorithm::Sha512, Encoding::Base64, "", "{body}", false),
            false,
        ),
        (
            Authenticator::Token(TokenAuth {
                location: TokenLocation::Header,
                name: "authorization".to_owned(),
                header: Some(HeaderName::from_static("authorization")),
                secrets: token(),
            }),
            false,
        ),
        (
            Authenticator::Token(TokenAuth {
                location: TokenLocation::Query,
                name: "token".to_owned(),
                header: None,
                secrets: token(),
            }),
            false,
        ),
        (
            Authenticator::Basic(BasicAuth {
                user: "fuzz".to_owned(),
                passwords: token(),
            }),
            false,
        ),
    ]
}

/// The fuzzed header values, where they are valid header values at all.
fn forged_request(input: &Input<'_>) -> Option<HttpRequest> {
    let uri = format!("/hooks/x?{}", input.query);
    Uri::from_str(&uri).ok()?;
    let mut request = TestRequest::post().uri(&uri);
    let mut add = |name: &str, value: &[u8]| {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            let name = HeaderName::try_from(name).expect("a valid header name");
            request = std::mem::take(&mut request).insert_header((name, value));
        }
    };
    for name in SIGNATURE_HEADERS {
        add(name, input.signature);
    }
    for name in TIMESTAMP_HEADERS {
        add(name, input.timestamp);
    }
    let names = if input.svix {
        [
            standard_webhooks::SVIX_ID_HEADER,
            standard_webhooks::SVIX_TIMESTAMP_HEADER,
            standard_webhooks::SVIX_SIGNATURE_HEADER,
        ]
    } else {
        [
            standard_webhooks::ID_HEADER,
            standard_webhooks::TIMESTAMP_HEADER,
            standard_webhooks::SIGNATURE_HEADER,
        ]
    };
    add(names[0], input.id);
    add(names[1], input.timestamp);
    add(names[2], input.signature);
    if let Some(authorization) = input.authorization {
        add("authorization", authorization);
    }
    Some(request.to_http_request())
}

/// The parsers on their own, with what their results promise.
fn check_parsers(value: &str) {
    if let Ok(header) = stripe::parse_header(value) {
        assert!(value.contains(header.timestamp));
        assert!(!header.signatures.is_empty());
        assert!(header
            .signatures
            .iter()
            .all(|signature| !signature.is_empty()));
    }
    if let Ok(signatures) = standard_webhooks::parse_signatures(value) {
        assert!(!signatures.is_empty() && signatures.len() <= 32);
        assert!(signatures.iter().all(|signature| !signature.is_empty()));
    }
    for (prefix, encoding) in [
        ("sha256=", Encoding::Hex),
        ("v0=", Encoding::Hex),
        ("", Encoding::Base64),
        ("sha512=", Encoding::Base64),
        ("", Encoding::Hex),
    ] {
        if let Some(bytes) = hmac::parse_signature(value, prefix, encoding) {
            assert!(!bytes.is_empty());
            let encoded = &value[prefix.len()..];
            assert!(value[..prefix.len()].eq_ignore_ascii_case(prefix));
            let again = encoding.encode(&bytes);
            match encoding {
                Encoding::Hex => assert!(again.eq_ignore_ascii_case(encoded), "{value:?}"),
                Encoding::Base64 => assert_eq!(again, encoded, "{value:?}"),
            }
        }
    }
    if let Ok(template) = SignedContent::parse(value) {
        assert!(value.contains("{body}"));
        assert_eq!(template.uses_timestamp(), value.contains("{timestamp}"));
    }
}

fn signed_request(auth: &Authenticator, body: &[u8], at: SystemTime) -> HttpRequest {
    let signed = auth.sign(body, at);
    let uri = match signed.query {
        Some((name, value)) => format!("/hooks/x?{name}={value}"),
        None => "/hooks/x".to_owned(),
    };
    let mut request = TestRequest::post().uri(&uri);
    for (name, value) in signed.headers {
        request = request.insert_header((
            HeaderName::try_from(name).expect("sign writes valid header names"),
            HeaderValue::try_from(value).expect("sign writes valid header values"),
        ));
    }
    request.to_http_request()
}

fuzz_target!(|input: Input<'_>| {
    for value in [input.signature, input.timestamp, input.id] {
        if let Ok(text) = std::str::from_utf8(value) {
            check_parsers(text);
        }
    }

    let now = SystemTime::now();
    let skew = Duration::from_secs(input.skew.unsigned_abs().into());
    let signed_at = if input.skew >= 0 {
        now + skew
    } else {
        now - skew
    };
    let forged = forged_request(&input);
    let body = || Unverified::new(Bytes::copy_from_slice(input.body));

    for (auth, timestamped) in authenticators() {
        let method = auth.method();
        if let Some(request) = &forged {
            let head = auth.check_head(request);
            let verified = auth.verify(request, body(), now);
            assert!(verified.is_err(), "{method} accepted a forged request");
            if head.is_err() {
                assert_eq!(verified.err(), head.err(), "{method}");
            }
        }

        let request = signed_request(&auth, input.body, signed_at);
        let verified = auth.verify(&request, body(), now).map(|_| ());
        if timestamped && u64::from(input.skew.unsigned_abs()) > TOLERANCE_SECS {
            assert_eq!(verified, Err(AuthError::StaleTimestamp), "{method}");
        } else {
            assert_eq!(verified, Ok(()), "{method}");
        }
        if !matches!(auth, Authenticator::Token(_) | Authenticator::Basic(_)) {
            let mut other = input.body.to_vec();
            other.push(b'\n');
            let verified = auth.verify(&request, Unverified::new(Bytes::from(other)), now);
            assert_eq!(
                verified.err(),
                Some(AuthError::InvalidSignature),
                "{method}"
            );
        }
    }
});
