//! Time-based one-time passwords (RFC 6238, as authenticator apps and RPort make them):
//! HMAC-SHA1 over 30-second steps, 6 digits, one step of clock skew either way; secrets
//! of 20 random bytes, written in base32.

use std::fmt;

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// Seconds one code is valid for.
pub const STEP_SECONDS: u64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Steps before and after the current one whose codes are accepted too (clock skew).
const SKEW_STEPS: u64 = 1;
/// RPort's (pquerna/otp's) secret size.
const SECRET_BYTES: usize = 20;

/// A user's TOTP secret, base32 without padding. `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret {
    base32: String,
    key: Vec<u8>,
}

impl TotpSecret {
    /// A new random secret.
    pub fn generate() -> Self {
        let key: [u8; SECRET_BYTES] = rand::rng().random();
        Self {
            base32: BASE32_NOPAD.encode(&key),
            key: key.to_vec(),
        }
    }

    /// A secret as stored (base32, padded or not, any case); `None` if it is not base32
    /// or empty.
    pub fn from_base32(text: &str) -> Option<Self> {
        let normalised = text.trim().trim_end_matches('=').to_ascii_uppercase();
        let key = BASE32_NOPAD.decode(normalised.as_bytes()).ok()?;
        if key.is_empty() {
            return None;
        }
        Some(Self {
            base32: normalised,
            key,
        })
    }

    pub fn base32(&self) -> &str {
        &self.base32
    }

    /// The `otpauth://` URL authenticator apps read from the QR code. Like RPort, the
    /// issuer is the user name and the account name is `[api] totp_account_name`.
    pub fn otpauth_url(&self, issuer: &str, account_name: &str) -> String {
        let label = format!(
            "{}:{}",
            percent_encode(issuer),
            percent_encode(account_name)
        );
        format!(
            "otpauth://totp/{label}?algorithm=SHA1&digits={DIGITS}&issuer={}&period={STEP_SECONDS}&secret={}",
            percent_encode(issuer),
            self.base32
        )
    }

    /// Whether `code` is this secret's code at `unix_time`, or one step before or after.
    /// Anything but exactly six ASCII digits is wrong.
    pub fn verify(&self, code: &str, unix_time: u64) -> bool {
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let now = unix_time / STEP_SECONDS;
        let mut matched = false;
        for step in now.saturating_sub(SKEW_STEPS)..=now.saturating_add(SKEW_STEPS) {
            let expected = format!(
                "{:0width$}",
                hotp(&self.key, step, DIGITS),
                width = DIGITS as usize
            );
            // Every candidate is compared, so the time taken says nothing of which matched.
            matched |= bool::from(expected.as_bytes().ct_eq(code.as_bytes()));
        }
        matched
    }

    /// The code at `unix_time`, as an authenticator app shows it.
    #[cfg(test)]
    fn code_at(&self, unix_time: u64) -> String {
        format!(
            "{:0width$}",
            hotp(&self.key, unix_time / STEP_SECONDS, DIGITS),
            width = DIGITS as usize
        )
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// HOTP (RFC 4226): the `digits`-digit code of `key` for `counter`.
fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        return u32::MAX; // HMAC takes keys of any length
    };
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    binary % 10u32.pow(digits)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 rows (8 digits, key "12345678901234567890").
    #[test]
    fn rfc_6238_sha1_test_vectors() {
        let key = b"12345678901234567890";
        let vectors = [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ];
        for (time, code) in vectors {
            assert_eq!(hotp(key, time / STEP_SECONDS, 8), code, "T = {time}");
        }
    }

    #[test]
    fn six_digit_codes_are_accepted_one_step_either_side_only() {
        let secret =
            TotpSecret::from_base32(&BASE32_NOPAD.encode(b"12345678901234567890")).expect("b32");
        // RFC 4226's HOTP vectors give the 6-digit codes for counters 37 ("287082") etc.
        assert_eq!(secret.code_at(59), "287082");
        assert!(secret.verify("287082", 59));
        assert!(secret.verify("287082", 59 + STEP_SECONDS));
        assert!(secret.verify("287082", 60 - STEP_SECONDS - 1));
        assert!(!secret.verify("287082", 59 + 2 * STEP_SECONDS));
        assert!(!secret.verify("287083", 59));
        for malformed in ["", "28708", "2870822", "28708a", " 287082", "２87082"] {
            assert!(!secret.verify(malformed, 59), "{malformed:?}");
        }
    }

    #[test]
    fn secrets_round_trip_in_base32_and_never_print() {
        let secret = TotpSecret::generate();
        assert_eq!(
            secret.base32().len(),
            32,
            "20 bytes are 32 base32 characters"
        );
        let again = TotpSecret::from_base32(&secret.base32().to_lowercase()).expect("parses");
        assert_eq!(again, secret);
        assert_eq!(format!("{secret:?}"), "***");
        assert!(TotpSecret::from_base32("not base32!").is_none());
        assert!(TotpSecret::from_base32("").is_none());
        assert_ne!(TotpSecret::generate(), secret);
    }

    #[test]
    fn the_otpauth_url_names_issuer_account_and_parameters() {
        let secret = TotpSecret::from_base32("JBSWY3DPEHPK3PXP").expect("b32");
        assert_eq!(
            secret.otpauth_url("alice smith", "RPort"),
            "otpauth://totp/alice%20smith:RPort?algorithm=SHA1&digits=6&issuer=alice%20smith&period=30&secret=JBSWY3DPEHPK3PXP"
        );
    }
}
