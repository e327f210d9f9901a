//! `type = "standard-webhooks"` (<https://www.standardwebhooks.com>, as sent by Svix and others):
//! `webhook-id`, `webhook-timestamp` and `webhook-signature` (or the same with `svix-`), the
//! signature header a space-separated list of `v1,<base64>` (one per active secret), each the
//! HMAC-SHA256 of `{id}.{timestamp}.{body}` under the base64-decoded part of a `whsec_` secret.
//! Other versions (such as the asymmetric `v1a`) are ignored.

use std::time::SystemTime;

use actix_web::http::header::{HeaderMap, HeaderName};
use base64::Engine;

use super::mac::{self, any_matches};
use super::AuthError;
use crate::secret::Secret;
use crate::settings::{Algorithm, Encoding};

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";
pub const SVIX_ID_HEADER: &str = "svix-id";
pub const SVIX_TIMESTAMP_HEADER: &str = "svix-timestamp";
pub const SVIX_SIGNATURE_HEADER: &str = "svix-signature";
const SECRET_PREFIX: &str = "whsec_";
/// More signatures than any sender rotates through at once; longer lists are refused.
const MAX_SIGNATURES: usize = 32;

#[derive(Debug, Clone)]
pub struct StandardWebhooksScheme {
    /// The decoded keys (not the `whsec_` text).
    pub keys: Vec<Secret>,
    pub tolerance_secs: u64,
}

/// Decodes a `whsec_<base64>` secret into the HMAC key; the prefix is optional, as in the
/// reference libraries.
pub fn decode_secret(secret: &Secret) -> Result<Secret, String> {
    let text = std::str::from_utf8(secret.expose())
        .map_err(|_| "not a Standard Webhooks secret: it is not text".to_owned())?;
    let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
    // With or without `=` padding, as the reference libraries accept.
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
        .map_err(|_| {
            "not a Standard Webhooks secret: expected whsec_ followed by base64".to_owned()
        })?;
    Secret::from_bytes(key)
        .ok_or_else(|| "not a Standard Webhooks secret: the key is empty".to_owned())
}

/// Parses the signature list: the decoded `v1` signatures (undecodable ones dropped).
pub fn parse_signatures(value: &str) -> Result<Vec<Vec<u8>>, AuthError> {
    let mut signatures = Vec::new();
    for (index, item) in value.split_ascii_whitespace().enumerate() {
        if index >= MAX_SIGNATURES {
            return Err(AuthError::InvalidSignature);
        }
        if let Some(("v1", encoded)) = item.split_once(',') {
            signatures.extend(Encoding::Base64.decode(encoded).filter(|s| !s.is_empty()));
        }
    }
    if signatures.is_empty() {
        Err(AuthError::InvalidSignature)
    } else {
        Ok(signatures)
    }
}

/// The three headers, under their `webhook-` names or else their `svix-` names.
fn headers_of(headers: &HeaderMap) -> Result<[&str; 3], AuthError> {
    let names = if headers.contains_key(SIGNATURE_HEADER) {
        [ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER]
    } else {
        [SVIX_ID_HEADER, SVIX_TIMESTAMP_HEADER, SVIX_SIGNATURE_HEADER]
    };
    let mut values = [""; 3];
    for (value, name) in values.iter_mut().zip(names) {
        // A repeated id, timestamp or signature header is refused: which copy a proxy or a
        // consumer would take is not defined.
        if headers.get_all(name).nth(1).is_some() {
            return Err(AuthError::InvalidSignature);
        }
        *value = mac::required_header(headers.get(name))?;
    }
    Ok(values)
}

/// The sender's message id, under either header name.
pub fn message_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(ID_HEADER)
        .or_else(|| headers.get(SVIX_ID_HEADER))
        .and_then(|value| value.to_str().ok())
}

