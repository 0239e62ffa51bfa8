//! Keyed masking of personal data: lowercase hex of HMAC-SHA256(MASKING_KEY, canonical value).
//!
//! Equal values give equal masks, so analysts can still find duplicates; without the key nobody
//! can brute-force the ~4 billion IPv4 addresses or the 10^9 SSN-shaped device ids, which an
//! unkeyed SHA-256 would give away in seconds.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::vault::{PiiKind, RecoveryKey};

/// The id recorded with rows when `MASKING_KEY_ID` is unset.
pub const DEFAULT_KEY_ID: &str = "k1";

/// The shortest key we accept: the HMAC-SHA256 output size, so the key is not the weak link.
pub const MIN_KEY_BYTES: usize = 32;

/// `Masker::new` was given a key shorter than `MIN_KEY_BYTES`; the function's configuration names the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTooShort {
    pub actual_bytes: usize,
}

/// Masks values with one key. Cheap to share: the keyed HMAC state is computed once and cloned
/// per value, which skips re-hashing the key for every record.
///
/// It also knows the key's id (stored with each row, so rows from before a key rotation can be
/// told apart) and, when recovery is on, the key that seals a recoverable copy of each value
/// into the vault (`vault.rs`).
#[derive(Clone)]
pub struct Masker {
    keyed: Hmac<Sha256>,
    key_id: String,
    recovery: Option<RecoveryKey>,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Masker {{ key: <redacted>, key_id: {:?}, recovery: {:?} }}",
            self.key_id, self.recovery
        )
    }
}

impl Masker {
    pub fn new(key: &[u8]) -> Result<Self, KeyTooShort> {
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyTooShort {
                actual_bytes: key.len(),
            });
        }
        let keyed = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
        Ok(Masker {
            keyed,
            key_id: DEFAULT_KEY_ID.to_owned(),
            recovery: None,
        })
    }

    /// Names the key (`MASKING_KEY_ID`); rows record it in `mask_key_id`.
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = key_id.into();
        self
    }

    /// Also seals every value into the vault with `key` (`RECOVERY_KEY`).
    pub fn with_recovery(mut self, key: RecoveryKey) -> Self {
        self.recovery = Some(key);
        self
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The id of the recovery key, when recovery is on.
    pub fn recovery_key_id(&self) -> Option<&str> {
        self.recovery.as_ref().map(|key| key.id.as_str())
    }

    /// The vault entry for a value and its mask; `None` when recovery is off (and then the
    /// canonical value is not even formatted).
    pub fn seal(
        &self,
        kind: PiiKind,
        masked: &str,
        canonical: impl fmt::Display,
    ) -> Option<Vec<u8>> {
        let key = self.recovery.as_ref()?;
        Some(key.seal(kind, masked, &canonical.to_string()))
    }

    /// Masks an address in its canonical spelling (as `IpAddr` prints it, an IPv4-mapped IPv6
    /// address folded to its IPv4 address), so "2001:DB8::1" and "2001:db8:0:0:0:0:0:1" mask
    /// equally, and so do "::ffff:1.2.3.4" and "1.2.3.4".
    pub fn mask_ip(&self, ip: IpAddr) -> String {
        let mut canonical = StackText::new();
        match ip.to_canonical() {
            // The common case, spelled out: `Display` costs more than the rest of the mask.
            IpAddr::V4(v4) => write_ipv4(&mut canonical, v4),
            IpAddr::V6(v6) => write!(canonical, "{v6}").expect("an IP address fits 64 bytes"),
        }
        self.mask(canonical.as_bytes())
    }

    /// Masks a device id with surrounding whitespace trimmed.
    pub fn mask_device_id(&self, device_id: &str) -> String {
        self.mask(device_id.trim().as_bytes())
    }

    /// HMAC-SHA256 of `canonical`, as lowercase hex.
    pub fn mask(&self, canonical: &[u8]) -> String {
        let mut mac = self.keyed.clone();
        mac.update(canonical);
        to_lower_hex(&mac.finalize().into_bytes())
    }
}

