//! The server's identity as agents pin it: SHA-256 of its public key, in one string form.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// SHA-256 of a DER-encoded SubjectPublicKeyInfo.
///
/// Displayed as 32 lowercase hex pairs joined by `:`; parsing accepts exactly that, plus
/// upper case and the form without colons, but always all 32 bytes: a prefix never matches.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of_public_key(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "not a fingerprint: expected 32 hex byte pairs separated by ':' (as rportd prints it), got {0:?}"
)]
pub struct FingerprintParseError(String);

impl FromStr for Fingerprint {
    type Err = FingerprintParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let hex_digits: String = if trimmed.contains(':') {
            let parts: Vec<&str> = trimmed.split(':').collect();
            if parts.len() != 32 || parts.iter().any(|p| p.len() != 2) {
                return Err(FingerprintParseError(s.to_owned()));
            }
            parts.concat()
        } else {
            trimmed.to_owned()
        };
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&hex_digits, &mut bytes)
            .map_err(|_| FingerprintParseError(s.to_owned()))?;
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let fp = Fingerprint::of_public_key(b"some key");
        let shown = fp.to_string();
        assert_eq!(shown.len(), 32 * 3 - 1);
        assert_eq!(shown.parse::<Fingerprint>(), Ok(fp));
        assert_eq!(shown.to_uppercase().parse::<Fingerprint>(), Ok(fp));
        assert_eq!(shown.replace(':', "").parse::<Fingerprint>(), Ok(fp));
    }

    #[test]
    fn prefix_and_garbage_are_refused() {
        let shown = Fingerprint::of_public_key(b"k").to_string();
        assert!(shown[..47].parse::<Fingerprint>().is_err());
        assert!(
            "2a:c8:79:09:80:ba:7c:60:05:e5:2c:99:6d:75:56:24"
                .parse::<Fingerprint>()
                .is_err()
        );
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
        assert!("".parse::<Fingerprint>().is_err());
    }
}
