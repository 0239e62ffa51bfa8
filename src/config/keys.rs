//! The masking keys (current and previous) and the optional recovery key, with their ids. A key is
//! used byte for byte, so its rules are strict and every error names the variable, never the value.

use login_etl_core::mask::{KeyTooShort, Masker};
use login_etl_core::vault::RecoveryKey;

use crate::config_error::ConfigError;

/// The id recorded with vault entries sealed by a key whose id variable is unset.
pub const DEFAULT_RECOVERY_KEY_ID: &str = "r1";

/// Which masking key: the one in use, or the one before a rotation (kept for lookups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySlot {
    Current,
    Previous,
}

impl KeySlot {
    fn variables(self) -> (&'static str, &'static str) {
        match self {
            KeySlot::Current => ("MASKING_KEY", "MASKING_KEY_ID"),
            KeySlot::Previous => ("MASKING_KEY_PREVIOUS", "MASKING_KEY_PREVIOUS_ID"),
        }
    }
}

/// Reads a masking key and its id; `None` when the key variable is unset.
pub fn masking_key(
    lookup: &impl Fn(&str) -> Option<String>,
    slot: KeySlot,
) -> Result<Option<Masker>, ConfigError> {
    let (key_variable, id_variable) = slot.variables();
    let Some(key) = key_value(lookup, key_variable)? else {
        return Ok(None);
    };
    let masker = Masker::new(key.as_bytes()).map_err(|KeyTooShort { actual_bytes }| {
        ConfigError::Invalid {
            variable: key_variable,
            why: format!(
                "it is {actual_bytes} bytes; it must be at least {} (e.g. `openssl rand -hex 32`)",
                login_etl_core::mask::MIN_KEY_BYTES
            ),
        }
    })?;
    let id = key_id(lookup, id_variable, login_etl_core::mask::DEFAULT_KEY_ID)?;
    Ok(Some(masker.with_key_id(id)))
}

/// A key variable's value, the one rule for every key (`MASKING_KEY`, `MASKING_KEY_PREVIOUS`,
/// `RECOVERY_KEY`): unset or empty is `None`; whitespace around it is refused, not trimmed. A
/// key is used byte for byte, so a trailing newline (from `echo` or a file) kept in it would
/// silently change every mask, and trimmed would make two different secrets act as one.
fn key_value(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
) -> Result<Option<String>, ConfigError> {
    let Some(value) = lookup(variable).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.trim() != value {
        return Err(ConfigError::Invalid {
            variable,
            why: "it starts or ends with whitespace (a newline from `echo` or a file?); remove it: a key is used byte for byte".into(),
        });
    }
    Ok(Some(value))
}

fn key_id(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: &str,
) -> Result<String, ConfigError> {
    let id = lookup(variable)
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty());
    let id = id.unwrap_or_else(|| default.to_owned());
    if id.chars().count() > 32 {
        return Err(ConfigError::Invalid {
            variable,
            why: "a key id is at most 32 characters".into(),
        });
    }
    Ok(id)
}

/// Reads `RECOVERY_KEY` (128 hex characters) and `RECOVERY_KEY_ID`; `None` when recovery is off.
pub fn recovery_key(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<RecoveryKey>, ConfigError> {
    let Some(hex) = key_value(lookup, "RECOVERY_KEY")? else {
        return Ok(None);
    };
    let id = key_id(lookup, "RECOVERY_KEY_ID", DEFAULT_RECOVERY_KEY_ID)?;
    RecoveryKey::from_hex(&id, &hex)
        .map(Some)
        .map_err(|bad| ConfigError::Invalid {
            variable: "RECOVERY_KEY",
            why: bad.to_string(),
        })
}
