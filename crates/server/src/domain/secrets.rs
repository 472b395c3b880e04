//! Secrets in memory and at rest: values that never print, password hashes, and the
//! random strings rportd generates for credentials.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::Rng;
use subtle::ConstantTimeEq;

/// A secret from the configuration. `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A credential's password as an operator wrote it: in clear, or as a bcrypt/argon2 hash.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredSecret {
    Plain(Secret),
    Hash(String),
}

impl StoredSecret {
    /// Recognises bcrypt (`$2a$`, `$2b$`, `$2y$`) and argon2 (`$argon2...`) hashes.
    pub fn from_config(value: &str) -> Result<Self, &'static str> {
        if value.starts_with("$2a$") || value.starts_with("$2b$") || value.starts_with("$2y$") {
            if value.len() != 60 {
                return Err("looks like a bcrypt hash but is not 60 characters long");
            }
            return Ok(Self::Hash(value.to_owned()));
        }
        if value.starts_with("$argon2") {
            if PasswordHash::new(value).is_err() {
                return Err("looks like an argon2 hash but does not parse as one");
            }
            return Ok(Self::Hash(value.to_owned()));
        }
        if value.is_empty() {
            return Err("the password is empty");
        }
        Ok(Self::Plain(Secret::new(value)))
    }

    /// Plain passwords compare in constant time; hashes are slow by design, so call this
    /// off the async runtime for them.
    pub fn verify(&self, password: &str) -> bool {
        match self {
            Self::Plain(secret) => secret.expose().as_bytes().ct_eq(password.as_bytes()).into(),
            Self::Hash(hash) => verify_password(password, hash),
        }
    }
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(_) => f.write_str("Plain(***)"),
            Self::Hash(_) => f.write_str("Hash(***)"),
        }
    }
}

/// Hashes a password with argon2id for storage.
pub fn hash_password(password: &str) -> String {
    let salt_bytes: [u8; 16] = rand::rng().random();
    let Ok(salt) = SaltString::encode_b64(&salt_bytes) else {
        return String::new();
    };
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .unwrap_or_default()
}

/// Checks a password against an argon2 or bcrypt hash; anything else never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if hash.starts_with("$2") {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Whether `hash` is a password hash [`verify_password`] can check (argon2 or bcrypt),
/// rather than something that merely never matches.
pub fn is_password_hash(hash: &str) -> bool {
    if hash.starts_with("$2") {
        return hash.parse::<bcrypt::HashParts>().is_ok();
    }
    // The PHC format makes every part optional; one without its output matches nothing.
    PasswordHash::new(hash).is_ok_and(|parsed| parsed.hash.is_some())
}

/// A random string of URL-safe letters and digits.
pub fn random_secret(len: usize) -> String {
    random_string(
        b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789",
        len,
    )
}

/// `len` characters drawn uniformly from `alphabet` (ASCII).
pub fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_verifies_only_the_right_password() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horse!", &hash));
        assert!(!verify_password("correct horse", "plaintext"));
    }

    #[test]
    fn stored_secrets_recognise_hashes_and_never_print() {
        let bcrypt_hash = bcrypt::hash("1234", 4).expect("bcrypt");
        let stored = StoredSecret::from_config(&bcrypt_hash).expect("bcrypt parses");
        assert!(stored.verify("1234") && !stored.verify("12345"));
        let argon = StoredSecret::from_config(&hash_password("pw")).expect("argon2 parses");
        assert!(argon.verify("pw"));
        let plain = StoredSecret::from_config("1234").expect("plain");
        assert!(plain.verify("1234") && !plain.verify("123"));
        assert_eq!(
            format!("{plain:?} {:?}", Secret::new("x")),
            "Plain(***) ***"
        );
        assert!(StoredSecret::from_config("$2b$short").is_err());
        // RPort's user files hold PHP-style `$2y$` hashes (htpasswd -B).
        let two_y = bcrypt::hash_with_result("1234", 4)
            .expect("bcrypt")
            .format_for_version(bcrypt::Version::TwoY);
        assert!(two_y.starts_with("$2y$04$"));
        let stored = StoredSecret::from_config(&two_y).expect("2y parses");
        assert!(stored.verify("1234") && !stored.verify("1235"));
        assert!(StoredSecret::from_config("").is_err());
    }
}
