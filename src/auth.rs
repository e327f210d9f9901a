//! Who sent a request: each source's authentication, checked before the body is read.
//!
//! Credentials are compared in constant time against every configured secret (several are
//! accepted at once so that a secret can be rotated without downtime). Nothing here logs a
//! credential; callers only ever see which check failed.

use std::borrow::Cow;

use actix_web::http::header::HeaderName;
use actix_web::HttpRequest;
use subtle::ConstantTimeEq;

use crate::config::{AuthSettings, Secret, TokenLocation};

/// A source's authentication, with its secrets resolved.
#[derive(Debug, Clone)]
pub enum Authenticator {
    /// A shared token in a query parameter or a header.
    Token {
        location: TokenLocation,
        /// Query parameter name, or the header name.
        name: String,
        header: Option<HeaderName>,
        secrets: Vec<Secret>,
    },
    /// Anyone may post.
    None,
}

/// Why a request was not authenticated. The variants are the stable problem codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the request carries no credentials")]
    MissingCredentials,
    #[error("the credentials do not match")]
    InvalidCredentials,
}

impl Authenticator {
    /// Builds the authenticator; on error returns the key suffix under `auth` and the reason.
    pub fn from_settings(settings: &AuthSettings) -> Result<Authenticator, (String, String)> {
        match settings {
            AuthSettings::None(_) => Ok(Authenticator::None),
            AuthSettings::Token(token) => {
                if token.name.is_empty() {
                    return Err((".name".to_owned(), "must not be empty".to_owned()));
                }
                let header = match token.location {
                    TokenLocation::Query => None,
                    TokenLocation::Header => {
                        Some(HeaderName::try_from(token.name.as_str()).map_err(|_| {
                            (
                                ".name".to_owned(),
                                format!("{:?} is not a valid header name", token.name),
                            )
                        })?)
                    }
                };
                if token.secrets.is_empty() {
                    return Err((
                        ".secrets".to_owned(),
                        "list at least one secret (env:NAME or file:/path)".to_owned(),
                    ));
                }
                let secrets = token
                    .secrets
                    .iter()
                    .enumerate()
                    .map(|(index, reference)| {
                        Secret::resolve(reference)
                            .map_err(|reason| (format!(".secrets[{index}]"), reason))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Authenticator::Token {
                    location: token.location,
                    name: token.name.clone(),
                    header,
                    secrets,
                })
            }
        }
    }

    /// The `hookrelay_auth` record header: how a request of this source was authenticated.
    pub fn method(&self) -> &'static str {
        match self {
            Authenticator::Token { .. } => "token",
            Authenticator::None => "none",
        }
    }

    /// Checks the request's credentials.
    pub fn verify(&self, request: &HttpRequest) -> Result<(), AuthError> {
        match self {
            Authenticator::None => Ok(()),
            Authenticator::Token {
                location,
                name,
                header,
                secrets,
            } => {
                let presented = match location {
                    TokenLocation::Query => query_param(request.query_string(), name),
                    TokenLocation::Header => header
                        .as_ref()
                        .and_then(|header| request.headers().get(header))
                        .map(|value| Cow::Borrowed(strip_bearer(value.as_bytes()))),
                };
                let presented = presented.ok_or(AuthError::MissingCredentials)?;
                if presented.is_empty() {
                    return Err(AuthError::MissingCredentials);
                }
                if matches_any(&presented, secrets) {
                    Ok(())
                } else {
                    Err(AuthError::InvalidCredentials)
                }
            }
        }
    }
}

/// Compares against every secret without stopping at the first match, so the time taken does not
/// tell which secret (or how much of one) matched.
fn matches_any(presented: &[u8], secrets: &[Secret]) -> bool {
    let mut matched = subtle::Choice::from(0);
    for secret in secrets {
        matched |= presented.ct_eq(secret.expose());
    }
    matched.into()
}

fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, [u8]>> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| match value {
            Cow::Borrowed(value) => Cow::Borrowed(value.as_bytes()),
            Cow::Owned(value) => Cow::Owned(value.into_bytes()),
        })
}

/// `Authorization: Bearer TOKEN` carries the token after the scheme.
fn strip_bearer(value: &[u8]) -> &[u8] {
    const BEARER: &[u8] = b"bearer ";
    if value.len() > BEARER.len() && value[..BEARER.len()].eq_ignore_ascii_case(BEARER) {
        &value[BEARER.len()..]
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn token_auth(location: TokenLocation, name: &str, secrets: &[&str]) -> Authenticator {
        let secrets = secrets
            .iter()
            .map(|value| {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("secret");
                std::fs::write(&path, value).unwrap();
                Secret::resolve(&format!("file:{}", path.display())).unwrap()
            })
            .collect();
        Authenticator::Token {
            location,
            name: name.to_owned(),
            header: (location == TokenLocation::Header)
                .then(|| HeaderName::try_from(name).unwrap()),
            secrets,
        }
    }

    #[test]
    fn query_token_accepts_any_configured_secret() {
        let auth = token_auth(TokenLocation::Query, "token", &["old", "new"]);
        for token in ["old", "new"] {
            let request = TestRequest::post()
                .uri(&format!("/hooks/x?token={token}"))
                .to_http_request();
            assert_eq!(auth.verify(&request), Ok(()));
        }
    }

    #[test]
    fn wrong_or_missing_query_token_is_refused() {
        let auth = token_auth(TokenLocation::Query, "token", &["right"]);
        let wrong = TestRequest::post()
            .uri("/hooks/x?token=righ")
            .to_http_request();
        assert_eq!(auth.verify(&wrong), Err(AuthError::InvalidCredentials));
        let longer = TestRequest::post()
            .uri("/hooks/x?token=right1")
            .to_http_request();
        assert_eq!(auth.verify(&longer), Err(AuthError::InvalidCredentials));
        let missing = TestRequest::post()
            .uri("/hooks/x?other=right")
            .to_http_request();
        assert_eq!(auth.verify(&missing), Err(AuthError::MissingCredentials));
        let empty = TestRequest::post().uri("/hooks/x?token=").to_http_request();
        assert_eq!(auth.verify(&empty), Err(AuthError::MissingCredentials));
    }

    #[test]
    fn percent_encoded_query_token_is_decoded() {
        let auth = token_auth(TokenLocation::Query, "token", &["a b/c"]);
        let request = TestRequest::post()
            .uri("/hooks/x?token=a%20b%2Fc")
            .to_http_request();
        assert_eq!(auth.verify(&request), Ok(()));
    }

    #[test]
    fn header_token_accepts_bearer_scheme() {
        let auth = token_auth(TokenLocation::Header, "authorization", &["t0ken"]);
        let request = TestRequest::post()
            .insert_header(("Authorization", "Bearer t0ken"))
            .to_http_request();
        assert_eq!(auth.verify(&request), Ok(()));
        let plain = token_auth(TokenLocation::Header, "x-hook-token", &["t0ken"]);
        let request = TestRequest::post()
            .insert_header(("X-Hook-Token", "t0ken"))
            .to_http_request();
        assert_eq!(plain.verify(&request), Ok(()));
    }
}
