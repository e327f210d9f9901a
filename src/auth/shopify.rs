//! `type = "shopify"`: `X-Shopify-Hmac-Sha256: <base64>`, the HMAC-SHA256 of the raw body under
//! the app's client secret. No timestamp is signed; `X-Shopify-Event-Id` identifies the event.
//! Shopify's newer deliveries (and its own library) also use the names without `X-`
//! (`shopify-hmac-sha256`, `shopify-topic`, `shopify-event-id`): both spellings are accepted.
//! Only the body is signed: the event id and topic headers are not.

use actix_web::http::header::HeaderName;

use super::hmac::{HmacScheme, SignedContent};
use crate::secret::Secret;
use crate::settings::{Algorithm, Encoding};

pub const SIGNATURE_HEADER: &str = "x-shopify-hmac-sha256";
pub const EVENT_ID_HEADER: &str = "x-shopify-event-id";
pub const TOPIC_HEADER: &str = "x-shopify-topic";
/// The signature header as Shopify's newer deliveries name it.
pub const PLAIN_SIGNATURE_HEADER: &str = "shopify-hmac-sha256";

pub fn scheme(keys: Vec<Secret>) -> HmacScheme {
    HmacScheme {
        header: HeaderName::from_static(SIGNATURE_HEADER),
        also: Some(HeaderName::from_static(PLAIN_SIGNATURE_HEADER)),
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Base64,
        prefix: String::new(),
        signed: SignedContent::body(),
        timestamp: None,
        keys,
    }
}
