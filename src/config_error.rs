//! The error of a setting: which variable, and what to do about it. Every part of the function
//! that reads settings (the configuration, the store's database settings, the secrets) gives
//! this one, so a start-up failure always names the variable to fix and never its value.

use std::fmt;

/// A setting that is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    Missing {
        variable: &'static str,
        hint: &'static str,
    },
    Invalid {
        variable: &'static str,
        why: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Missing { variable, hint } => write!(f, "{variable} is not set: {hint}"),
            ConfigError::Invalid { variable, why } => write!(f, "{variable} is invalid: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}
