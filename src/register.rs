//! `hookrelay register`: subscribes the relay at the sender, one hook URL per event type.
//!
//! TagMango's integration API takes one `POST` per event type, with the creator's API key in
//! `x-api-key` and `{"hookUrl", "event", "course"?}` as the body; TagMango cannot send headers,
//! so the relay's token travels in the hook URL's query string. This module builds those requests
//! from the source's configuration (`[sources.NAME.register]`, its `events` and its first token),
//! sends them one by one (a failing event does not stop the others), and prints one line per
//! event with secrets masked: the token and the API key are never printed in full unless asked.

use std::time::Duration;

use reqwest::Url;
use serde::Serialize;

use crate::auth::{Authenticator, TokenLocation};
use crate::secret::Secret;
use crate::source::{EventFilter, Source};

/// How long one registration call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest part of an API answer printed.
const ANSWER_CHARS: usize = 300;

/// Why `register` cannot start: a usage or configuration problem (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("sources.{0}.register is not configured: add api_key = \"env:NAME\" (and api_url for another API)")]
    NotConfigured(String),
    #[error("sources.{0}: register puts the token in the hook URL, so auth must be type = \"token\" with in = \"query\" (the sender cannot send headers)")]
    NotQueryToken(String),
    #[error("--public-url {0:?} is not a URL: {1}")]
    BadPublicUrl(String, String),
    #[error("--public-url {0} is not https://: the sender posts over the internet and the token in the URL would travel in clear text (--allow-http to do it anyway)")]
    NotHttps(String),
    #[error("no event to register: name them with --event, or list them in sources.{0}.events")]
    NoEvents(String),
    #[error("event {event:?} is not in sources.{sender}.events: the relay would answer its hook with 404")]
    UnknownEvent { sender: String, event: String },
    #[error("sources.{0}.register.api_key: {1}")]
    ApiKey(String, String),
}

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub public_url: String,
    /// Empty: every event of the source's `events` list.
    pub events: Vec<String>,
    /// Optional filters of the sender: only this course, mango or webinar.
    pub course: Option<String>,
    pub mango: Option<String>,
    pub webinar: Option<String>,
    pub allow_http: bool,
}

/// The body of one registration call, as TagMango documents it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub hook_url: String,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub course: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mango: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webinar: Option<String>,
}

/// Everything `register` sends, checked, with the secrets it needs to mask.
pub struct Plan {
    pub api_url: String,
    pub api_key_reference: String,
    pub registrations: Vec<Registration>,
    /// Every spelling of the token an output could carry, longest first, to mask it.
    token_spellings: Vec<String>,
}

impl Plan {
    /// The registrations for `source`, or why there are none.
    pub fn new(source: &Source, request: &Request) -> Result<Plan, RegisterError> {
        let name = source.name.as_str().to_owned();
        let settings = source
            .register
            .as_ref()
            .ok_or_else(|| RegisterError::NotConfigured(name.clone()))?;
        let token = match &source.auth {
            Authenticator::Token(token) if token.location == TokenLocation::Query => token,
            _ => return Err(RegisterError::NotQueryToken(name)),
        };
        let base = public_url(&request.public_url, request.allow_http)?;
        let events = events(source, &request.events)?;
        let first = token
            .secrets
            .first()
            .map(Secret::expose)
            .unwrap_or_default();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair(&token.name, &String::from_utf8_lossy(first))
            .finish();
        let token_spellings = spellings(&String::from_utf8_lossy(first));
        let registrations = events
            .into_iter()
            .map(|event| Registration {
                hook_url: format!(
                    "{base}/hooks/{name}/{}?{query}",
                    form_urlencoded::byte_serialize(event.as_bytes()).collect::<String>()
                ),
                event,
                course: request.course.clone(),
                mango: request.mango.clone(),
                webinar: request.webinar.clone(),
            })
            .collect();
        Ok(Plan {
            api_url: settings.api_url.clone(),
            api_key_reference: settings.api_key.clone(),
            registrations,
            token_spellings,
        })
    }

    /// `text` with the token (and `api_key`, when given) replaced by placeholders, in every
    /// spelling an API could echo them in (as sent, URL-encoded, JSON-escaped).
    pub fn mask(&self, text: &str, api_key: Option<&str>) -> String {
        let mut masked = text.to_owned();
        for spelling in &self.token_spellings {
            masked = replace_secret(&masked, spelling, HIDDEN_TOKEN);
        }
        if let Some(key) = api_key {
            for spelling in spellings(key) {
                masked = replace_secret(&masked, &spelling, HIDDEN_API_KEY);
            }
        }
        masked
    }

