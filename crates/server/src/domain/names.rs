//! Names and their rules: user names, project keys and the administrators' group, as
//! the configuration, the API and `rportd user` all check them.

/// The longest valid API user name, in bytes.
pub const MAX_USERNAME_LEN: usize = 64;

/// User names travel in HTTP basic auth and URLs: no `:`, no `/`, nothing invisible.
pub fn check_username(name: &str) -> Result<(), String> {
    let valid = (1..=MAX_USERNAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "user name {name:?} must be 1 to 64 letters, digits, '.', '_', '-' or '@'"
        ))
    }
}

/// The group that makes a user of an RPort user file a server-wide administrator.
pub const ADMIN_GROUP: &str = "Administrators";

/// Project keys end up in URLs (`/api/v2/{project_key}/...`): short, lower case, plain.
pub fn check_project_key(key: &str) -> Result<(), String> {
    let valid = (1..=63).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "project key {key:?} must be 1 to 63 lower-case letters, digits, '-' or '_', starting with a letter or digit"
        ))
    }
}
