//! `type = "token"`: a shared token in a query parameter or a header (`Authorization: Bearer`
//! accepted), for senders that cannot sign, such as TagMango.

use std::borrow::Cow;

use actix_web::http::header::HeaderName;

use super::{matches_any, resolve_secrets, AuthError, SettingsError};
use crate::secret::Secret;
use crate::settings::{TokenAuthSettings, TokenLocation};

#[derive(Debug, Clone)]
pub struct TokenAuth {
    pub location: TokenLocation,
    /// Query parameter name, or the header name.
    pub name: String,
    pub header: Option<HeaderName>,
    pub secrets: Vec<Secret>,
}

impl TokenAuth {
    pub fn from_settings(token: &TokenAuthSettings) -> Result<TokenAuth, SettingsError> {
        if token.name.is_empty() {
            return Err(SettingsError::new(
                ".name".to_owned(),
                "must not be empty".to_owned(),
            ));
        }
        let header = match token.location {
            TokenLocation::Query => None,
            TokenLocation::Header => Some(super::hmac::header_name(&token.name, ".name")?),
        };
        Ok(TokenAuth {
            location: token.location,
            name: token.name.clone(),
            header,
            secrets: resolve_secrets(&token.secrets)?,
        })
    }

    pub fn verify(&self, head: super::Head<'_>) -> Result<(), AuthError> {
        let presented = match self.location {
            TokenLocation::Query => query_param(head.query, &self.name),
            TokenLocation::Header => self
                .header
                .as_ref()
                .and_then(|header| head.headers.get(header))
                .map(|value| Cow::Borrowed(strip_scheme(value.as_bytes(), b"bearer "))),
        };
        let presented = presented.ok_or(AuthError::MissingCredentials)?;
        if presented.is_empty() {
            return Err(AuthError::MissingCredentials);
        }
        if matches_any(&presented, &self.secrets) {
            Ok(())
        } else {
            Err(AuthError::InvalidCredentials)
        }
    }
}

fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, [u8]>> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| match value {
            Cow::Borrowed(value) => Cow::Borrowed(value.as_bytes()),
            Cow::Owned(value) => Cow::Owned(value.into_bytes()),
        })
}

/// `Authorization: Bearer TOKEN` carries the token after the scheme (`scheme` is lower case,
/// with its trailing space).
pub fn strip_scheme<'v>(value: &'v [u8], scheme: &[u8]) -> &'v [u8] {
    if value.len() > scheme.len() && value[..scheme.len()].eq_ignore_ascii_case(scheme) {
        &value[scheme.len()..]
    } else {
        value
    }
}
