//! The checks themselves, on the rotation's own plumbing ([`Ctx`]): each pushes its verdict, and
//! one the rest depend on stops the run ([`Stop`]).

use super::{Checks, Status, Stop};
use crate::{
    Error,
    db::{Logins, Session, StatementError},
    error::Statement,
    secrets::SecretsApi,
    sessions::ServerFacts,
    steps::{Ctx, Slot, Version, statement_error},
    strategy::{CLONE_SUFFIX, Strategy},
};
use db_credentials::{
    ConnectErrorKind, Endpoint, SslMode, TlsSettings,
    rds::{RdsEndpoints, RdsTarget},
    secrets_manager::Stage,
};
use rand::distr::{Alphanumeric, SampleString};
use secrecy::SecretString;
use std::time::Instant;

impl<S: SecretsApi, L: Logins, R: RdsEndpoints> Ctx<'_, S, L, R> {
    pub(super) async fn preflight(&self, checks: &Checks) -> Result<(), Stop> {
        let config = self.config;
        let policy = &config.password;
        checks.ok(
            "configuration",
            format!(
                "{} rotation; TEST_QUERY {:?}; passwords of {} characters; DB_CONNECT_TIMEOUT_MS {}, ROTATION_STEP_TIMEOUT_MS {}",
                config.strategy,
                config.test_query,
                policy.length,
                config.connect_timeout.as_millis(),
                config.step_timeout.as_millis()
            ),
        );
        let (arn, current, tags) = self.preflight_secret(checks).await?;
        let password = self.preflight_random_password(checks, &arn).await;
        self.doing("endpoint");
        let here = match self.endpoint(&arn, Slot::Current, &current.secret, Some(&tags)).await {
            Ok(at) => {
                let from = if current.secret.host().is_some() {
                    "the secret"
                } else {
                    "the RDS API"
                };
                checks.ok("endpoint", format!("{at} (from {from})"));
                at
            }
            Err(e) => {
                checks.fail("endpoint", e.to_string(), "put \"host\" (and \"port\") in the secret, or dbInstanceIdentifier/dbClusterIdentifier with rds:DescribeDBInstances/DescribeDBClusters in the function's role (and a route to the RDS API from its subnets)");
                return Err(Stop("endpoint"));
            }
        };
        self.preflight_network(checks, &here).await?;
        let tls = match self.tls(&arn, &current.secret) {
            Ok(t) => t,
            Err(e) => {
                checks.fail("tls", e.to_string(), "make DB_SSLMODE, DB_SSL_ROOT_CERT and the secret's ssl/ssl_cert_path agree (verify-full with the RDS CA bundle is the production setting)");
                return Err(Stop("tls"));
            }
        };
        let mut session = self.preflight_login(checks, &arn, &current, &here, &tls).await?;
        self.doing("server settings");
        let facts = session.server_facts().await;
        report_server(checks, facts, current.secret.username());
        self.doing("TEST_QUERY");
        let user = current.secret.username();
        match session.probe(&config.test_query).await {
            Ok(()) => checks.ok(
                "test-query",
                format!("{:?} ran as {user} and was rolled back", config.test_query),
            ),
            Err(e) => checks.fail(
                "test-query",
                statement_error(e, Statement::Probe, user, user, &here).to_string(),
                "TEST_QUERY must be one statement without parameters that the user may run: fix the query, or grant the user what it needs",
            ),
        }
        match config.strategy {
            Strategy::SingleUser => {
                self.preflight_own_password(checks, &arn, &current, &here, &tls, &mut session, &password)
                    .await
            }
            Strategy::AlternatingUsers => {
                drop(session);
                self.preflight_alternate(checks, &arn, &current, &here, &tls, &password)
                    .await
            }
        }
        Ok(())
    }

    /// The `secret` check: DescribeSecret, AWSCURRENT read and parsed, the keys the strategy needs.
    async fn preflight_secret(&self, checks: &Checks) -> Result<(String, Version, Vec<(String, String)>), Stop> {
        let secret_id = &self.event.secret_id;
        let access_fix = format!(
            "the function's role needs secretsmanager:DescribeSecret and GetSecretValue on {secret_id} (and kms:Decrypt on its key); from a VPC, a route to Secrets Manager (an interface endpoint, or NAT; SECRETS_MANAGER_ENDPOINT names an endpoint)"
        );
        self.doing("DescribeSecret");
        let desc = match self.secrets.describe(secret_id).await {
            Ok(d) => d,
            Err(e) => {
                checks.fail("secret", format!("DescribeSecret of {secret_id}: {e}"), access_fix);
                return Err(Stop("secret"));
            }
        };
        let arn = if desc.arn.is_empty() {
            secret_id.clone()
        } else {
            desc.arn.clone()
        };
        let current = match self.read(&arn, Slot::Current, None).await {
            Ok(v) => v,
            Err(e @ Error::Aws { .. }) => {
                checks.fail("secret", e.to_string(), access_fix);
                return Err(Stop("secret"));
            }
            Err(e) => {
                checks.fail("secret", e.to_string(), "put a new AWSCURRENT version holding a JSON object with username, password, engine (postgres or aurora-postgresql), host (or an RDS identifier), port and dbname");
                return Err(Stop("secret"));
            }
        };
        let s = &current.secret;
        let mut missing = Vec::new();
        if s.host().is_none() && RdsTarget::find(s, &desc.tags).is_none() {
            missing.push("\"host\" (or dbInstanceIdentifier/dbClusterIdentifier)");
        }
        if self.config.strategy == Strategy::AlternatingUsers && s.masterarn().is_none() {
            missing.push("\"masterarn\" (alternating users set the other user's password through the master secret)");
        }
        if !missing.is_empty() {
            checks.fail(
                "secret",
                format!("AWSCURRENT version {} of {arn} has no {}", current.id, missing.join(" and no ")),
                "add the missing keys to the secret (a new version: aws secretsmanager put-secret-value), e.g. \"masterarn\": \"<ARN of the master secret>\"",
            );
            return Err(Stop("secret"));
        }
        if let Err(e) = self.config.strategy.pending_username(s.username()) {
            checks.fail(
                "secret",
                e.to_string(),
                "shorten the user name, or use single-user rotation",
            );
            return Err(Stop("secret"));
        }
        let detail = format!(
            "AWSCURRENT version {} of {arn}: user {}, engine {}, database {}{}",
            current.id,
            s.username(),
            s.engine().unwrap_or("?"),
            s.dbname(),
            s.masterarn().map(|m| format!(", masterarn {m}")).unwrap_or_default()
        );
        let foreign = desc
            .version_with(Stage::Pending)
            .filter(|v| !desc.has_stage(v, Stage::Current));
        if let Some(pending) = foreign {
            checks.warn(
                "secret",
                format!("{detail}; AWSPENDING is on version {pending}: a rotation is under way or was left unfinished, and the next one will refuse to start"),
                "let it finish, or see docs/rotation-runbook.md \"A rotation stuck with AWSPENDING\"".to_owned(),
            );
        } else if desc.rotation_enabled == Some(false) {
            // Before the first rotation this is the expected state, not a fault.
            checks.ok(
                "secret",
                format!("{detail}; rotation is not enabled on it yet (enable it once every check passes)"),
            );
        } else {
            checks.ok("secret", detail);
        }
        Ok((arn, current, desc.tags))
    }

    /// The `random-password` check; the password it returns (or, when it failed, a local one)
    /// is what the rehearsals send as a verifier, then forgotten.
    async fn preflight_random_password(&self, checks: &Checks, arn: &str) -> SecretString {
        self.doing("GetRandomPassword");
        match self.secrets.random_password(&self.config.password).await {
            Ok(p) => {
                use secrecy::ExposeSecret;
                checks.ok(
                    "random-password",
                    format!(
                        "GetRandomPassword returned {} characters with the configured PASSWORD_LENGTH/EXCLUDE_* knobs",
                        p.expose_secret().chars().count()
                    ),
                );
                p
            }
            Err(e) => {
                checks.fail(
                    "random-password",
                    format!("GetRandomPassword for {arn}: {e}"),
                    "the function's role needs secretsmanager:GetRandomPassword (it takes Resource \"*\"), a route to Secrets Manager, and knobs that leave a character class (EXCLUDE_*)",
                );
                SecretString::from(Alphanumeric.sample_string(&mut rand::rng(), 32))
            }
        }
    }

    /// The `dns` and `tcp` checks, each bounded by the connect timeout.
    async fn preflight_network(&self, checks: &Checks, at: &Endpoint) -> Result<(), Stop> {
        let limit = self.config.connect_timeout;
        self.doing("DNS");
        let addrs: Vec<std::net::SocketAddr> =
            match tokio::time::timeout(limit, tokio::net::lookup_host((at.host.as_str(), at.port))).await {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(e)) => {
                    checks.fail(
                    "dns",
                    format!("{} does not resolve: {e}", at.host),
                    "check the host in the secret; inside a VPC, enableDnsSupport and enableDnsHostnames must be on",
                );
                    return Err(Stop("dns"));
                }
                Err(_) => {
                    checks.fail(
                        "dns",
                        format!("resolving {} took over {} ms", at.host, limit.as_millis()),
                        "the function's subnets need a working resolver (the VPC's, at its .2 address)",
                    );
                    return Err(Stop("dns"));
                }
            };
        let Some(first) = addrs.first().copied() else {
            checks.fail(
                "dns",
                format!("{} resolves to no address", at.host),
                "check the host in the secret",
            );
            return Err(Stop("dns"));
        };
        let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
        checks.ok("dns", format!("{} resolves to {}", at.host, shown.join(", ")));
        self.doing("TCP");
        let started = Instant::now();
        match tokio::time::timeout(limit, tokio::net::TcpStream::connect(first)).await {
            Ok(Ok(stream)) => {
                drop(stream);
                checks.ok(
                    "tcp",
                    format!("{first} accepted a connection in {} ms", started.elapsed().as_millis()),
                );
                Ok(())
            }
            Ok(Err(e)) => {
                checks.fail("tcp", format!("{first}: {e}"), format!("nothing accepts connections on {first}: the database is stopped, rebooting or failed over, or the port in the secret is wrong; start it (aws rds start-db-instance) or fix the port"));
                Err(Stop("tcp"))
            }
            Err(_) => {
                checks.fail("tcp", format!("{first} did not answer within {} ms", limit.as_millis()), format!("a firewall drops the packets: the database's security group must allow the function's security group on port {}, and the subnets' route tables and NACLs must let them through", at.port));
                Err(Stop("tcp"))
            }
        }
    }

    /// The `tls` and `login` checks: one login with AWSCURRENT.
    async fn preflight_login(
        &self,
        checks: &Checks,
        arn: &str,
        current: &Version,
        here: &Endpoint,
        tls: &TlsSettings,
    ) -> Result<L::Session, Stop> {
        let user = current.secret.username();
        let result = self.login(&self.creds(current, here, tls, Some(Stage::Current))).await;
        let ca = tls
            .root_cert
            .as_ref()
            .map_or_else(|| "no root certificate".to_owned(), |p| format!("CA {}", p.display()));
        match &result {
            Err(e) if e.kind == ConnectErrorKind::Tls => {
                checks.fail("tls", format!("{e} (DB_SSLMODE {}, {ca})", tls.mode), format!("DB_SSL_ROOT_CERT (or the secret's ssl_cert_path) must hold the CA that signed {}'s certificate (for RDS, the global bundle from truststore.pki.rds.amazonaws.com), and with verify-full the host in the secret must be a name on that certificate", here.host));
                return Err(Stop("tls"));
            }
            _ if matches!(tls.mode, SslMode::Disable | SslMode::Prefer) => checks.warn(
                "tls",
                format!("DB_SSLMODE {}: the connection may be plaintext", tls.mode),
                "set DB_SSLMODE=verify-full and DB_SSL_ROOT_CERT to the CA bundle".to_owned(),
            ),
            _ if tls.mode == SslMode::Require && tls.root_cert.is_none() => checks.warn(
                "tls",
                "DB_SSLMODE require without a root certificate: encrypted, but the server's certificate is not verified".to_owned(),
                "set DB_SSL_ROOT_CERT to the CA bundle (verify-full becomes the default)".to_owned(),
            ),
            Ok(_) => checks.ok("tls", format!("{} with {ca}, handshake with {here} succeeded", tls.mode)),
            Err(_) => checks.ok("tls", format!("{} with {ca}", tls.mode)),
        }
        match result {
            Ok(session) => {
                checks.ok(
                    "login",
                    format!(
                        "{user} logged into database {} on {here} with AWSCURRENT",
                        current.secret.dbname()
                    ),
                );
                Ok(session)
            }
            Err(e) => {
                let fix = match e.kind {
                    ConnectErrorKind::Authentication => format!("the database does not accept AWSCURRENT's password for {user}: it was changed outside rotation or a rotation stopped after setSecret; see docs/rotation-runbook.md \"The database no longer accepts AWSCURRENT\""),
                    ConnectErrorKind::Timeout | ConnectErrorKind::Unreachable => "the database accepted TCP but did not complete the login in time: check its load and max_connections, and DB_CONNECT_TIMEOUT_MS".to_owned(),
                    _ => "see the server's message: a missing database (dbname), too many connections, or pg_hba.conf refusing this client".to_owned(),
                };
                checks.fail("login", format!("secret {arn}: {e}"), fix);
                Err(Stop("login"))
            }
        }
    }

    /// Single user: `ALTER ROLE` on itself, rolled back; refused, the master's, if there is one.
    #[allow(clippy::too_many_arguments)]
    async fn preflight_own_password(
        &self,
        checks: &Checks,
        arn: &str,
        current: &Version,
        here: &Endpoint,
        tls: &TlsSettings,
        session: &mut L::Session,
        password: &SecretString,
    ) {
        let user = current.secret.username();
        self.doing("ALTER ROLE (rehearsal)");
        let denied = match session.rehearse_password_change(user, None, password).await {
            Ok(()) => {
                checks.ok(
                    "password-change",
                    format!("{user} may change its own password (ALTER ROLE with a verifier, rolled back)"),
                );
                return;
            }
            Err(e @ StatementError::PermissionDenied { .. }) => e,
            Err(e) => {
                let error = statement_error(e, Statement::SetOwnPassword, user, user, here);
                checks.fail(
                    "password-change",
                    error.to_string(),
                    "see the server's message; setSecret runs this same statement",
                );
                return;
            }
        };
        let own = statement_error(denied, Statement::SetOwnPassword, user, user, here);
        // The server's own hint (ADMIN OPTION, on 16+) is about changing another role; what this
        // user needs is the right to change its own, or a master to do it.
        let fix = Statement::SetOwnPassword.hint().to_owned();
        if current.secret.masterarn().is_none() {
            checks.fail("password-change", own.to_string(), fix);
            return;
        }
        // setSecret falls back to the master here; so does the rehearsal.
        let master = match self.master_session(arn, current, here, tls).await {
            Ok((mut s, master_user)) => s
                .rehearse_password_change(user, None, password)
                .await
                .map_err(|e| statement_error(e, Statement::MasterSetPassword, &master_user, user, here)),
            Err(e) => Err(e),
        };
        match master {
            Ok(()) => checks.warn(
                "password-change",
                format!("{own}; the master secret's user may, and setSecret will use it"),
                fix,
            ),
            Err(e) => checks.fail("password-change", format!("{own}; nor may the master: {e}"), fix),
        }
    }

    /// Alternating users: the master logs in, and creates or changes the other user, rolled back.
    async fn preflight_alternate(
        &self,
        checks: &Checks,
        arn: &str,
        current: &Version,
        here: &Endpoint,
        tls: &TlsSettings,
        password: &SecretString,
    ) {
        let base_user = current.secret.username();
        let (mut master, master_user) = match self.master_session(arn, current, here, tls).await {
            Ok(s) => s,
            Err(e) => {
                let fix = match &e {
                    Error::Aws { .. } => {
                        "the function's role needs secretsmanager:GetSecretValue on the master secret (and kms:Decrypt on its key)"
                    }
                    Error::MasterLoginFailed { .. } => {
                        "the master secret's AWSCURRENT must log into this database: fix its password (RDS-managed: it rotates by itself; read it again) or its CONNECT right"
                    }
                    Error::MasterHostMismatch { .. } => "masterarn must name the master secret of this same database",
                    _ => "fix the master secret (its keys, or its route)",
                };
                checks.fail("master-login", e.to_string(), fix);
                checks.push(
                    "alternate-user",
                    Status::Skipped,
                    "needs the master-login check to pass".to_owned(),
                    None,
                );
                return;
            }
        };
        checks.ok(
            "master-login",
            format!(
                "{master_user} (the master secret's user) logged into database {} on {here}",
                current.secret.dbname()
            ),
        );
        let Ok(other) = self.config.strategy.pending_username(base_user) else {
            return;
        };
        let base = other.strip_suffix(CLONE_SUFFIX).filter(|b| *b == base_user);
        self.doing("CREATE/ALTER ROLE (rehearsal)");
        match master.rehearse_password_change(&other, base, password).await {
            Ok(()) => checks.ok(
                "alternate-user",
                match base {
                    Some(b) => format!("{master_user} may create or update {other} (LOGIN, member of {b}, SET role) and set its password: rehearsed and rolled back"),
                    None => format!("{master_user} may set the password of {other}: rehearsed and rolled back"),
                },
            ),
            Err(StatementError::Unsafe { reasons }) => {
                let e = Error::UnsafeClone {
                    secret: arn.to_owned(),
                    clone: other.clone(),
                    base: base_user.to_owned(),
                    reasons: reasons.join("; "),
                };
                checks.fail("alternate-user", e.to_string(), format!("remove those rights from {other}, or drop it so the first rotation creates it afresh"));
            }
            Err(e) => {
                let e = statement_error(e, Statement::CreateOrSetPassword, &master_user, &other, here);
                let fix = match &e {
                    Error::PermissionDenied { fix, .. } => fix.clone(),
                    _ => Statement::CreateOrSetPassword.hint().to_owned(),
                };
                checks.fail("alternate-user", e.to_string(), fix);
            }
        }
    }
}

/// The `server` check.
fn report_server(checks: &Checks, facts: Result<ServerFacts, StatementError>, user: &str) {
    let facts = match facts {
        Ok(f) => f,
        Err(e) => {
            checks.fail("server", format!("cannot read the server's settings: {e}"), "the rotation reads password_encryption before every password change: the user must be allowed current_setting()");
            return;
        }
    };
    let logged = if facts.logs_role_statements() {
        "ALTER/CREATE ROLE statements are logged, with the verifier the function computes, never the password"
    } else {
        "ALTER/CREATE ROLE statements are not logged"
    };
    let detail = format!(
        "PostgreSQL {}; password_encryption {}: passwords are sent in that stored form; log_statement {}: {logged}",
        facts.version, facts.password_encryption, facts.log_statement
    );
    if facts.superuser {
        checks.warn("server", format!("{detail}; {user} is a superuser"), "the API should not log in as a superuser: give it a role with only what it needs (the Custom::DatabaseRole resource makes one) and rotate that".to_owned());
    } else if facts.password_encryption == "md5" {
        checks.warn("server", detail, "md5 is deprecated: set password_encryption = scram-sha-256 (the next rotation then stores a SCRAM verifier)".to_owned());
    } else {
        checks.ok("server", detail);
    }
}