pub(crate) fn to_lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = Vec::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        hex.extend_from_slice(&[
            DIGITS[usize::from(byte >> 4)],
            DIGITS[usize::from(byte & 0x0f)],
        ]);
    }
    String::from_utf8(hex).expect("hex digits are ASCII")
}

/// `v4` in dotted decimal exactly as `Ipv4Addr`'s `Display` writes it (no leading zeros).
fn write_ipv4(out: &mut StackText, v4: Ipv4Addr) {
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if octet >= 100 {
            out.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            out.push(b'0' + octet / 10 % 10);
        }
        out.push(b'0' + octet % 10);
    }
}

/// A small stack buffer for formatting an address without a heap allocation per record.
struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl StackText {
    fn new() -> Self {
        StackText {
            buf: [0; 64],
            len: 0,
        }
    }
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    /// Appends one byte; an IPv4 address (at most 15) always fits.
    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker() -> Masker {
        Masker::new(b"an-example-masking-key-of-32-bytes!").unwrap()
    }

    #[test]
    fn matches_the_rfc_4231_test_vector() {
        // RFC 4231, test case 6: a 131-byte key of 0xaa.
        let masker = Masker::new(&[0xaa; 131]).unwrap();
        assert_eq!(
            masker.mask(b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn refuses_keys_shorter_than_32_bytes() {
        assert_eq!(
            Masker::new(&[7; 31]).unwrap_err(),
            KeyTooShort { actual_bytes: 31 }
        );
        assert!(Masker::new(&[7; 32]).is_ok());
    }

    #[test]
    fn equal_addresses_in_different_spellings_mask_equally() {
        let m = masker();
        let short: IpAddr = "2001:db8::1".parse().unwrap();
        let long: IpAddr = "2001:0DB8:0:0:0:0:0:0001".parse().unwrap();
        assert_eq!(m.mask_ip(short), m.mask_ip(long));
        assert_eq!(m.mask_ip(short), m.mask(b"2001:db8::1"));
    }

    #[test]
    fn ipv4_mapped_addresses_mask_as_their_ipv4_address() {
        let m = masker();
        let plain: IpAddr = "1.2.3.4".parse().unwrap();
        for mapped in [
            "::ffff:1.2.3.4",
            "::FFFF:0102:0304",
            "0:0:0:0:0:ffff:1.2.3.4",
        ] {
            let mapped: IpAddr = mapped.parse().unwrap();
            assert_eq!(m.mask_ip(mapped), m.mask_ip(plain), "{mapped}");
        }
        assert_eq!(m.mask_ip(plain), m.mask(b"1.2.3.4"));
        // Only the mapped form folds: the deprecated IPv4-compatible ::1.2.3.4 is another address.
        let compatible: IpAddr = "::1.2.3.4".parse().unwrap();
        assert_ne!(m.mask_ip(compatible), m.mask_ip(plain));
    }

    #[test]
    fn ipv4_addresses_are_spelled_as_display_spells_them() {
        let m = masker();
        for octets in [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [1, 2, 3, 4],
            [10, 0, 99, 100],
            [199, 172, 111, 135],
            [9, 10, 109, 110],
        ] {
            let ip = Ipv4Addr::from(octets);
            let mut fast = StackText::new();
            write_ipv4(&mut fast, ip);
            assert_eq!(fast.as_bytes(), ip.to_string().as_bytes());
            assert_eq!(m.mask_ip(IpAddr::V4(ip)), m.mask(ip.to_string().as_bytes()));
        }
    }

    #[test]
    fn device_ids_are_trimmed_before_masking() {
        let m = masker();
        assert_eq!(
            m.mask_device_id(" 593-47-5928\t"),
            m.mask_device_id("593-47-5928")
        );
    }

    #[test]
    fn masks_are_64_lowercase_hex_characters_and_depend_on_the_key() {
        let a = masker().mask_device_id("593-47-5928");
        let b = Masker::new(&[1; 32]).unwrap().mask_device_id("593-47-5928");
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(a, b);
    }

    #[test]
    fn debug_output_hides_the_key() {
        let debug = format!("{:?}", masker());
        assert!(
            debug.starts_with("Masker { key: <redacted>, key_id: \"k1\""),
            "{debug}"
        );
    }
}
