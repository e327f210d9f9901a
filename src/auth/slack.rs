//! `type = "slack"`: `X-Slack-Signature: v0=<hex>`, the HMAC-SHA256 of
//! `v0:{X-Slack-Request-Timestamp}:{body}` under the app's signing secret; the timestamp must be
//! within the tolerance of the relay's clock.

use actix_web::http::header::HeaderName;

use super::hmac::{HmacScheme, SignedContent};
use super::settings::{Algorithm, Encoding};
use crate::config::Secret;

pub const SIGNATURE_HEADER: &str = "x-slack-signature";
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";

pub fn scheme(keys: Vec<Secret>, tolerance_secs: u64) -> HmacScheme {
    HmacScheme {
        header: HeaderName::from_static(SIGNATURE_HEADER),
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Hex,
        prefix: "v0=".to_owned(),
        signed: SignedContent::timestamped("v0:", ":"),
        timestamp: Some((HeaderName::from_static(TIMESTAMP_HEADER), tolerance_secs)),
        keys,
    }
}
