//! `type = "slack"`: `X-Slack-Signature: v0=<hex>`, the HMAC-SHA256 of
//! `v0:{X-Slack-Request-Timestamp}:{body}` under the app's signing secret; the timestamp must be
//! within the tolerance of the relay's clock.

use actix_web::http::header::HeaderName;

use super::hmac::{HmacScheme, SignedContent};
use super::settings::{Algorithm, Encoding};
use crate::config::Secret;

pub const SIGNATURE_HEADER: &str = "x-slack-signature";
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";

/// The challenge of a Slack Events API `url_verification` request (`{"type":
/// "url_verification", "challenge": "..."}`), which Slack sends, signed, when a Request URL is
/// saved; it expects the challenge back.
pub fn url_verification_challenge(document: &serde_json::value::RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Handshake<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        challenge: Option<std::borrow::Cow<'a, str>>,
    }
    let handshake: Handshake<'_> = serde_json::from_str(document.get()).ok()?;
    if handshake.kind != "url_verification" {
        return None;
    }
    handshake.challenge.map(std::borrow::Cow::into_owned)
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
