//! A throwaway Postgres cluster: temporary directory, free loopback port, SCRAM for TCP, TLS with a
//! self-signed CA made on the spot, plaintext TCP refused. `initdb` and `pg_ctl` run as the
//! `postgres` user when we are root (the server refuses to run as root).

use crate::{DevstackError, free_port, guard::Guardian, guard::sh_quote, random_token};
use postgres_protocol::escape::{escape_identifier, escape_literal};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// How to set the cluster up.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Serve TLS and refuse plaintext TCP (the default). `false` gives a server without TLS, for
    /// proving that a client which requires TLS refuses it.
    pub tls: bool,
    /// `log_statement=all`, so tests can prove no password ever reaches the server log.
    pub log_statements: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            tls: true,
            log_statements: true,
        }
    }
}

/// A running cluster. Dropping it stops the server and removes its directory.
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    port: u16,
    superuser_password: String,
    tls: bool,
    guardian: Guardian,
    start_options: String,
}

impl Postgres {
    /// Creates and starts a cluster (about a second).
    ///
    /// # Errors
    /// [`DevstackError`] naming the step that failed, with the tail of its log.
    pub fn start(options: &PostgresOptions) -> Result<Self, DevstackError> {
        let bin = pg_bin()?;
        let dir = std::env::temp_dir().join(format!("devstack-pg-{}", random_token()));
        std::fs::create_dir_all(&dir).map_err(|e| DevstackError::io("create the cluster directory", e))?;
        set_mode(&dir, 0o755)?;
        // Registered first, so a failure half-way still removes the directory.
        let data = dir.join("data");
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
        let hba = if options.tls {
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 0.0.0.0/0 reject\nhostnossl all all ::/0 reject\n"
        } else {
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        };
        std::fs::write(data.join("pg_hba.conf"), hba).map_err(|e| DevstackError::io("write pg_hba.conf", e))?;

        let mut conf = vec![
            "-c listen_addresses=127.0.0.1".to_owned(),
            format!("-c unix_socket_directories={}", dir.display()),
            "-c password_encryption=scram-sha-256".to_owned(),
            "-c max_connections=300".to_owned(),
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off".to_owned(),
        ];
        if options.tls {
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
            dir,
            port: 0,
            superuser_password,
            tls: options.tls,
            guardian,
            start_options: conf.join(" "),
        };
        let mut last = None;
        for _ in 0..3 {
            pg.port = free_port()?;
            match pg.start_server() {
                Ok(()) => return Ok(pg),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| DevstackError::Tool {
            step: "pg_ctl start",
            detail: "no attempt made".into(),
        }))
    }

    /// Starts the server again after [`Self::stop_server`], on the same port.
    ///
    /// # Errors
    /// When `pg_ctl start` fails.
    pub fn start_server(&self) -> Result<(), DevstackError> {
        let bin = pg_bin()?;
        run(
            as_postgres(&bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "30", "-o"])
                .arg(format!("-p {} {}", self.port, self.start_options))
                .arg("start"),
            "pg_ctl start",
        )
        .map_err(|e| match e {
            DevstackError::Tool { step, detail } => DevstackError::Tool {
                step,
                detail: format!("{detail}\n{}", tail(&self.server_log(), 20)),
            },
            other => other,
        })
    }

    /// Stops the server (fast shutdown) and keeps the cluster, to test a database that went away.
    ///
    /// # Errors
    /// When `pg_ctl stop` fails.
    pub fn stop_server(&self) -> Result<(), DevstackError> {
        let bin = pg_bin()?;
        run(
            as_postgres(&bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "fast", "-w", "-t", "20", "stop"]),
            "pg_ctl stop",
        )
    }

    /// Stops the server and removes the cluster now.
    pub fn stop(mut self) {
        self.guardian.fire();
    }

    /// Loopback address the server listens on.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }
    /// TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Whether the server speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }
    /// The self-signed certificate the server presents; trust it as the CA for verify-full.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    /// The server log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }
    /// The server log so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
    /// The postmaster's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        let pidfile = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        pidfile.lines().next()?.trim().parse().ok()
    }
    /// The `postgres` superuser's password (for TCP logins; the Unix socket needs none).
    pub fn superuser_password(&self) -> &str {
        &self.superuser_password
    }

    /// A superuser connection over the Unix socket (trust), for setting things up.
    ///
    /// # Errors
    /// When the server does not answer.
    pub async fn admin(&self) -> Result<tokio_postgres::Client, DevstackError> {
        self.admin_on("postgres").await
    }

    /// A superuser connection to a given database over the Unix socket.
    ///
    /// # Errors
    /// When the server does not answer.
    pub async fn admin_on(&self, dbname: &str) -> Result<tokio_postgres::Client, DevstackError> {
        let (client, conn) = tokio_postgres::Config::new()
            .host_path(&self.dir)
            .port(self.port)
            .user("postgres")
            .dbname(dbname)
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| DevstackError::Postgres(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Creates a login role with a password, sent as a SCRAM verifier so the plaintext never
    /// reaches the server log.
    ///
    /// # Errors
    /// When the statement fails.
    pub async fn create_role(&self, role: &str, password: &str) -> Result<(), DevstackError> {
        crate::evidence::record_secret(password);
        let sql = format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            escape_identifier(role),
            verifier(password)
        );
        self.admin()
            .await?
            .batch_execute(&sql)
            .await
            .map_err(|e| DevstackError::Postgres(e.to_string()))
    }

    /// Sets a role's password (as a SCRAM verifier).
    ///
    /// # Errors
    /// When the statement fails.
    pub async fn set_password(&self, role: &str, password: &str) -> Result<(), DevstackError> {
        crate::evidence::record_secret(password);
        let sql = format!("ALTER ROLE {} PASSWORD {}", escape_identifier(role), verifier(password));
        self.admin()
            .await?
            .batch_execute(&sql)
            .await
            .map_err(|e| DevstackError::Postgres(e.to_string()))
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
            .map_err(|e| DevstackError::Postgres(e.to_string()))
    }
}

/// The SCRAM-SHA-256 verifier of a password as a SQL literal.
pub fn verifier(password: &str) -> String {
    escape_literal(&postgres_protocol::password::scram_sha_256(password.as_bytes()))
}

fn pg_bin() -> Result<PathBuf, DevstackError> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p).ok_or(DevstackError::Missing {
        tool: "PostgreSQL server (initdb, pg_ctl)",
        install: "apt-get install -y postgresql (or run `make deps`)",
    })
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
pub(crate) fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn as_postgres(program: &Path) -> Command {
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

fn chown_to_postgres(dir: &Path) -> Result<(), DevstackError> {
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

fn set_mode(path: &Path, mode: u32) -> Result<(), DevstackError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| DevstackError::io("chmod", e))
}

fn run(cmd: &mut Command, step: &'static str) -> Result<(), DevstackError> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| DevstackError::Tool {
        step,
        detail: format!("cannot run: {e}"),
    })?;
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

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
