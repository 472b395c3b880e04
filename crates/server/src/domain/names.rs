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

/// The group that makes a user a server-wide administrator (RPort's name).
pub const ADMIN_GROUP: &str = "Administrators";

/// The longest valid user group name, in bytes.
pub const MAX_GROUP_NAME_LEN: usize = 64;

/// User group names travel in URLs and JSON: letters, digits, a few signs and spaces
/// inside, nothing invisible.
pub fn check_group_name(name: &str) -> Result<(), String> {
    let valid = (1..=MAX_GROUP_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@ ".contains(&b))
        && !name.starts_with(' ')
        && !name.ends_with(' ');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "user group name {name:?} must be 1 to 64 letters, digits, '.', '_', '-', '@' or inner spaces"
        ))
    }
}

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
