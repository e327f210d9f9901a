//! `type = "basic"`: HTTP Basic authentication (RFC 7617), one user name and several accepted
//! passwords. Checked before the body is read.

use actix_web::http::header;
use base64::Engine;
use subtle::ConstantTimeEq;

use super::{matches_any, resolve_secrets, AuthError, SettingsError};
use crate::secret::Secret;
use crate::settings::BasicAuthSettings;

#[derive(Debug, Clone)]
pub struct BasicAuth {
    pub user: String,
    pub passwords: Vec<Secret>,
}

impl BasicAuth {
    pub fn from_settings(settings: &BasicAuthSettings) -> Result<BasicAuth, SettingsError> {
        if settings.user.is_empty() || settings.user.contains(':') {
            return Err(SettingsError::new(
                ".user".to_owned(),
                "must be a non-empty user name without ':'".to_owned(),
            ));
        }
        Ok(BasicAuth {
            user: settings.user.clone(),
            passwords: resolve_secrets(&settings.secrets)?,
        })
    }

    pub fn verify(&self, headers: &actix_web::http::header::HeaderMap) -> Result<(), AuthError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(AuthError::MissingCredentials)?
            .as_bytes();
        const SCHEME: &[u8] = b"basic ";
        if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
            return Err(AuthError::MissingCredentials);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value[SCHEME.len()..].trim_ascii())
            .map_err(|_| AuthError::InvalidCredentials)?;
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return Err(AuthError::InvalidCredentials);
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let user_matches: bool = user.ct_eq(self.user.as_bytes()).into();
        let password_matches = matches_any(password, &self.passwords);
        if user_matches && password_matches {
            Ok(())
        } else {
            Err(AuthError::InvalidCredentials)
        }
    }

    /// The `Authorization` header value for the first password.
    pub fn header_value(&self) -> String {
        let password = self
            .passwords
            .first()
            .map(Secret::expose)
            .unwrap_or_default();
        let mut credentials = format!("{}:", self.user).into_bytes();
        credentials.extend_from_slice(password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }
}
