//! `type = "slack"`: `X-Slack-Signature: v0=<hex>`, the HMAC-SHA256 of
//! `v0:{X-Slack-Request-Timestamp}:{body}` under the app's signing secret; the timestamp must be
//! within the tolerance of the relay's clock.

use actix_web::http::header::HeaderName;

use super::hmac::{HmacScheme, SignedContent};
use crate::secret::Secret;
use crate::settings::{Algorithm, Encoding};

pub const SIGNATURE_HEADER: &str = "x-slack-signature";
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";

/// The challenge of a Slack Events API `url_verification` request (`{"type":
/// "url_verification", "challenge": "..."}`), which Slack sends, signed, when a Request URL is
/// saved; it expects the challenge back.
pub fn url_verification_challenge(document: &serde_json::value::RawValue) -> Option<String> {
    use crate::json::{text, Pointer};
    // Looked up as every body field is (a duplicate key: its last occurrence).
    let field = |name: &str| Pointer::parse(name).ok()?.lookup(document);
    let kind = field("/type")?;
    if !kind.get().starts_with('"') || text(kind) != "url_verification" {
        return None;
    }
    let challenge = field("/challenge")?;
    challenge
        .get()
        .starts_with('"')
        .then(|| text(challenge).into_owned())
}

pub fn scheme(keys: Vec<Secret>, tolerance_secs: u64) -> HmacScheme {
    HmacScheme {
        header: HeaderName::from_static(SIGNATURE_HEADER),
        also: None,
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Hex,
        prefix: "v0=".to_owned(),
        signed: SignedContent::timestamped("v0:", ":"),
        timestamp: Some((HeaderName::from_static(TIMESTAMP_HEADER), tolerance_secs)),
        keys,
    }
}

#[cfg(test)]
mod handshake_tests {
    use super::url_verification_challenge;

    fn challenge(body: &str) -> Option<String> {
        url_verification_challenge(crate::json::validate(body.as_bytes()).unwrap())
    }

    #[test]
    fn url_verification_is_read_as_every_body_field_is() {
        assert_eq!(
            challenge(r#"{"type":"url_verification","challenge":"c1"}"#).as_deref(),
            Some("c1")
        );
        // A duplicate key counts by its last occurrence, escapes are text.
        assert_eq!(
            challenge(
                r#"{"type":"event_callback","type":"url\u005fverification","challenge":"c2"}"#
            )
            .as_deref(),
            Some("c2")
        );
        assert_eq!(
            challenge(r#"{"type":"event_callback","challenge":"c"}"#),
            None
        );
        assert_eq!(
            challenge(r#"{"type":"url_verification","challenge":1}"#),
            None
        );
        assert_eq!(
            challenge(r#"{"type":["url_verification"],"challenge":"c"}"#),
            None
        );
    }
}
