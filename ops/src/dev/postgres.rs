//! A private PostgreSQL for `dev`, for machines where no usable server runs:
//! a throwaway cluster made with the installed server's `initdb` in a fresh
//! scratch directory, trust authentication, listening on 127.0.0.1 and a free
//! port only (its Unix socket inside the scratch directory). Dropping the
//! [`PrivateServer`] stops the server and deletes the directory, on a normal
//! exit, an error or a panic alike; a `kill -9` of the process that started it
//! leaves both behind.
//!
//! PostgreSQL refuses to run as root: as root, the cluster belongs to the
//! `postgres` user, and `initdb`, `postgres` and `pg_ctl` run as that user.

use std::fs::{DirBuilder, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// The role `initdb` creates, the only one of the cluster.
pub const SUPERUSER: &str = "postgres";
/// Where Debian's packages put each major version's server programs.
const PACKAGED: &str = "/usr/lib/postgresql";
/// How long the server may take to accept connections (a busy machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of a log shown when the server does not start.
const LOG_TAIL_LINES: usize = 25;

/// Why the private server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PrivateServerError {
    #[error(
        "PostgreSQL's server programs (initdb, postgres) are not installed: install \
         Debian's `postgresql` package, or set DATABASE_URL to a server to use"
    )]
    NotInstalled,
    #[error(
        "running as root, and PostgreSQL refuses to run as root, but there is no \
         `postgres` user to run it as: create one (Debian's `postgresql` package does), \
         or set DATABASE_URL to a server to use"
    )]
    NoPostgresUser,
    #[error("making the scratch directory {}", .path.display())]
    Scratch {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("finding a free port on 127.0.0.1")]
    Port(#[source] io::Error),
    #[error("running {}", .program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the `postgres` user cannot reach the scratch directory {}: set TMPDIR to a \
         directory every user may enter",
        .path.display()
    )]
    ScratchClosed { path: PathBuf },
    #[error("initdb failed ({status}); its output ends with:\n{output}")]
    Initdb { status: ExitStatus, output: String },
    #[error("PostgreSQL exited while starting ({status}); its log ends with:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error(
        "PostgreSQL did not accept connections within {} s; its log ends with:\n{log}",
        .waited.as_secs()
    )]
    NotReady { waited: Duration, log: String },
}

/// A running private PostgreSQL; dropping it stops the server and deletes its
/// directory.
#[derive(Debug)]
pub struct PrivateServer {
    server: Child,
    bin: PathBuf,
    run_as: Option<RunAs>,
    port: u16,
    // Declared last: dropped (the directory deleted) after `Drop::drop`
    // stopped the server.
    scratch: Scratch,
}

impl PrivateServer {
    /// Makes a cluster in a new scratch directory and starts it on 127.0.0.1
    /// and a free port; returns once it accepts connections.
    pub async fn start() -> Result<Self, PrivateServerError> {
        let bin = server_bin()?;
        let scratch = Scratch::create()?;
        let run_as = scratch.owner()?;
        let data = scratch.path.join("data");
        initdb(&bin, run_as, &scratch, &data).await?;
        let port = free_port()?;
        let server = spawn_postgres(&bin, run_as, &scratch, &data, port)?;
        // From here on, an early return stops the server too.
        let mut started = Self {
            server,
            bin,
            run_as,
            port,
            scratch,
        };
        started.wait_until_ready(START_TIMEOUT).await?;
        Ok(started)
    }

    /// The URL of `database` on this server (as the superuser, no password).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// The TCP port it listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The scratch directory: the cluster's data, its log and its socket.
    pub fn dir(&self) -> &Path {
        &self.scratch.path
    }