impl StandardWebhooksScheme {
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), AuthError> {
        let [id, timestamp, signatures] = headers_of(headers)?;
        // The event id is read from `webhook-id`, else `svix-id`: with both present they must be
        // the one that was signed, or an unsigned one could name the event.
        let ids = [ID_HEADER, SVIX_ID_HEADER].map(|name| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
        });
        if ids.iter().flatten().any(|other| *other != id) {
            return Err(AuthError::InvalidSignature);
        }
        let signatures = parse_signatures(signatures)?;
        let parsed = mac::parse_timestamp(timestamp)?;
        let parts: [&[u8]; 5] = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
        if !any_matches(Algorithm::Sha256, &self.keys, &parts, &signatures) {
            return Err(AuthError::InvalidSignature);
        }
        mac::check_window(parsed, now, self.tolerance_secs)
    }

    /// Signs `body` as message `id` at `now` with the first key.
    pub fn sign(&self, id: &str, body: &[u8], now: SystemTime) -> Vec<(String, String)> {
        let timestamp = mac::unix_seconds(now).to_string();
        let key = self.keys.first().map(Secret::expose).unwrap_or_default();
        let parts: [&[u8]; 5] = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
        let signature = Encoding::Base64.encode(&Algorithm::Sha256.mac(key, &parts));
        vec![
            (ID_HEADER.to_owned(), id.to_owned()),
            (TIMESTAMP_HEADER.to_owned(), timestamp),
            (SIGNATURE_HEADER.to_owned(), format!("v1,{signature}")),
        ]
    }

    pub fn signature_headers(&self) -> Vec<HeaderName> {
        [
            TIMESTAMP_HEADER,
            SIGNATURE_HEADER,
            SVIX_TIMESTAMP_HEADER,
            SVIX_SIGNATURE_HEADER,
        ]
        .into_iter()
        .map(HeaderName::from_static)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// The example of the Standard Webhooks specification (and Svix's documentation).
    #[test]
    fn the_specification_example_verifies() {
        std::env::set_var(
            "HOOKRELAY_TEST_SW_SPEC",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        );
        let secret = Secret::resolve("env:HOOKRELAY_TEST_SW_SPEC").unwrap();
        let scheme = StandardWebhooksScheme {
            keys: vec![decode_secret(&secret).unwrap()],
            tolerance_secs: 300,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                actix_web::http::header::HeaderValue::from_static(value),
            );
        }
        let body = br#"{"test": 2432232314}"#;
        let now = UNIX_EPOCH + Duration::from_secs(1_614_265_330);
        assert_eq!(scheme.verify(&headers, body, now), Ok(()));
        let later = now + Duration::from_secs(301);
        assert_eq!(
            scheme.verify(&headers, body, later),
            Err(AuthError::StaleTimestamp)
        );
        assert_eq!(
            scheme.verify(&headers, br#"{"test": 2432232315}"#, now),
            Err(AuthError::InvalidSignature)
        );
    }

    #[test]
    fn bad_secrets_are_explained_without_their_value() {
        std::env::set_var("HOOKRELAY_TEST_SW_BAD", "whsec_not*base64");
        let secret = Secret::resolve("env:HOOKRELAY_TEST_SW_BAD").unwrap();
        let error = decode_secret(&secret).unwrap_err();
        assert!(error.contains("whsec_ followed by base64"), "{error}");
        assert!(!error.contains("not*base64"), "{error}");
    }

    #[test]
    fn signature_lists_keep_v1_entries_only() {
        assert_eq!(
            parse_signatures("v1,AQ== v1a,Ag== v2,Aw==").unwrap(),
            vec![vec![1]]
        );
        assert_eq!(
            parse_signatures("v1a,AQ=="),
            Err(AuthError::InvalidSignature)
        );
        assert_eq!(parse_signatures("v1,!!"), Err(AuthError::InvalidSignature));
        assert_eq!(parse_signatures("v1,"), Err(AuthError::InvalidSignature));
        assert_eq!(parse_signatures(""), Err(AuthError::InvalidSignature));
    }
}
