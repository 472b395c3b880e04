//! The data dir: created private to rportd's user, with the server's fingerprint in it.

use std::path::Path;

use rport_protocol::Fingerprint;

use super::{FINGERPRINT_FILE, StartError};

/// Creates the data dir, readable by rportd's user alone.
pub fn create_data_dir(path: &Path) -> Result<(), StartError> {
    let err = |source| StartError::DataDir {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Writes the fingerprint agents pin, for operators to copy into `rport.conf`.
pub fn write_fingerprint(data_dir: &Path, fingerprint: Fingerprint) -> Result<(), StartError> {
    let path = data_dir.join(FINGERPRINT_FILE);
    std::fs::write(&path, format!("{fingerprint}\n")).map_err(|source| StartError::DataDir {
        path: path.display().to_string(),
        source,
    })
}
