//! `type = "github"`: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw body under
//! the webhook's secret. GitHub signs no timestamp, so a captured request can be replayed; the
//! delivery id (`X-GitHub-Delivery`) becomes the event id so that consumers can drop repeats.

use actix_web::http::header::HeaderName;

use super::hmac::{HmacScheme, SignedContent};
use crate::secret::Secret;
use crate::settings::{Algorithm, Encoding};

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The SHA-1 signature GitHub still sends beside the SHA-256 one; never forwarded either.
pub const LEGACY_SIGNATURE_HEADER: &str = "x-hub-signature";
pub const DELIVERY_HEADER: &str = "x-github-delivery";
pub const EVENT_HEADER: &str = "x-github-event";

pub fn scheme(keys: Vec<Secret>) -> HmacScheme {
    HmacScheme {
        header: HeaderName::from_static(SIGNATURE_HEADER),
        also: None,
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Hex,
        prefix: "sha256=".to_owned(),
        signed: SignedContent::body(),
        timestamp: None,
        keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderMap, HeaderValue};

    /// The example in GitHub's "Validating webhook deliveries" documentation.
    #[test]
    fn the_documented_example_verifies() {
        let key = Secret::from_bytes(b"It's a Secret to Everybody".to_vec()).unwrap();
        let scheme = scheme(vec![key]);
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static(SIGNATURE_HEADER),
            HeaderValue::from_static(
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            ),
        );
        let now = std::time::SystemTime::now();
        assert_eq!(scheme.verify(&headers, b"Hello, World!", now), Ok(()));
        assert_eq!(
            scheme.verify(&headers, b"Hello, World?", now),
            Err(super::super::AuthError::InvalidSignature)
        );
    }
}
