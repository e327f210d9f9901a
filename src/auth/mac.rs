//! The primitives every signature scheme shares: HMAC over several parts, constant-time matching
//! against several keys and several presented signatures, and the timestamp window.
//!
//! A presented signature is decoded (hex or base64) before it is compared, and compared with
//! `subtle`: an empty, truncated or over-long signature has the wrong length and never matches;
//! equal-length signatures are compared without an early exit. Every key is tried against every
//! signature, so the time taken does not tell which key (if any) matched.

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::header::HeaderValue;
use base64::Engine;
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

use super::AuthError;
use crate::secret::Secret;
use crate::settings::{Algorithm, Encoding};

/// Longest timestamp header accepted: ten digits is year 2286.
const MAX_TIMESTAMP_DIGITS: usize = 12;

impl Algorithm {
    /// HMAC of the concatenation of `parts` under `key`.
    pub fn mac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC accepts keys of any length, so this cannot fail.
            let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
                return Vec::new();
            };
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Algorithm::Sha1 => run::<hmac::Hmac<sha1::Sha1>>(key, parts),
            Algorithm::Sha256 => run::<hmac::Hmac<sha2::Sha256>>(key, parts),
            Algorithm::Sha512 => run::<hmac::Hmac<sha2::Sha512>>(key, parts),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
}

impl Encoding {
    /// The signature bytes written in a header; `None` when the text is not of this encoding.
    pub fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => hex::decode(text).ok(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        }
    }

    pub fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

/// Whether any key's HMAC of `parts` equals any of the presented (decoded) signatures.
pub fn any_matches(
    algorithm: Algorithm,
    keys: &[Secret],
    parts: &[&[u8]],
    presented: &[Vec<u8>],
) -> bool {
    let mut matched = subtle::Choice::from(0);
    for key in keys {
        let expected = algorithm.mac(key.expose(), parts);
        for signature in presented {
            // `ct_eq` on slices of different lengths is false (length is not secret).
            matched |= signature.as_slice().ct_eq(&expected);
        }
    }
    // An HMAC is never empty, so an empty signature never matches.
    matched.into()
}

/// A credential header's value as text, trimmed: `MissingSignature` when it is absent,
/// `InvalidSignature` when it is not text.
pub fn header_text(value: Option<&HeaderValue>) -> Result<&str, AuthError> {
    value
        .ok_or(AuthError::MissingSignature)?
        .to_str()
        .map(str::trim)
        .map_err(|_| AuthError::InvalidSignature)
}

/// As [`header_text`], and an empty value counts as absent.
pub fn required_header(value: Option<&HeaderValue>) -> Result<&str, AuthError> {
    match header_text(value)? {
        "" => Err(AuthError::MissingSignature),
        text => Ok(text),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_seconds(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Parses a Unix timestamp in seconds (ASCII digits only).
pub fn parse_timestamp(text: &str) -> Result<i64, AuthError> {
    let text = text.trim();
    if text.is_empty()
        || text.len() > MAX_TIMESTAMP_DIGITS
        || !text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(AuthError::InvalidSignature);
    }
    text.parse().map_err(|_| AuthError::InvalidSignature)
}

/// Refuses a timestamp further than `tolerance_secs` from `now`, in the past or the future.
pub fn check_window(timestamp: i64, now: SystemTime, tolerance_secs: u64) -> Result<(), AuthError> {
    let distance = unix_seconds(now).abs_diff(timestamp);
    if distance > tolerance_secs {
        Err(AuthError::StaleTimestamp)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_digits_only() {
        assert_eq!(parse_timestamp("1614265330"), Ok(1_614_265_330));
        for bad in ["", "-1", "1e9", "0x10", "1614265330.5", "9999999999999"] {
            assert_eq!(
                parse_timestamp(bad),
                Err(AuthError::InvalidSignature),
                "{bad}"
            );
        }
    }

    #[test]
    fn window_is_checked_in_both_directions() {
        let now = UNIX_EPOCH + std::time::Duration::from_secs(10_000);
        assert_eq!(check_window(10_000 - 300, now, 300), Ok(()));
        assert_eq!(check_window(10_000 + 300, now, 300), Ok(()));
        assert_eq!(
            check_window(10_000 - 301, now, 300),
            Err(AuthError::StaleTimestamp)
        );
        assert_eq!(
            check_window(10_000 + 301, now, 300),
            Err(AuthError::StaleTimestamp)
        );
    }
}