    async fn wait_until_ready(&mut self, within: Duration) -> Result<(), PrivateServerError> {
        let deadline = Instant::now() + within;
        let options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .database("postgres")
            .disable_statement_logging();
        loop {
            if let Ok(Some(status)) = self.server.try_wait() {
                return Err(PrivateServerError::Exited {
                    status,
                    log: self.log_tail(),
                });
            }
            // A connection, not an open port: the server listens before it
            // has finished starting up.
            let attempt = tokio::time::timeout(Duration::from_secs(2), options.connect()).await;
            if let Ok(Ok(connection)) = attempt {
                let _ = connection.close().await;
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(PrivateServerError::NotReady {
                    waited: within,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        match std::fs::read(self.scratch.path.join("server.log")) {
            Ok(bytes) => tail(&String::from_utf8_lossy(&bytes), LOG_TAIL_LINES),
            Err(e) => format!("(no log: {e})"),
        }
    }

    /// A fast shutdown (`pg_ctl stop -m fast`: open sessions are ended),
    /// bounded; the server is killed if it has not exited by then.
    fn stop(&mut self) {
        if matches!(self.server.try_wait(), Ok(Some(_))) {
            return;
        }
        let asked = command(self.run_as, &self.bin.join("pg_ctl"), &self.scratch.path)
            .arg("stop")
            .arg("-D")
            .arg(self.scratch.path.join("data"))
            .args([
                "-m",
                "fast",
                "-w",
                "-t",
                &STOP_TIMEOUT.as_secs().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        // pg_ctl returns once the server removed its pid file, just before
        // it exits: a short wait for that.
        let grace = if asked {
            Duration::from_secs(5)
        } else {
            Duration::ZERO
        };
        if !exits_within(&mut self.server, grace) {
            let _ = self.server.kill();
            let _ = self.server.wait();
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Makes the cluster in `data` with `initdb`.
async fn initdb(
    bin: &Path,
    run_as: Option<RunAs>,
    scratch: &Scratch,
    data: &Path,
) -> Result<(), PrivateServerError> {
    let mut initdb = command(run_as, &bin.join("initdb"), &scratch.path);
    initdb
        .arg("-D")
        .arg(data)
        .args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ])
        // Thrown away on exit: no need to wait for the disk.
        .arg("--no-sync");
    let output = tokio::process::Command::from(initdb)
        .output()
        .await
        .map_err(|source| {
            if run_as.is_some() && source.kind() == io::ErrorKind::PermissionDenied {
                PrivateServerError::ScratchClosed {
                    path: scratch.path.clone(),
                }
            } else {
                PrivateServerError::Spawn {
                    program: bin.join("initdb"),
                    source,
                }
            }
        })?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        return Err(PrivateServerError::Initdb {
            status: output.status,
            output: tail(&text, LOG_TAIL_LINES),
        });
    }
    Ok(())
}

/// Starts the server of the cluster in `data` on 127.0.0.1 and `port`, its
/// socket in the scratch directory and its output in `server.log` there.
fn spawn_postgres(
    bin: &Path,
    run_as: Option<RunAs>,
    scratch: &Scratch,
    data: &Path,
    port: u16,
) -> Result<Child, PrivateServerError> {
    let log_path = scratch.path.join("server.log");
    let log = File::create(&log_path).map_err(|source| scratch.error(source))?;
    let log_err = log.try_clone().map_err(|source| scratch.error(source))?;
    let mut postgres = command(run_as, &bin.join("postgres"), &scratch.path);
    postgres
        .arg("-D")
        .arg(data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!(
            "unix_socket_directories={}",
            scratch.path.display()
        ))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    postgres
        .spawn()
        .map_err(|source| PrivateServerError::Spawn {
            program: bin.join("postgres"),
            source,
        })
}

/// Whether `child` exits (and is reaped) within `within`.
fn exits_within(child: &mut Child, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => return false,
        }
    }
}

/// The scratch directory, deleted on drop.
#[derive(Debug)]
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create() -> Result<Self, PrivateServerError> {
        let path = std::env::temp_dir().join(format!(
            "pubsubkafka-dev-postgres-{}",
            uuid::Uuid::new_v4().simple()
        ));
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|source| PrivateServerError::Scratch {
                path: path.clone(),
                source,
            })?;
        Ok(Self { path })
    }

    /// Who runs the server: this process's user, or, for root (who owns
    /// the directory exactly when PostgreSQL needs another user), the
    /// `postgres` user, given the directory.
    fn owner(&self) -> Result<Option<RunAs>, PrivateServerError> {
        let root = std::fs::metadata(&self.path)
            .map_err(|source| self.error(source))?
            .uid()
            == 0;
        if !root {
            return Ok(None);
        }
        let user = RunAs::postgres()?;
        std::os::unix::fs::chown(&self.path, Some(user.uid), Some(user.gid))
            .map_err(|source| self.error(source))?;
        Ok(Some(user))
    }

    fn error(&self, source: io::Error) -> PrivateServerError {
        PrivateServerError::Scratch {
            path: self.path.clone(),
            source,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("could not remove {}: {e}", self.path.display());
            }
        }
    }
}

/// The user PostgreSQL runs as when this process is root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

impl RunAs {
    /// The `postgres` user, as the system's user database knows it.
    fn postgres() -> Result<Self, PrivateServerError> {
        let output = Command::new("getent")
            .args(["passwd", SUPERUSER])
            .stderr(Stdio::null())
            .output()
            .map_err(|source| PrivateServerError::Spawn {
                program: "getent".into(),
                source,
            })?;
        if !output.status.success() {
            return Err(PrivateServerError::NoPostgresUser);
        }
        parse_passwd(&String::from_utf8_lossy(&output.stdout))
            .ok_or(PrivateServerError::NoPostgresUser)
    }
}

/// uid and gid of a `passwd` line (`name:x:uid:gid:...`).
fn parse_passwd(line: &str) -> Option<RunAs> {
    let mut fields = line.trim().split(':').skip(2);
    let uid = fields.next()?.parse().ok()?;
    let gid = fields.next()?.parse().ok()?;
    Some(RunAs { uid, gid })
}

/// `program`, run as `run_as` when given, from `dir` (the caller's working
/// directory may be closed to that user), in a process group of its own:
/// Ctrl-C in the terminal reaches only `dev`, which stops the pipeline first
/// and the server last (and lets a starting server finish starting first).
fn command(run_as: Option<RunAs>, program: &Path, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command.current_dir(dir).process_group(0);
    if let Some(user) = run_as {
        // std drops the supplementary groups (root's) when it sets the uid.
        command.uid(user.uid).gid(user.gid);
    }
    command
}

/// The bin folder of the installed server: `pg_config --bindir` when it has
/// the server programs, else the newest of Debian's versions that has them.
fn server_bin() -> Result<PathBuf, PrivateServerError> {
    let configured = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    match configured {
        Some(bin) if has_server(&bin) => Ok(bin),
        _ => newest_server(Path::new(PACKAGED)).ok_or(PrivateServerError::NotInstalled),
    }
}

fn has_server(bin: &Path) -> bool {
    bin.join("postgres").is_file() && bin.join("initdb").is_file()
}

/// `<root>/<version>/bin` of the highest version that has the server
/// programs (versions compare by number: 9.6 < 15).
fn newest_server(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: Vec<u32> = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

/// A port nobody listens on now, never one the kernel could meanwhile
/// give a client (see [`platform::port`]).
fn free_port() -> Result<u16, PrivateServerError> {
    platform::port::unused_local_port().map_err(PrivateServerError::Port)
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_packaged_version_with_a_server_wins() {
        let root = std::env::temp_dir().join(format!(
            "pubsubkafka-bin-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let server = |version: &str, programs: &[&str]| {
            let bin = root.join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for program in programs {
                std::fs::write(bin.join(program), "").unwrap();
            }
        };
        server("9.6", &["postgres", "initdb"]);
        server("13", &["postgres", "initdb"]);
        // Client programs only: not a server.
        server("17", &["psql", "pg_dump"]);
        server("not-a-version", &["postgres", "initdb"]);
        let newest = newest_server(&root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(newest, Some(root.join("13").join("bin")));
        assert_eq!(newest_server(&root), None);
    }

    #[test]
    fn passwd_lines_give_uid_and_gid() {
        let user = parse_passwd(
            "postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n",
        )
        .unwrap();
        assert_eq!((user.uid, user.gid), (101, 104));
        assert!(parse_passwd("postgres:x:oops").is_none());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
