//! `type = "hmac"`: one signature header holding `prefix` + hex or base64 of an HMAC over the raw
//! body, or over a template such as `{timestamp}.{body}` with the timestamp from another header.
//!
//! The GitHub, Shopify and Slack presets are fixed instances of this scheme.

use std::time::SystemTime;

use actix_web::http::header::{HeaderMap, HeaderName};

use super::mac::{self, any_matches};
use super::{resolve_secrets, AuthError, SettingsError};
use crate::secret::Secret;
use crate::settings::{Algorithm, Encoding, HmacAuthSettings};
use crate::template::Piece;

/// A part of the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    Timestamp,
    Body,
}

/// What is signed, parsed from a template of `{body}` and `{timestamp}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedContent(Vec<Part>);

impl SignedContent {
    pub fn parse(template: &str) -> Result<SignedContent, String> {
        let mut parts = Vec::new();
        for piece in crate::template::pieces(template) {
            parts.push(match piece? {
                Piece::Literal(literal) => Part::Literal(literal.as_bytes().to_vec()),
                Piece::Placeholder("body") => Part::Body,
                Piece::Placeholder("timestamp") => Part::Timestamp,
                Piece::Placeholder(other) => {
                    return Err(format!(
                        "unknown placeholder {{{other}}}: only {{body}} and {{timestamp}} exist"
                    ))
                }
            });
        }
        if parts.iter().filter(|part| **part == Part::Body).count() != 1 {
            return Err("the signed content must contain {body} exactly once".to_owned());
        }
        Ok(SignedContent(parts))
    }

    /// The raw body alone.
    pub fn body() -> SignedContent {
        SignedContent(vec![Part::Body])
    }

    /// `{prefix}{timestamp}{separator}{body}`.
    pub fn timestamped(prefix: &str, separator: &str) -> SignedContent {
        SignedContent(vec![
            Part::Literal(prefix.as_bytes().to_vec()),
            Part::Timestamp,
            Part::Literal(separator.as_bytes().to_vec()),
            Part::Body,
        ])
    }

    pub fn uses_timestamp(&self) -> bool {
        self.0.contains(&Part::Timestamp)
    }

    /// The pieces to feed the HMAC, borrowing the body rather than copying it.
    fn pieces<'a>(&'a self, timestamp: &'a [u8], body: &'a [u8]) -> Vec<&'a [u8]> {
        self.0
            .iter()
            .map(|part| match part {
                Part::Literal(text) => text.as_slice(),
                Part::Timestamp => timestamp,
                Part::Body => body,
            })
            .collect()
    }
}

/// A configured HMAC signature check.
#[derive(Debug, Clone)]
pub struct HmacScheme {
    pub header: HeaderName,
    /// Another name of the signature header, read when `header` is absent.
    pub also: Option<HeaderName>,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    pub prefix: String,
    pub signed: SignedContent,
    /// The timestamp header and the tolerance, when the content includes `{timestamp}`.
    pub timestamp: Option<(HeaderName, u64)>,
    pub keys: Vec<Secret>,
}

