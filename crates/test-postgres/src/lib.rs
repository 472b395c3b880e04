//! Throwaway PostgreSQL servers for tests: Debian's PostgreSQL, `initdb` into a fresh temp
//! dir, a free loopback port, a role with a password and a database per test. Never the
//! machine's own cluster, never a fixed port.
//!
//! As root (`initdb` refuses root) the server runs as `nobody`, through `setpriv`, which
//! execs: the child's PID is the postmaster's. A watchdog process, holding one end of a
//! pipe whose other end only this process holds, kills the server and removes its dir
//! when this process ends however it ends (a server shared through a `static` is never
//! dropped).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Where Debian's packages put each major version's programs.
const DEBIAN_VERSIONS: &str = "/usr/lib/postgresql";
/// The superuser the harness itself connects as.
const SUPERUSER: &str = "postgres";
/// The role tests connect as; it owns their databases.
pub const ROLE: &str = "rport";
/// Ports tried before giving up, when another process takes the free one first.
const PORT_ATTEMPTS: usize = 5;
/// How long a server may take to accept connections, or to stop.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `start_again` retries while a killed server's processes still hold its
/// shared memory.
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);
/// Kills the server (`$1`, a PID) and removes its dir (`$2`) once its standard input
/// closes, that is when the test process has ended; interrupts are for the test process.
const WATCHDOG: &str = r#"trap '' INT TERM HUP
read -r _ || true
kill -KILL "$1" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$1" 2>/dev/null || break; sleep 0.2; done
rm -rf -- "$2""#;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "PostgreSQL is not installed (no {DEBIAN_VERSIONS}/*/bin/postgres); \
         install it with: apt-get install postgresql"
    )]
    NotInstalled,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// One PostgreSQL server in its own temp dir; killed and removed on drop.
pub struct TempPostgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    /// When root: run as `nobody` (initdb refuses root).
    unprivileged: bool,
    superuser_password: String,
    password: String,
    running: Option<Running>,
}

struct Running {
    postmaster: Child,
    watchdog: Child,
}

impl TempPostgres {
    /// Runs `initdb` and starts the server; ready to connect when this returns.
    pub fn start() -> Result<Self, Error> {
        let bin = newest_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("rport-postgres-")
            .tempdir()
            .map_err(io("creating a temp dir"))?;
        let unprivileged = fs::metadata("/proc/self")
            .map_err(io("reading /proc/self"))?
            .uid()
            == 0;
        let mut server = Self {
            bin,
            port: 0,
            unprivileged,
            superuser_password: random_hex()?,
            password: random_hex()?,
            running: None,
            dir,
        };
        server.init()?;
        for attempt in 1..=PORT_ATTEMPTS {
            server.port = free_port()?;
            match server.launch() {
                Ok(()) => break,
                Err(Launch::PortTaken) if attempt < PORT_ATTEMPTS => continue,
                Err(Launch::PortTaken) => {
                    return Err(Error::Failed(format!(
                        "PostgreSQL found no free port in {PORT_ATTEMPTS} attempts"
                    )));
                }
                Err(Launch::Failed(err)) => return Err(err),
            }
        }
        let password = server.password.clone();
        server.superuser_sql(&[
            &format!("CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{password}'"),
            &format!("CREATE DATABASE {ROLE} OWNER {ROLE}"),
        ])?;
        Ok(server)
    }

    /// One server for every test of this test binary, started by the first that asks.
    pub fn shared() -> Result<&'static TempPostgres, &'static Error> {
        static SHARED: OnceLock<Result<TempPostgres, Error>> = OnceLock::new();
        SHARED.get_or_init(TempPostgres::start).as_ref()
    }

    /// `postgres://rport:PASSWORD@127.0.0.1:PORT/rport`.
    pub fn url(&self) -> String {
        self.url_of(ROLE)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir holding the data, the socket and `postgres.log`.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The postmaster's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.postmaster.id())
    }

    /// Creates an empty database owned by the test role and returns its URL. `name` is
    /// lower-case letters, digits and `_`.
    pub fn create_database(&self, name: &str) -> Result<String, Error> {
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if name.is_empty() || !plain {
            return Err(Error::Failed(format!(
                "{name:?} is not a plain database name (a-z, 0-9, _)"
            )));
        }
        self.superuser_sql(&[&format!("CREATE DATABASE {name} OWNER {ROLE}")])?;
        Ok(self.url_of(name))
    }

    /// A database of its own for one test: `prefix` and a number no other call in this
    /// process got.
    pub fn create_unique_database(&self, prefix: &str) -> Result<String, Error> {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let number = NEXT.fetch_add(1, Ordering::Relaxed);
        self.create_database(&format!("{prefix}_{number}"))
    }

    /// Fast shutdown (SIGINT: sessions are ended, committed work is on disk), waited for.
    pub fn stop(&mut self) -> Result<(), Error> {
        let Some(mut running) = self.running.take() else {
            return Ok(());
        };
        end_watchdog(&mut running.watchdog);
        let pid = running.postmaster.id().to_string();
        let sent = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .map_err(io("running kill"))?;
        if !sent.success() {
            return Err(Error::Failed(format!("kill -INT {pid} failed: {sent}")));
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if running
                .postmaster
                .try_wait()
                .map_err(io("waiting for PostgreSQL"))?
                .is_some()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = running.postmaster.kill();
                let _ = running.postmaster.wait();
                return Err(Error::Failed(format!(
                    "PostgreSQL did not stop within {STOP_TIMEOUT:?}; killed it"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the stopped (or killed) server again, on the same dir and port.
    pub fn start_again(&mut self) -> Result<(), Error> {
        if self.running.is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + RESTART_TIMEOUT;
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                // A killed postmaster's backends may hold its shared memory a moment longer.
                Err(Launch::Failed(_)) | Err(Launch::PortTaken) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(Launch::PortTaken) => {
                    return Err(Error::Failed(format!(
                        "port {} was taken while PostgreSQL was down",
                        self.port
                    )));
                }
                Err(Launch::Failed(err)) => return Err(err),
            }
        }
    }

    /// SIGKILL to the postmaster, as a crash would end it.
    pub fn kill(&mut self) -> Result<(), Error> {
        let Some(mut running) = self.running.take() else {
            return Ok(());
        };
        end_watchdog(&mut running.watchdog);
        running
            .postmaster
            .kill()
            .map_err(io("killing PostgreSQL"))?;
        running
            .postmaster
            .wait()
            .map_err(io("waiting for PostgreSQL"))?;
        Ok(())
    }

    fn url_of(&self, database: &str) -> String {
        format!(
            "postgres://{ROLE}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// A command that runs `program` as the server's user.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = match self.unprivileged {
            true => {
                let mut setpriv = Command::new("setpriv");
                setpriv
                    .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
                    .arg(program);
                setpriv
            }
            false => Command::new(program),
        };
        command.env("LC_ALL", "C").env_remove("PGDATA");
        command
    }

    fn init(&self) -> Result<(), Error> {
        let password_file = self.dir.path().join("superuser-password");
        fs::create_dir(self.socket_dir()).map_err(io("creating the socket dir"))?;
        fs::write(&password_file, &self.superuser_password)
            .map_err(io("writing the password file"))?;
        if self.unprivileged {
            let chown = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(self.dir.path())
                .status()
                .map_err(io("running chown"))?;
            if !chown.success() {
                return Err(Error::Failed(format!(
                    "chown nobody:nogroup failed: {chown}"
                )));
            }
        }
        let log = self.open_log()?;
        let status = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args(["-E", "UTF8", "--locale=C"])
            .arg(format!("--pwfile={}", password_file.display()))
            // Only the creation of the files skips fsync; the server runs with it.
            .arg("--no-sync")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("log file"))?)
            .stderr(log)
            .status()
            .map_err(io("running initdb"))?;
        let _ = fs::remove_file(&password_file);
        if !status.success() {
            return Err(self.failed(&format!("initdb failed ({status})")));
        }
        Ok(())
    }

    fn open_log(&self) -> Result<File, Error> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .map_err(io("opening the PostgreSQL log"))
    }

    /// An error with the end of the server's log, which says why.
    fn failed(&self, what: &str) -> Error {
        let log = fs::read_to_string(self.log_file()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Error::Failed(format!(
            "{what}; PostgreSQL's log ends:\n{}",
            tail.join("\n")
        ))
    }

    /// Starts the postmaster on `self.port` and waits until it accepts connections.
    fn launch(&mut self) -> Result<(), Launch> {
        let log = self.open_log()?;
        let log_start = fs::metadata(self.log_file()).map_or(0, |m| m.len());
        let postmaster = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
            .arg(self.socket_dir())
            // Durability is under test: commits reach the disk before they are answered.
            .args(["-c", "fsync=on", "-c", "synchronous_commit=on"])
            // Room for a cluster test's nodes (a pool of 16 each) and parallel tests.
            .args(["-c", "max_connections=300", "-c", "shared_buffers=32MB"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("log file"))?)
            .stderr(log)
            .spawn()
            .map_err(io("starting postgres"))?;
        let mut postmaster = postmaster;
        let watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "rport-postgres-watchdog"])
            .arg(postmaster.id().to_string())
            .arg(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let watchdog = match watchdog {
            Ok(watchdog) => watchdog,
            Err(err) => {
                let _ = postmaster.kill();
                let _ = postmaster.wait();
                return Err(io("starting the watchdog")(err).into());
            }
        };
        let mut running = Running {
            postmaster,
            watchdog,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = running.postmaster.try_wait().ok().flatten() {
                end_watchdog(&mut running.watchdog);
                return Err(self.exited(status, log_start));
            }
            if self.superuser_sql(&["SELECT 1"]).is_ok() {
                self.running = Some(running);
                return Ok(());
            }
            if Instant::now() > deadline {
                end_watchdog(&mut running.watchdog);
                let _ = running.postmaster.kill();
                let _ = running.postmaster.wait();
                return Err(Launch::Failed(self.failed(&format!(
                    "PostgreSQL did not accept connections within {READY_TIMEOUT:?}"
                ))));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn exited(&self, status: ExitStatus, log_start: u64) -> Launch {
        let log = fs::read(self.log_file()).unwrap_or_default();
        let this_run = String::from_utf8_lossy(log.get(log_start as usize..).unwrap_or_default());
        if this_run.contains("could not bind") || this_run.contains("Address already in use") {
            return Launch::PortTaken;
        }
        Launch::Failed(self.failed(&format!("postgres exited at start ({status})")))
    }

    /// Runs each statement as the superuser, on a runtime of its own (callers may be async
    /// tests). Each runs alone: `CREATE DATABASE` refuses to run in a transaction.
    fn superuser_sql(&self, statements: &[&str]) -> Result<(), Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(SUPERUSER)
            .password(&self.superuser_password)
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(5));
        let statements: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
        let run = move || -> Result<(), Error> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(io("starting a runtime"))?;
            runtime.block_on(async move {
                let (client, connection) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|err| Error::Failed(format!("connecting to PostgreSQL: {err:?}")))?;
                let connection = tokio::spawn(connection);
                let mut result = Ok(());
                for sql in &statements {
                    if let Err(err) = client.batch_execute(sql).await {
                        // Not the password.
                        let shown = sql.split(" PASSWORD").next().unwrap_or_default();
                        result = Err(Error::Failed(format!("{shown}: {err:?}")));
                        break;
                    }
                }
                drop(client);
                let _ = connection.await;
                result
            })
        };
        std::thread::scope(|scope| {
            scope
                .spawn(run)
                .join()
                .unwrap_or_else(|_| Err(Error::Failed("the SQL thread panicked".to_owned())))
        })
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            end_watchdog(&mut running.watchdog);
            let _ = running.postmaster.kill();
            let _ = running.postmaster.wait();
        }
    }
}

/// Why a start did not come up.
enum Launch {
    PortTaken,
    Failed(Error),
}

impl From<Error> for Launch {
    fn from(err: Error) -> Self {
        Self::Failed(err)
    }
}

/// Ends the watchdog before the postmaster it watches, so that it never signals a PID
/// that may have been reused.
fn end_watchdog(watchdog: &mut Child) {
    let _ = watchdog.kill();
    let _ = watchdog.wait();
}

/// The newest `/usr/lib/postgresql/<major>/bin` that has `initdb` and `postgres`.
fn newest_bin() -> Result<PathBuf, Error> {
    let entries = fs::read_dir(DEBIAN_VERSIONS).map_err(|_| Error::NotInstalled)?;
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            let complete = ["initdb", "postgres"]
                .iter()
                .all(|program| bin.join(program).is_file());
            complete.then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
        .ok_or(Error::NotInstalled)
}

fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port())
}

/// 32 hex digits from the kernel's random source: passwords no test hard-codes.
fn random_hex() -> Result<String, Error> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(io("reading /dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
