//! `type = "stripe"`: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`, each `v1` the
//! HMAC-SHA256 of `{t}.{body}` under an endpoint secret (`whsec_...`, used as is). During a
//! secret roll Stripe sends one `v1` per active secret; any match is enough. Other schemes
//! (`v0`, test-mode signatures) are ignored, as Stripe's own libraries do.

use std::time::SystemTime;

use actix_web::http::header::{HeaderMap, HeaderName};

use super::mac::{self, any_matches};
use super::AuthError;
use crate::secret::Secret;
use crate::settings::{Algorithm, Encoding};

pub const SIGNATURE_HEADER: &str = "stripe-signature";
/// More elements than any real header carries; longer lists are refused unread.
const MAX_ELEMENTS: usize = 32;

#[derive(Debug, Clone)]
pub struct StripeScheme {
    pub keys: Vec<Secret>,
    pub tolerance_secs: u64,
}

/// A parsed `Stripe-Signature` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub timestamp: &'a str,
    pub signatures: Vec<Vec<u8>>,
}

/// Parses `t=...,v1=...`: exactly one `t`, any number of `v1` (undecodable ones are dropped, so
/// they cannot match), other keys ignored.
pub fn parse_header(value: &str) -> Result<Header<'_>, AuthError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for (index, element) in value.split(',').enumerate() {
        if index >= MAX_ELEMENTS {
            return Err(AuthError::InvalidSignature);
        }
        let Some((key, item)) = element.trim().split_once('=') else {
            return Err(AuthError::InvalidSignature);
        };
        match key {
            "t" if timestamp.is_none() => timestamp = Some(item),
            "t" => return Err(AuthError::InvalidSignature),
            "v1" => signatures.extend(Encoding::Hex.decode(item).filter(|s| !s.is_empty())),
            _ => {}
        }
    }
    match (timestamp, signatures.is_empty()) {
        (Some(timestamp), false) => Ok(Header {
            timestamp,
            signatures,
        }),
        _ => Err(AuthError::InvalidSignature),
    }
}

impl StripeScheme {
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), AuthError> {
        let value = mac::required_header(headers.get(SIGNATURE_HEADER))?;
        let header = parse_header(value)?;
        let timestamp = mac::parse_timestamp(header.timestamp)?;
        let parts: [&[u8]; 3] = [header.timestamp.as_bytes(), b".", body];
        if !any_matches(Algorithm::Sha256, &self.keys, &parts, &header.signatures) {
            return Err(AuthError::InvalidSignature);
        }
        mac::check_window(timestamp, now, self.tolerance_secs)
    }

    pub fn sign(&self, body: &[u8], now: SystemTime) -> Vec<(String, String)> {
        let timestamp = mac::unix_seconds(now).to_string();
        let key = self.keys.first().map(Secret::expose).unwrap_or_default();
        let signature = Algorithm::Sha256.mac(key, &[timestamp.as_bytes(), b".", body]);
        vec![(
            SIGNATURE_HEADER.to_owned(),
            format!("t={timestamp},v1={}", hex::encode(signature)),
        )]
    }

    pub fn signature_headers(&self) -> Vec<HeaderName> {
        vec![HeaderName::from_static(SIGNATURE_HEADER)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_with_several_signatures_and_unknown_schemes_parses() {
        let header = parse_header("t=12,v1=0a,v0=ff,v1=0b,extra=1").unwrap();
        assert_eq!(header.timestamp, "12");
        assert_eq!(header.signatures, vec![vec![0x0a], vec![0x0b]]);
    }

    #[test]
    fn malformed_headers_are_invalid() {
        for bad in [
            "v1=0a",
            "t=12",
            "t=12,v0=0a",
            "t=12,t=13,v1=0a",
            "t=12,v1=zz",
            "t=12,v1=",
            "garbage",
            "",
        ] {
            assert_eq!(parse_header(bad), Err(AuthError::InvalidSignature), "{bad}");
        }
    }
}
