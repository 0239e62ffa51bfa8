//! The PII vault: optional, recoverable copies of masked values for authorised users.
//!
//! Each masked value can have a vault entry: the canonical value encrypted with AES-SIV
//! (RFC 5297) under `RECOVERY_KEY`. AES-SIV is deterministic, so equal values give equal entries
//! and a redelivery writes nothing new; it is also authenticated, so a wrong key fails loudly
//! instead of yielding garbage. The kind and the masked value are bound in as associated data,
//! so an entry cannot be moved to another masked value. Analysts hold neither key; the vault
//! table is granted separately (docs/privacy.md).

use std::fmt;

use aes_siv::siv::Aes256Siv;
use aes_siv::KeyInit;

/// AES-256-SIV takes two 256-bit keys: 64 bytes, given as 128 hex characters.
pub const RECOVERY_KEY_BYTES: usize = 64;

/// Which personal field a vault entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiiKind {
    Ip,
    DeviceId,
}

impl PiiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Ip => "ip",
            PiiKind::DeviceId => "device_id",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ip" => Some(PiiKind::Ip),
            "device_id" => Some(PiiKind::DeviceId),
            _ => None,
        }
    }
}

/// The recovery secret and its id (stored with every entry, so rotation knows which key to use).
#[derive(Clone)]
pub struct RecoveryKey {
    pub id: String,
    bytes: [u8; RECOVERY_KEY_BYTES],
}

impl fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecoveryKey {{ id: {:?}, key: <redacted> }}", self.id)
    }
}

/// Why a recovery key cannot be read, said without echoing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRecoveryKey {
    /// It has `chars` characters, not `RECOVERY_KEY_BYTES * 2`.
    WrongLength {
        chars: usize,
    },
    NotHex,
}

impl fmt::Display for BadRecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRecoveryKey::WrongLength { chars } => write!(
                f,
                "it must be {} hex characters ({RECOVERY_KEY_BYTES} bytes, e.g. `openssl rand -hex 64`), it has {chars}",
                RECOVERY_KEY_BYTES * 2
            ),
            BadRecoveryKey::NotHex => f.write_str("it must be hex digits only"),
        }
    }
}

impl std::error::Error for BadRecoveryKey {}

impl RecoveryKey {
    /// Reads the key from hex.
    pub fn from_hex(id: &str, hex: &str) -> Result<Self, BadRecoveryKey> {
        if hex.len() != RECOVERY_KEY_BYTES * 2 {
            return Err(BadRecoveryKey::WrongLength { chars: hex.len() });
        }
        let mut bytes = [0u8; RECOVERY_KEY_BYTES];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| BadRecoveryKey::NotHex)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| BadRecoveryKey::NotHex)?;
        }
        Ok(RecoveryKey {
            id: id.to_owned(),
            bytes,
        })
    }

    /// The vault ciphertext of `canonical`, whose mask is `masked_value`. (AES-SIV needs a
    /// mutable cipher; building one per value keeps the key shareable and costs well under a
    /// microsecond, paid only when recovery is on.)
    pub fn seal(&self, kind: PiiKind, masked_value: &str, canonical: &str) -> Vec<u8> {
        Aes256Siv::new(&self.bytes.into())
            .encrypt(associated_data(kind, masked_value), canonical.as_bytes())
            .expect("AES-SIV seals any plaintext with two headers")
    }

    /// Decrypts a vault entry back to the canonical value.
    pub fn open(
        &self,
        kind: PiiKind,
        masked_value: &str,
        ciphertext: &[u8],
    ) -> Result<String, OpenError> {
        let mut cipher = Aes256Siv::new(&self.bytes.into());
        let plaintext = cipher
            .decrypt(associated_data(kind, masked_value), ciphertext)
            .map_err(|_| OpenError::Authentication)?;
        String::from_utf8(plaintext).map_err(|_| OpenError::NotText)
    }
}

/// Why an entry could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Wrong key, or the entry was altered or moved to another masked value.
    Authentication,
    NotText,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Authentication => write!(
                f,
                "authentication failed: RECOVERY_KEY is not the key this entry was sealed with, or the entry was altered"
            ),
            OpenError::NotText => write!(f, "the entry decrypted to bytes that are not UTF-8 text"),
        }
    }
}

impl std::error::Error for OpenError {}

fn associated_data(kind: PiiKind, masked_value: &str) -> [&[u8]; 2] {
    [kind.as_str().as_bytes(), masked_value.as_bytes()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, fill: u8) -> RecoveryKey {
        RecoveryKey::from_hex(id, &format!("{fill:02x}").repeat(64)).unwrap()
    }

    #[test]
    fn round_trips_ipv4_ipv6_and_device_ids() {
        let key = key("r1", 7);
        for (kind, value) in [
            (PiiKind::Ip, "199.172.111.135"),
            (PiiKind::Ip, "2001:db8::1"),
            (PiiKind::DeviceId, "593-47-5928"),
        ] {
            let sealed = key.seal(kind, "mask", value);
            assert_ne!(sealed, value.as_bytes());
            assert_eq!(key.open(kind, "mask", &sealed).unwrap(), value);
        }
    }

    #[test]
    fn sealing_is_deterministic() {
        let key = key("r1", 7);
        let a = key.seal(PiiKind::Ip, "m", "10.0.0.1");
        let b = key.seal(PiiKind::Ip, "m", "10.0.0.1");
        assert_eq!(a, b);
    }

    #[test]
    fn a_wrong_key_fails_authentication_instead_of_giving_garbage() {
        let sealed = key("r1", 7).seal(PiiKind::Ip, "m", "10.0.0.1");
        assert_eq!(
            key("r2", 8).open(PiiKind::Ip, "m", &sealed),
            Err(OpenError::Authentication)
        );
    }

    #[test]
    fn an_entry_cannot_be_moved_to_another_mask_or_kind() {
        let key = key("r1", 7);
        let sealed = key.seal(PiiKind::Ip, "mask-a", "10.0.0.1");
        assert_eq!(
            key.open(PiiKind::Ip, "mask-b", &sealed),
            Err(OpenError::Authentication)
        );
        assert_eq!(
            key.open(PiiKind::DeviceId, "mask-a", &sealed),
            Err(OpenError::Authentication)
        );
    }

    #[test]
    fn key_errors_say_what_is_expected_without_the_secret() {
        let error = RecoveryKey::from_hex("r1", "abcd").unwrap_err();
        assert_eq!(error, BadRecoveryKey::WrongLength { chars: 4 });
        assert!(error.to_string().contains("128 hex characters"), "{error}");
        let error = RecoveryKey::from_hex("r1", &"zz".repeat(64)).unwrap_err();
        assert_eq!(error.to_string(), "it must be hex digits only");
        assert!(!format!("{:?}", key("r1", 0xab)).contains("abab"));
    }
}
