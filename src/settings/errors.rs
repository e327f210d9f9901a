//! Problems found in a configuration, each with the dotted key path it belongs to, collected
//! rather than stopping at the first so that `hookrelay check-config` prints a complete list.

use std::fmt;

/// One configuration problem, with the dotted key path it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn one(path: impl Into<String>, reason: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.push(path, reason);
        errors
    }

    pub fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            reason: reason.into(),
        });
    }

    pub fn extend(&mut self, other: ConfigErrors) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    pub fn from_figment(error: figment::Error) -> Self {
        let mut errors = Self::default();
        for error in error {
            let path = error.path.join(".");
            let origin = error
                .metadata
                .as_ref()
                .map(|metadata| format!(" (from {})", metadata.name))
                .unwrap_or_default();
            errors.push(path, format!("{}{origin}", error.kind));
        }
        errors
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            if error.path.is_empty() {
                write!(f, "{}", error.reason)?;
            } else {
                write!(f, "{}: {}", error.path, error.reason)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
