//! Names, ids and tokens that come from the network, cut to a bounded length before they
//! reach the log, the audit log or the ban table: a login with a 300 KB user name must not
//! cost 300 KB in each of them.
//!
//! The bounds are above the longest valid identifier, so a valid one is never altered; a
//! longer one cannot belong to anybody, and is shown as its start and how much was cut.

use std::borrow::Cow;
use std::fmt::Write;

/// The longest valid agent credential id, in bytes (API, `[server] auth`, `auth_file`).
pub const MAX_CREDENTIAL_ID_LEN: usize = 200;
/// The longest valid client id, in bytes.
pub const MAX_AGENT_ID_LEN: usize = 128;
/// Longer than any token rportd issues: a login token (JWT) for a 64-byte user name is
/// about 400 bytes, an API token 53.
pub const MAX_TOKEN_LEN: usize = 2048;

/// An identifier up to this many bytes is kept whole: more than any valid one.
pub const MAX_ID_LEN: usize = 256;
/// Bytes of a longer identifier kept ahead of the marker.
const KEPT: usize = 64;

/// `text` if it is at most [`MAX_ID_LEN`] bytes, else up to 64 bytes of its start
/// (control characters escaped) followed by `…(+N bytes)`, N being what was left out:
/// at most 96 bytes, whatever the input.
pub fn bounded(text: &str) -> Cow<'_, str> {
    cut(text, MAX_ID_LEN, KEPT)
}

/// Free text (an audit entry's detail): `text` if it is at most `max` bytes, else up to
/// `max` bytes of its start and the same marker.
pub fn bounded_to(text: &str, max: usize) -> Cow<'_, str> {
    cut(text, max, max)
}

fn cut(text: &str, whole_up_to: usize, kept: usize) -> Cow<'_, str> {
    if text.len() <= whole_up_to {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(kept + 24);
    let mut used = 0;
    for c in text.chars() {
        let before = shown.len();
        if c.is_control() {
            let _ = write!(shown, "{}", c.escape_default());
        } else {
            shown.push(c);
        }
        if shown.len() > kept {
            shown.truncate(before);
            break;
        }
        used += c.len_utf8();
    }
    let _ = write!(shown, "…(+{} bytes)", text.len() - used);
    Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_identifiers_are_kept_whole() {
        // Ban keys are an identifier behind a prefix such as `user:` or an IPv6 /64 and
        // `/`; those must stay whole too.
        const { assert!(MAX_CREDENTIAL_ID_LEN + "ffff:ffff:ffff:ffff::/64/".len() <= MAX_ID_LEN) };
        const { assert!(crate::domain::names::MAX_USERNAME_LEN + "user:".len() <= MAX_ID_LEN) };
        const { assert!(MAX_AGENT_ID_LEN <= MAX_ID_LEN) };
        let id = "c".repeat(MAX_ID_LEN);
        assert!(matches!(bounded(&id), Cow::Borrowed(_)));
        assert_eq!(bounded("admin"), "admin");
    }

    #[test]
    fn long_ones_are_cut_and_say_so() {
        let long = "x".repeat(300_000);
        assert_eq!(
            bounded(&long),
            format!("{}…(+299936 bytes)", "x".repeat(64))
        );
        // Cut on a character boundary, control characters escaped: the marker cannot be
        // forged by a line break.
        let tricky = format!("{}é\n{}", "a".repeat(63), "b".repeat(1000));
        let shown = bounded(&tricky);
        assert!(shown.starts_with(&"a".repeat(63)), "{shown}");
        assert!(shown.ends_with("…(+1003 bytes)"), "{shown}");
        let lines = format!("a\nb{}", "c".repeat(1000));
        assert!(!bounded(&lines).contains('\n'));
        let controls = "\u{1}".repeat(1000);
        assert_eq!(
            bounded(&controls),
            format!("{}…(+988 bytes)", "\\u{1}".repeat(12))
        );
        for text in [&long, &tricky, &lines, &controls] {
            assert!(bounded(text).len() <= 96, "{}", bounded(text));
        }
        assert_eq!(
            bounded_to(&long, 1000).len(),
            1000 + "…(+299000 bytes)".len()
        );
        assert_eq!(bounded_to("short", 1000), "short");
    }
}
