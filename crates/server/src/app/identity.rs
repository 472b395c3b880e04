//! The server's identity: the key pair agents pin and the nodes of a cluster present to
//! each other. Configured certificate files win; otherwise the key pair is kept in the
//! store, so that every node sharing it presents the same one and one fingerprint pins
//! the whole cluster. `data_dir` keeps a copy in its key files (as single servers always
//! did), and a server upgraded from those files brings its key pair into the store.

use rport_store::{Store, StoreError};
use rport_transport::tls::{IdentityPem, ServerIdentity};

use super::StartError;
use crate::config::ServerConfig;

/// The store's setting holding the cluster's key pair and certificate, as PEM text.
pub const IDENTITY_SETTING: &str = "server_identity";

/// Where `[server] cert_file`/`key_file` are absent: the store's key pair, made by the
/// first node to start (or brought in from the key files of the first node that had
/// them). Of nodes starting at once, all end with the one the store kept.
pub async fn load(config: &ServerConfig, store: &dyn Store) -> Result<ServerIdentity, StartError> {
    if let Some(files) = &config.server.tls {
        return ServerIdentity::from_files(&files.cert, &files.key).map_err(|source| {
            StartError::Certificate {
                what: "[server] cert_file / key_file",
                source,
            }
        });
    }
    let data_dir = &config.server.data_dir;
    // An upgraded server's own files are offered first, so that it keeps its fingerprint.
    let (offered, own) = match IdentityPem::read_files(data_dir)? {
        Some(pem) => {
            let own = ServerIdentity::load_or_create(data_dir)?;
            (pem, Some(own))
        }
        None => (IdentityPem::generate()?, None),
    };
    let kept = IdentityPem::from_text(
        store
            .setting_or_insert(IDENTITY_SETTING, offered.as_text())
            .await?,
    );
    let identity = ServerIdentity::from_pem(&kept, "").map_err(|err| {
        let reason = match err {
            rport_transport::tls::TlsError::BadPem { reason, .. } => reason,
            other => other.to_string(),
        };
        super::damaged(
            config,
            StoreError::Corrupt {
                what: format!("setting {IDENTITY_SETTING} (the server's key pair)"),
                reason,
            },
        )
    })?;
    match own {
        Some(own) if own.fingerprint() == identity.fingerprint() => {}
        Some(own) => {
            let suffix = format!("replaced-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
            let moved = IdentityPem::move_files_aside(data_dir, &suffix)?;
            tracing::error!(
                "this server's key pair in {} (fingerprint {}) is not its cluster's: the database already holds another one (fingerprint {}), made by a node that started first. This server presents the database's from now on, so agents that pinned {} must pin {}. Its old key pair was moved to {} (and beside it the certificate)",
                data_dir.display(),
                own.fingerprint(),
                identity.fingerprint(),
                own.fingerprint(),
                identity.fingerprint(),
                moved.display(),
            );
            kept.write_files(data_dir)?;
        }
        None => kept.write_files(data_dir)?,
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;

    /// Whether `data_dir` holds key files of a generated identity.
    fn has_key_files(data_dir: &Path) -> bool {
        matches!(IdentityPem::read_files(data_dir), Ok(Some(_)))
    }

    fn config(data_dir: &Path) -> ServerConfig {
        let text = format!(
            "[server]\naddress = \"127.0.0.1:0\"\ndata_dir = {:?}\n",
            data_dir.display().to_string()
        );
        ServerConfig::from_toml_str(&text, "test.conf").expect("config")
    }

    struct Node {
        dir: tempfile::TempDir,
    }

    impl Node {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }

        async fn start(&self, store: &dyn Store) -> ServerIdentity {
            load(&config(self.dir.path()), store)
                .await
                .expect("identity")
        }
    }

    fn store(dir: &Path) -> Arc<dyn Store> {
        Arc::new(rport_store::SqliteStore::open(&dir.join("shared.db")).expect("store"))
    }

    #[tokio::test]
    async fn nodes_sharing_a_store_present_one_identity_and_keep_a_copy() {
        let db = tempfile::tempdir().expect("tempdir");
        let store = store(db.path());
        let (a, b) = (Node::new(), Node::new());
        let (first, second) = tokio::join!(a.start(&*store), b.start(&*store));
        assert_eq!(first.fingerprint(), second.fingerprint());
        assert!(has_key_files(a.dir.path()) && has_key_files(b.dir.path()));
        // A restart keeps it.
        assert_eq!(a.start(&*store).await.fingerprint(), first.fingerprint());
    }

    #[tokio::test]
    async fn an_upgraded_server_brings_its_key_files_into_the_store() {
        let db = tempfile::tempdir().expect("tempdir");
        let store = store(db.path());
        let upgraded = Node::new();
        let before = ServerIdentity::load_or_create(upgraded.dir.path()).expect("old identity");
        assert_eq!(
            upgraded.start(&*store).await.fingerprint(),
            before.fingerprint()
        );
        assert_eq!(
            Node::new().start(&*store).await.fingerprint(),
            before.fingerprint(),
            "a new node takes the upgraded server's key pair"
        );
    }

    #[tokio::test]
    async fn the_store_wins_over_other_key_files_which_are_moved_aside() {
        let db = tempfile::tempdir().expect("tempdir");
        let store = store(db.path());
        let cluster = Node::new().start(&*store).await;
        let late = Node::new();
        let own = ServerIdentity::load_or_create(late.dir.path()).expect("own identity");
        let got = late.start(&*store).await;
        assert_eq!(got.fingerprint(), cluster.fingerprint());
        assert_ne!(own.fingerprint(), cluster.fingerprint());
        let names: Vec<String> = std::fs::read_dir(late.dir.path())
            .expect("read dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("rportd-key.pem.replaced-")),
            "{names:?}"
        );
        // The files now hold the cluster's, so the next start is quiet.
        let files = ServerIdentity::load_or_create(late.dir.path()).expect("files");
        assert_eq!(files.fingerprint(), cluster.fingerprint());
    }

    #[tokio::test]
    async fn a_damaged_identity_in_the_store_stops_the_start_naming_it() {
        let db = tempfile::tempdir().expect("tempdir");
        let store = store(db.path());
        store
            .setting_or_insert(IDENTITY_SETTING, "not a key")
            .await
            .expect("setting");
        let err = load(&config(Node::new().dir.path()), &*store)
            .await
            .expect_err("damaged");
        assert!(err.to_string().contains(IDENTITY_SETTING), "{err}");
    }
}