    /// One `curl` command per registration (`--dry-run`): with the secrets when `api_key` is
    /// given (`--show-secrets`), else with placeholders for the token and the key.
    pub fn curl_commands(&self, api_key: Option<&str>) -> Vec<String> {
        self.registrations
            .iter()
            .map(|registration| {
                let mut body = serde_json::to_string(registration).unwrap_or_default();
                if api_key.is_none() {
                    body = self.mask(&body, None);
                }
                format!(
                    "curl -sS -X POST {} \\\n  -H 'accept: application/json' \\\n  -H 'content-type: application/json' \\\n  -H {} \\\n  --data-raw {}",
                    shell_quote(&self.api_url),
                    shell_quote(&format!("x-api-key: {}", api_key.unwrap_or(HIDDEN_API_KEY))),
                    shell_quote(&body),
                )
            })
            .collect()
    }

    /// Sends every registration; returns one outcome per event, in order.
    pub async fn send(&self, api_key: &str) -> Vec<Outcome> {
        // No redirects: a redirect would carry the API key to wherever it points.
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(CALL_TIMEOUT)
            .user_agent(concat!("hookrelay/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                return self
                    .registrations
                    .iter()
                    .map(|registration| Outcome {
                        event: registration.event.clone(),
                        result: Err(format!("cannot make an HTTPS client: {error}")),
                    })
                    .collect()
            }
        };
        let mut outcomes = Vec::with_capacity(self.registrations.len());
        for registration in &self.registrations {
            let result = call(&client, &self.api_url, api_key, registration).await;
            // Masked before it is cut to one line, so no cut leaves part of a secret.
            let mask = |text: &str| self.mask(text, Some(api_key));
            outcomes.push(Outcome {
                event: registration.event.clone(),
                result: result
                    .map(|(status, answer)| (status, one_line(&mask(&answer))))
                    .map_err(|error| mask(&error)),
            });
        }
        outcomes
    }
}

/// What one registration call came to: the API's status and answer, or why there was none.
#[derive(Debug)]
pub struct Outcome {
    pub event: String,
    pub result: Result<(u16, String), String>,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        matches!(&self.result, Ok((status, _)) if (200..300).contains(status))
    }

    /// One line: event, status and the API's answer (or the error).
    pub fn line(&self) -> String {
        match &self.result {
            Ok((status, answer)) => {
                let verdict = if self.succeeded() { "ok" } else { "FAILED" };
                format!("{} {status} {verdict} {answer}", self.event)
            }
            Err(error) => format!("{} - FAILED {error}", self.event),
        }
    }
}

async fn call(
    client: &reqwest::Client,
    api_url: &str,
    api_key: &str,
    registration: &Registration,
) -> Result<(u16, String), String> {
    let response = client
        .post(api_url)
        .header("accept", "application/json")
        .header("x-api-key", api_key)
        .json(registration)
        .send()
        .await
        .map_err(|error| describe(api_url, &error))?;
    let status = response.status().as_u16();
    let answer = response
        .text()
        .await
        .map_err(|error| format!("the answer could not be read: {error}"))?;
    Ok((status, answer))
}

/// A reqwest error as an operator reads it: which URL, and what went wrong underneath.
fn describe(api_url: &str, error: &reqwest::Error) -> String {
    // reqwest's own message repeats the URL: keep the causes under it.
    let mut causes = Vec::new();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        causes.push(inner.to_string());
        cause = inner.source();
    }
    let what = if error.is_timeout() {
        "no answer in time from"
    } else {
        "cannot reach"
    };
    if causes.is_empty() {
        format!("{what} {api_url}")
    } else {
        format!("{what} {api_url}: {}", causes.join(": "))
    }
}

/// The API's answer on one line, cut to [`ANSWER_CHARS`] characters.
fn one_line(answer: &str) -> String {
    let flat: String = answer
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    match flat.char_indices().nth(ANSWER_CHARS) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat.to_owned(),
    }
}