impl HmacScheme {
    pub fn from_settings(settings: &HmacAuthSettings) -> Result<HmacScheme, SettingsError> {
        let header = header_name(&settings.header, ".header")?;
        let algorithm = match settings.algorithm.as_str() {
            "sha256" => Algorithm::Sha256,
            "sha1" => Algorithm::Sha1,
            "sha512" => Algorithm::Sha512,
            other => {
                return Err(SettingsError::new(
                    ".algorithm".to_owned(),
                    format!("unknown algorithm {other:?}: use sha256, sha1 or sha512"),
                ))
            }
        };
        let encoding = match settings.encoding.as_str() {
            "hex" => Encoding::Hex,
            "base64" => Encoding::Base64,
            other => {
                return Err(SettingsError::new(
                    ".encoding".to_owned(),
                    format!("unknown encoding {other:?}: use hex or base64"),
                ))
            }
        };
        let signed = SignedContent::parse(&settings.signed)
            .map_err(|reason| SettingsError::new(".signed", reason))?;
        let timestamp = match (&settings.timestamp_header, signed.uses_timestamp()) {
            (Some(name), true) => Some((
                header_name(name, ".timestamp_header")?,
                settings.tolerance_secs,
            )),
            (None, false) => None,
            (None, true) => {
                return Err(SettingsError::new(
                    ".timestamp_header".to_owned(),
                    "required when the signed content contains {timestamp}".to_owned(),
                ))
            }
            (Some(_), false) => {
                return Err(SettingsError::new(
                    ".signed".to_owned(),
                    "a timestamp_header is set but the signed content has no {timestamp}"
                        .to_owned(),
                ))
            }
        };
        Ok(HmacScheme {
            header,
            also: None,
            algorithm,
            encoding,
            prefix: settings.prefix.clone(),
            signed,
            timestamp,
            keys: resolve_secrets(&settings.secrets)?,
        })
    }

    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), AuthError> {
        let value = mac::required_header(
            headers
                .get(&self.header)
                .or_else(|| headers.get(self.also.as_ref()?)),
        )?;
        let timestamp = match &self.timestamp {
            Some((name, _)) => mac::header_text(headers.get(name))?,
            None => "",
        };
        let parsed = if self.timestamp.is_some() {
            Some(mac::parse_timestamp(timestamp)?)
        } else {
            None
        };
        let presented = parse_signature(value, &self.prefix, self.encoding)
            .ok_or(AuthError::InvalidSignature)?;
        let parts = self.signed.pieces(timestamp.as_bytes(), body);
        if !any_matches(self.algorithm, &self.keys, &parts, &[presented]) {
            return Err(AuthError::InvalidSignature);
        }
        match (parsed, &self.timestamp) {
            (Some(parsed), Some((_, tolerance))) => mac::check_window(parsed, now, *tolerance),
            _ => Ok(()),
        }
    }

    /// The headers a sender would send for `body` at `now`, signed with the first key.
    pub fn sign(&self, body: &[u8], now: SystemTime) -> Vec<(String, String)> {
        let timestamp = mac::unix_seconds(now).to_string();
        let key = self.keys.first().map(Secret::expose).unwrap_or_default();
        let parts = self.signed.pieces(timestamp.as_bytes(), body);
        let signature = self.encoding.encode(&self.algorithm.mac(key, &parts));
        let mut headers = vec![(
            self.header.as_str().to_owned(),
            format!("{}{signature}", self.prefix),
        )];
        if let Some((name, _)) = &self.timestamp {
            headers.push((name.as_str().to_owned(), timestamp));
        }
        headers
    }

    /// Headers that carry signature material and must never be forwarded.
    pub fn signature_headers(&self) -> Vec<HeaderName> {
        std::iter::once(self.header.clone())
            .chain(self.also.clone())
            .chain(self.timestamp.iter().map(|(name, _)| name.clone()))
            .collect()
    }
}

/// `prefix` then the encoded signature; the prefix is matched case-insensitively.
pub fn parse_signature(value: &str, prefix: &str, encoding: Encoding) -> Option<Vec<u8>> {
    let encoded = if prefix.is_empty() {
        value
    } else {
        let head = value.get(..prefix.len())?;
        if !head.eq_ignore_ascii_case(prefix) {
            return None;
        }
        &value[prefix.len()..]
    };
    encoding.decode(encoded).filter(|bytes| !bytes.is_empty())
}

pub fn header_name(name: &str, key: &str) -> Result<HeaderName, SettingsError> {
    HeaderName::try_from(name)
        .map_err(|_| SettingsError::new(key, format!("{name:?} is not a valid header name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_content_templates_are_checked() {
        assert!(SignedContent::parse("{body}").is_ok());
        let slack = SignedContent::parse("v0:{timestamp}:{body}").unwrap();
        assert!(slack.uses_timestamp());
        assert_eq!(slack.pieces(b"1", b"B").concat(), b"v0:1:B");
        assert!(SignedContent::parse("{timestamp}").is_err());
        assert!(SignedContent::parse("{body}{body}").is_err());
        assert!(SignedContent::parse("{id}.{body}").is_err());
        assert!(SignedContent::parse("{body").is_err());
    }

    #[test]
    fn signature_prefix_and_encoding_are_enforced() {
        assert_eq!(
            parse_signature("sha256=0aff", "sha256=", Encoding::Hex),
            Some(vec![0x0a, 0xff])
        );
        assert_eq!(
            parse_signature("SHA256=0AFF", "sha256=", Encoding::Hex),
            Some(vec![0x0a, 0xff])
        );
        assert_eq!(parse_signature("sha1=0aff", "sha256=", Encoding::Hex), None);
        assert_eq!(parse_signature("sha256=", "sha256=", Encoding::Hex), None);
        assert_eq!(
            parse_signature("sha256=0af", "sha256=", Encoding::Hex),
            None
        );
        assert_eq!(parse_signature("zz", "", Encoding::Hex), None);
        assert_eq!(parse_signature("AQ==", "", Encoding::Base64), Some(vec![1]));
        assert_eq!(parse_signature("AQ=", "", Encoding::Base64), None);
        assert_eq!(parse_signature("é", "sha256=", Encoding::Hex), None);
    }
}
