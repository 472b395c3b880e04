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

/// Name of the file in `data_dir` holding this node's id in a cluster.
pub const NODE_ID_FILE: &str = "node-id";

/// This node's id: made once (the host's name and a random part, so that two nodes on
/// one host differ) and kept in the data dir, so that a restarted node finds the agents
/// and tunnels it held.
pub fn node_id(data_dir: &Path) -> Result<String, StartError> {
    let path = data_dir.join(NODE_ID_FILE);
    let err = |source| StartError::DataDir {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let random = hex::encode(rand::random::<[u8; 4]>());
    let id = if host.is_empty() {
        format!("node-{random}")
    } else {
        format!("{host}-{random}")
    };
    std::fs::write(&path, format!("{id}\n")).map_err(err)?;
    Ok(id)
}