/// The public base URL without a trailing slash; `https://` unless `allow_http`.
fn public_url(text: &str, allow_http: bool) -> Result<String, RegisterError> {
    let url = Url::parse(text)
        .map_err(|error| RegisterError::BadPublicUrl(text.to_owned(), error.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Not echoed: it holds a password.
        return Err(RegisterError::BadPublicUrl(
            "(with a user name)".to_owned(),
            "the base URL takes no user or password".to_owned(),
        ));
    }
    let bad = |reason: &str| RegisterError::BadPublicUrl(text.to_owned(), reason.to_owned());
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err(RegisterError::NotHttps(text.to_owned())),
        _ => return Err(bad("the scheme must be https")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("the base URL takes no query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The events to register: those named (each must be one the source accepts), else the
/// source's list, sorted.
fn events(source: &Source, named: &[String]) -> Result<Vec<String>, RegisterError> {
    let name = source.name.as_str();
    match (&source.events, named.is_empty()) {
        (EventFilter::Any, true) => Err(RegisterError::NoEvents(name.to_owned())),
        (EventFilter::Only(list), true) => {
            let mut events: Vec<String> = list.iter().cloned().collect();
            events.sort();
            Ok(events)
        }
        (filter, false) => {
            for event in named {
                let accepted = match filter {
                    EventFilter::Only(list) => list.contains(event),
                    EventFilter::Any => crate::source::EventType::parse(event).is_some(),
                };
                if !accepted {
                    return Err(RegisterError::UnknownEvent {
                        sender: name.to_owned(),
                        event: event.clone(),
                    });
                }
            }
            let mut seen = std::collections::HashSet::new();
            Ok(named
                .iter()
                .filter(|event| seen.insert(*event))
                .cloned()
                .collect())
        }
    }
}

/// What the token shows as in any output (none of its characters).
pub const HIDDEN_TOKEN: &str = "<token hidden>";
/// What the API key shows as in any output.
pub const HIDDEN_API_KEY: &str = "<api key hidden>";

/// `secret` as sent, URL-encoded (both ways of writing a space), and each of those JSON-escaped
/// (with and without `\/`):
/// the forms an API's answer or an error may carry it in. Longest first, so that no shorter form
/// is replaced inside a longer one and leaves the rest of it.
fn spellings(secret: &str) -> Vec<String> {
    let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let percent = form.replace('+', "%20");
    let mut forms = vec![secret.to_owned(), form, percent];
    let escaped: Vec<String> = forms
        .iter()
        .filter_map(|form| serde_json::to_string(form).ok())
        .map(|quoted| quoted[1..quoted.len() - 1].to_owned())
        .collect();
    // Some encoders (PHP's by default) also escape `/` in JSON strings.
    let slashes: Vec<String> = escaped
        .iter()
        .filter(|form| form.contains('/'))
        .map(|form| form.replace('/', "\\/"))
        .collect();
    forms.extend(escaped);
    forms.extend(slashes);
    forms.retain(|form| !form.is_empty());
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms.dedup();
    forms
}

fn replace_secret(text: &str, secret: &str, placeholder: &str) -> String {
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, placeholder)
    }
}

/// Resolves the API key reference.
pub fn api_key(source: &str, reference: &str) -> Result<String, RegisterError> {
    let secret = Secret::resolve(reference)
        .map_err(|reason| RegisterError::ApiKey(source.to_owned(), reason))?;
    let key = String::from_utf8(secret.expose().to_vec()).map_err(|_| {
        RegisterError::ApiKey(source.to_owned(), "the key is not UTF-8 text".to_owned())
    })?;
    reqwest::header::HeaderValue::from_str(&key).map_err(|_| {
        RegisterError::ApiKey(
            source.to_owned(),
            "the key holds a line break or another control character, which no HTTP header can carry"
                .to_owned(),
        )
    })?;
    Ok(key)
}

/// Single-quotes `text` for a POSIX shell.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_must_be_https_without_query() {
        assert_eq!(
            public_url("https://relay.example.com/", false).unwrap(),
            "https://relay.example.com"
        );
        assert_eq!(
            public_url("https://example.com/relay/", false).unwrap(),
            "https://example.com/relay"
        );
        assert!(matches!(
            public_url("http://relay.example.com", false),
            Err(RegisterError::NotHttps(_))
        ));
        assert_eq!(
            public_url("http://127.0.0.1:8080", true).unwrap(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "relay.example.com",
            "ftp://relay.example.com",
            "https://relay.example.com/?token=x",
            "https://user:pass@relay.example.com",
        ] {
            assert!(
                matches!(public_url(bad, true), Err(RegisterError::BadPublicUrl(..))),
                "{bad}"
            );
        }
    }

    #[test]
    fn answers_are_flattened_and_cut() {
        assert_eq!(one_line("{\n  \"ok\": true\n}\n"), "{   \"ok\": true }");
        let long = "é".repeat(ANSWER_CHARS + 10);
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), ANSWER_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn masking_hides_every_occurrence() {
        let text = "token=s3cret-token and again s3cret-token";
        assert_eq!(
            replace_secret(text, "s3cret-token", HIDDEN_TOKEN),
            "token=<token hidden> and again <token hidden>"
        );
    }

    #[test]
    fn every_spelling_of_a_secret_is_hidden() {
        let secret = "a b+c/d&\"é";
        let answers = [
            format!("raw {secret}"),
            format!(
                "form {}",
                form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>()
            ),
            "percent a%20b%2Bc%2Fd%26%22%C3%A9".to_owned(),
            format!("json {}", serde_json::to_string(secret).unwrap()),
            format!(
                "php {}",
                serde_json::to_string(secret).unwrap().replace('/', "\\/")
            ),
        ];
        for answer in answers {
            let mut masked = answer.clone();
            for spelling in spellings(secret) {
                masked = replace_secret(&masked, &spelling, HIDDEN_TOKEN);
            }
            assert!(
                masked.ends_with(HIDDEN_TOKEN) || masked.ends_with("\"<token hidden>\""),
                "{answer} -> {masked}"
            );
            assert!(
                !masked.contains("b+c") && !masked.contains("%2F") && !masked.contains("c/d"),
                "{masked}"
            );
        }
    }
}
