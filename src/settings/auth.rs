//! `auth = { type = ..., ... }` as written in the configuration file.
//!
//! Every table denies unknown keys; [`crate::auth::Authenticator::from_settings`] checks the
//! values.

use serde::{Deserialize, Serialize};

/// `auth = { type = ..., ... }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum AuthSettings {
    /// A shared token in the query string or a header.
    Token(TokenAuthSettings),
    /// HTTP Basic authentication: one user, several accepted passwords.
    Basic(BasicAuthSettings),
    /// No authentication; must be chosen explicitly.
    None(NoAuthSettings),
    /// A generic HMAC signature header.
    Hmac(HmacAuthSettings),
    /// Standard Webhooks (`webhook-*` or `svix-*` headers, `whsec_` secrets).
    StandardWebhooks(PresetAuthSettings),
    /// GitHub: `X-Hub-Signature-256`.
    Github(PresetAuthSettings),
    /// Stripe: `Stripe-Signature`.
    Stripe(PresetAuthSettings),
    /// Shopify: `X-Shopify-Hmac-Sha256`.
    Shopify(PresetAuthSettings),
    /// Slack: `X-Slack-Signature` and `X-Slack-Request-Timestamp`.
    Slack(PresetAuthSettings),
}

/// Where a token is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenLocation {
    Query,
    Header,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenAuthSettings {
    /// `query` or `header`.
    #[serde(rename = "in")]
    pub location: TokenLocation,
    /// Query parameter or header name.
    pub name: String,
    /// Accepted tokens (several during a rotation), each `env:NAME` or `file:/path`.
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthSettings {
    /// The expected user name (not a secret).
    pub user: String,
    /// Accepted passwords (several during a rotation), each `env:NAME` or `file:/path`.
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoAuthSettings {}

/// HMAC hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// How a signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HmacAuthSettings {
    /// The header carrying the signature.
    pub header: String,
    /// `sha256`, `sha1` or `sha512`. A string rather than an enum so that a wrong value is
    /// reported with its key path (serde loses the path inside the tagged `auth` table).
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// `hex` or `base64`.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// Text before the encoded signature in the header, such as `sha256=`.
    #[serde(default)]
    pub prefix: String,
    /// What is signed: a template of `{body}` and, with `timestamp_header`, `{timestamp}`.
    #[serde(default = "default_signed")]
    pub signed: String,
    /// The header carrying the Unix timestamp (seconds) that `{timestamp}` stands for.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// Largest accepted distance between the timestamp and the relay's clock, either way.
    #[serde(default = "default_tolerance_secs")]
    pub tolerance_secs: u64,
    /// Accepted HMAC keys (several during a rotation), each `env:NAME` or `file:/path`.
    pub secrets: Vec<String>,
}

/// The settings of a sender preset: only the secrets and the timestamp tolerance vary.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PresetAuthSettings {
    /// Accepted signing secrets (several during a rotation), each `env:NAME` or `file:/path`.
    pub secrets: Vec<String>,
    /// Largest accepted distance between the signed timestamp and the relay's clock, either way
    /// (ignored by GitHub and Shopify, which sign no timestamp).
    #[serde(default = "default_tolerance_secs")]
    pub tolerance_secs: u64,
}

fn default_algorithm() -> String {
    "sha256".to_owned()
}

fn default_encoding() -> String {
    "hex".to_owned()
}

fn default_signed() -> String {
    "{body}".to_owned()
}

pub fn default_tolerance_secs() -> u64 {
    300
}
