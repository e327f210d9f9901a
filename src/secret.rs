//! Secrets referenced from the configuration as `env:NAME` or `file:/path`, never literal.

use std::fmt;

/// A resolved secret. Its `Debug` output is redacted so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<[u8]>);

impl Secret {
    /// Resolves a reference: `env:NAME` reads the environment variable, `file:/path` reads the
    /// file and drops one trailing newline. Literal values are refused so that committed files
    /// never carry a secret.
    pub fn resolve(reference: &str) -> Result<Secret, String> {
        let value = if let Some(name) = reference.strip_prefix("env:") {
            std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?
        } else if let Some(path) = reference.strip_prefix("file:") {
            let mut text = std::fs::read_to_string(path)
                .map_err(|error| format!("cannot read secret file {path}: {error}"))?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            text
        } else {
            return Err(
                "a secret must be written as env:NAME or file:/path, never as a literal value"
                    .to_owned(),
            );
        };
        if value.is_empty() {
            return Err(format!("{reference} resolves to an empty secret"));
        }
        Ok(Secret(value.into_bytes().into_boxed_slice()))
    }

    /// A secret derived from another (such as a decoded `whsec_` key); `None` when empty.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Secret> {
        (!bytes.is_empty()).then(|| Secret(bytes.into_boxed_slice()))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_secrets_are_refused() {
        let error = Secret::resolve("hunter2").unwrap_err();
        assert!(error.contains("env:NAME or file:/path"), "{error}");
    }

    #[test]
    fn missing_environment_variable_is_named() {
        let error = Secret::resolve("env:HOOKRELAY_TEST_SURELY_UNSET").unwrap_err();
        assert_eq!(
            error,
            "environment variable HOOKRELAY_TEST_SURELY_UNSET is not set"
        );
    }

    #[test]
    fn file_secret_drops_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let secret = Secret::resolve(&format!("file:{}", path.display())).unwrap();
        assert_eq!(secret.expose(), b"s3cret");
    }

    #[test]
    fn debug_output_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret").unwrap();
        let secret = Secret::resolve(&format!("file:{}", path.display())).unwrap();
        assert!(!format!("{secret:?}").contains("s3cret"));
    }
}
