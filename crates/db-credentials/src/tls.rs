//! TLS to Postgres (design §6): libpq's `sslmode` names mapped onto native-tls, and the one place
//! that decides a connection's TLS settings from the environment and the secret.
//!
//! tokio-postgres itself only knows disable/prefer/require; verification is the connector's job.
//! So `verify-full` is `require` plus a connector that checks chain and hostname, `verify-ca` skips
//! the hostname, and plain `require` encrypts without verifying, exactly as libpq does. As in
//! libpq, `verify-ca` and `verify-full` need a root certificate (a file, or `system` for the
//! operating system's store, which libpq 16+ allows with `verify-full` only).

use crate::secret::DbSecret;
use native_tls::{Certificate, TlsConnector};
use postgres_native_tls::MakeTlsConnector;
use std::{
    collections::HashMap,
    fmt,
    path::PathBuf,
    str::FromStr,
    sync::{Mutex, OnceLock},
};

/// Deployment environment (`ENVIRONMENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    /// A developer machine: `.env` is read.
    #[default]
    Local,
    /// A shared pre-production environment.
    Staging,
    /// Production: plaintext database connections are refused.
    Production,
}

impl Environment {
    /// The name as written in `ENVIRONMENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

/// The settings every function reads the same way to reach its database: `ENVIRONMENT`,
/// `DB_SSLMODE` (a plaintext mode is refused in production) and `DB_SSL_ROOT_CERT`, read by
/// [`TlsEnv::from_vars`]. Turned into a connection's [`TlsSettings`] by [`TlsEnv::settings`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsEnv {
    /// `ENVIRONMENT` (default local).
    pub environment: Environment,
    /// `DB_SSLMODE`; unset means the default of [`TlsEnv::settings`].
    pub ssl_mode: Option<SslMode>,
    /// `DB_SSL_ROOT_CERT`: CA bundle for verify-ca / verify-full.
    pub ssl_root_cert: Option<PathBuf>,
}

impl TlsEnv {
    /// These settings with a `postgres://` URL's own `sslmode` / `sslrootcert`, which win.
    ///
    /// # Errors
    /// [`TlsError::PlaintextInProduction`] when the URL asks for a plaintext mode in production.
    pub fn overridden(&self, ssl_mode: Option<SslMode>, ssl_root_cert: Option<PathBuf>) -> Result<Self, TlsError> {
        self.refuse_plaintext(ssl_mode)?;
        Ok(Self {
            environment: self.environment,
            ssl_mode: ssl_mode.or(self.ssl_mode),
            ssl_root_cert: ssl_root_cert.or_else(|| self.ssl_root_cert.clone()),
        })
    }

    /// The TLS settings for a database, from these settings and, when the credentials come from a
    /// secret, its `ssl` and `ssl_cert_path`:
    ///
    /// * default: `verify-full` when a root certificate is configured, otherwise `require`;
    /// * `ssl: false` in the secret changes nothing: plaintext takes an explicit `DB_SSLMODE`;
    /// * `ssl: true` turns `prefer` into `require` and makes `disable` an error: no silent plaintext;
    /// * production refuses `disable` and `prefer`.
    ///
    /// # Errors
    /// [`TlsError::PlaintextInProduction`] or [`TlsError::SecretRequiresTls`].
    pub fn settings(&self, secret: Option<&DbSecret>) -> Result<TlsSettings, TlsError> {
        self.decide(secret.and_then(DbSecret::ssl), secret.and_then(DbSecret::ssl_cert_path))
    }

    fn decide(&self, secret_ssl: Option<bool>, secret_cert_path: Option<&str>) -> Result<TlsSettings, TlsError> {
        let root_cert = self
            .ssl_root_cert
            .clone()
            .or_else(|| secret_cert_path.map(PathBuf::from));
        let default = if root_cert.is_some() {
            SslMode::VerifyFull
        } else {
            SslMode::Require
        };
        // `ssl: false` in a secret does not turn TLS off: whoever can write the secret must not be
        // able to downgrade the connection. Plaintext takes an explicit DB_SSLMODE.
        let mut mode = self.ssl_mode.unwrap_or(default);
        if secret_ssl == Some(true) {
            match mode {
                SslMode::Disable => return Err(TlsError::SecretRequiresTls),
                SslMode::Prefer => mode = SslMode::Require,
                _ => {}
            }
        }
        self.refuse_plaintext(Some(mode))?;
        let settings = TlsSettings { mode, root_cert };
        settings.check()?;
        Ok(settings)
    }

    pub(crate) fn refuse_plaintext(&self, mode: Option<SslMode>) -> Result<(), TlsError> {
        match mode {
            Some(mode) if self.environment == Environment::Production && mode <= SslMode::Prefer => {
                Err(TlsError::PlaintextInProduction { mode })
            }
            _ => Ok(()),
        }
    }
}

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS if the server offers it, else plaintext. Never in production.
    Prefer,
    /// TLS always; the certificate is not verified unless a root certificate is configured.
    Require,
    /// TLS; the certificate chain must lead to a trusted root; the hostname is not checked.
    VerifyCa,
    /// TLS; chain and hostname are both verified.
    VerifyFull,
}

impl SslMode {
    /// The libpq name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.trim().to_ascii_lowercase().as_str() {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            _ => Err(()),
        }
    }
}

/// Why TLS cannot be set up as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// `ENVIRONMENT=production` with a mode that allows plaintext (from `DB_SSLMODE` or a URL).
    #[error(
        "DB_SSLMODE={mode} allows plaintext, which ENVIRONMENT=production refuses; use require, verify-ca or verify-full"
    )]
    PlaintextInProduction {
        /// The refused mode.
        mode: SslMode,
    },
    /// `verify-ca` or `verify-full` without a root certificate to verify against.
    #[error(
        "DB_SSLMODE={mode} verifies the server's certificate and needs a root certificate: set DB_SSL_ROOT_CERT to a CA bundle file (or to \"system\" for the operating system's trust store, with verify-full only), or ssl_cert_path in the secret"
    )]
    NoRootCert {
        /// The verifying mode.
        mode: SslMode,
    },
    /// `DB_SSL_ROOT_CERT=system` with a mode weaker than `verify-full` (refused as libpq 16+ does:
    /// the operating system trusts every public CA, so without the host-name check any certificate
    /// issued for any name would pass).
    #[error(
        "DB_SSL_ROOT_CERT=system (the operating system's trust store) needs DB_SSLMODE=verify-full, as in libpq; with {mode} a certificate any public CA issued for any name would be accepted"
    )]
    WeakModeWithSystemRoots {
        /// The refused mode.
        mode: SslMode,
    },
    /// The secret says `ssl: true` while `DB_SSLMODE=disable`.
    #[error("the secret says ssl=true but DB_SSLMODE=disable; TLS is mandatory for this database")]
    SecretRequiresTls,
    /// The CA file cannot be read.
    #[error("cannot read the CA bundle {path}: {reason}")]
    CaUnreadable {
        /// The configured path.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The CA file holds no usable certificate.
    #[error("the CA bundle {path} holds no PEM certificate")]
    CaInvalid {
        /// The configured path.
        path: PathBuf,
    },
    /// native-tls refused the configuration.
    #[error("cannot build the TLS connector: {0}")]
    Connector(String),
}

/// libpq's keyword for the operating system's trust store in `sslrootcert` (a file of that name
/// is written `./system`).
pub const SYSTEM_ROOT_CERT: &str = "system";

/// The TLS decision for one set of credentials: mode plus optional root certificate file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// The effective mode.
    pub mode: SslMode,
    /// PEM file of trusted roots (the RDS global bundle holds many; all are trusted), or
    /// [`SYSTEM_ROOT_CERT`] for the operating system's store. With a file, the system store is not
    /// used. `verify-ca` and `verify-full` need one.
    pub root_cert: Option<PathBuf>,
}

impl TlsSettings {
    /// Whether the roots are the operating system's (`DB_SSL_ROOT_CERT=system`).
    pub fn system_roots(&self) -> bool {
        self.root_cert.as_deref() == Some(std::path::Path::new(SYSTEM_ROOT_CERT))
    }

    /// libpq's rules on roots: a verifying mode needs one, and the system store only with
    /// `verify-full`.
    fn check(&self) -> Result<(), TlsError> {
        match (&self.root_cert, self.mode) {
            (None, mode @ (SslMode::VerifyCa | SslMode::VerifyFull)) => Err(TlsError::NoRootCert { mode }),
            (Some(_), mode) if self.system_roots() && mode != SslMode::VerifyFull => {
                Err(TlsError::WeakModeWithSystemRoots { mode })
            }
            _ => Ok(()),
        }
    }

    /// Whether a connection made with these settings is certain to be encrypted.
    pub fn requires_tls(&self) -> bool {
        self.mode >= SslMode::Require
    }

    /// The tokio-postgres mode that goes with [`Self::connector`].
    pub fn postgres_mode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Pg;
        match self.mode {
            SslMode::Disable => Pg::Disable,
            SslMode::Prefer => Pg::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
        }
    }

    /// The connector for these settings, built once per process and then shared: creating an
    /// OpenSSL 3 context costs tens of milliseconds of CPU, which every login would otherwise pay.
    /// A CA file changed on disk is read again only by a new process.
    ///
    /// # Errors
    /// [`TlsError`] when the CA file is unreadable or empty.
    pub fn connector(&self) -> Result<MakeTlsConnector, TlsError> {
        static CACHE: OnceLock<Mutex<HashMap<TlsSettings, MakeTlsConnector>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Mutex::default);
        if let Some(hit) = cache.lock().ok().and_then(|m| m.get(self).cloned()) {
            return Ok(hit);
        }
        let built = MakeTlsConnector::new(self.native_connector()?);
        if let Ok(mut m) = cache.lock() {
            m.insert(self.clone(), built.clone());
        }
        Ok(built)
    }

    /// The native-tls connector with this mode's verification rules (also used by db-doctor's
    /// handshake check).
    ///
    /// # Errors
    /// [`TlsError`] when the CA file is unreadable or empty.
    pub fn native_connector(&self) -> Result<TlsConnector, TlsError> {
        // Settings made by hand (not by `TlsEnv::settings`) get the same rules: never a silent
        // fall-back to the built-in store without a host-name check.
        self.check()?;
        let mut builder = TlsConnector::builder();
        let roots = match &self.root_cert {
            Some(_) if self.system_roots() => None,
            Some(path) => Some(load_roots(path)?),
            None => None,
        };
        match self.mode {
            SslMode::Disable => {}
            // libpq: prefer and require do not verify, except that require with a root file
            // behaves like verify-ca.
            SslMode::Prefer => {
                builder.danger_accept_invalid_certs(true);
            }
            SslMode::Require if self.root_cert.is_none() => {
                builder.danger_accept_invalid_certs(true);
            }
            SslMode::Require | SslMode::VerifyCa => {
                builder.danger_accept_invalid_hostnames(true);
            }
            SslMode::VerifyFull => {}
        }
        if let Some(roots) = roots {
            builder.disable_built_in_roots(true);
            for cert in roots {
                builder.add_root_certificate(cert);
            }
        }
        builder.build().map_err(|e| TlsError::Connector(e.to_string()))
    }
}

fn load_roots(path: &PathBuf) -> Result<Vec<Certificate>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| TlsError::CaUnreadable {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    // `from_pem` reads only the first certificate; RDS's global bundle holds dozens.
    let certs = Certificate::stack_from_pem(&pem).map_err(|_| TlsError::CaInvalid { path: path.clone() })?;
    if certs.is_empty() {
        return Err(TlsError::CaInvalid { path: path.clone() });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Environment::{Local, Production};

    fn resolve(
        ssl_mode: Option<SslMode>,
        root: Option<&str>,
        ssl: Option<bool>,
        environment: Environment,
    ) -> Result<TlsSettings, TlsError> {
        let env = TlsEnv {
            environment,
            ssl_mode,
            ssl_root_cert: root.map(PathBuf::from),
        };
        env.decide(ssl, None)
    }

    #[test]
    fn parses_libpq_names() {
        for m in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(m.as_str().parse::<SslMode>(), Ok(m));
        }
        assert_eq!("VERIFY-FULL".parse::<SslMode>(), Ok(SslMode::VerifyFull));
        assert!("allow-ish".parse::<SslMode>().is_err());
    }

    #[test]
    fn defaults_to_verify_full_with_a_root_and_require_without() {
        assert_eq!(
            resolve(None, Some("/ca.pem"), None, Local).unwrap().mode,
            SslMode::VerifyFull
        );
        assert_eq!(resolve(None, None, None, Local).unwrap().mode, SslMode::Require);
        let from_secret = TlsEnv::default().decide(None, Some("/opt/rds.pem")).unwrap();
        assert_eq!(from_secret.mode, SslMode::VerifyFull);
        assert_eq!(from_secret.root_cert, Some(PathBuf::from("/opt/rds.pem")));
    }

    #[test]
    fn production_refuses_plaintext_modes() {
        for m in [SslMode::Disable, SslMode::Prefer] {
            assert!(matches!(
                resolve(Some(m), None, None, Production),
                Err(TlsError::PlaintextInProduction { .. })
            ));
        }
        assert_eq!(
            resolve(None, None, Some(false), Production).unwrap().mode,
            SslMode::Require
        );
        assert_eq!(
            resolve(Some(SslMode::Require), None, None, Production).unwrap().mode,
            SslMode::Require
        );
    }

    #[test]
    fn secret_ssl_true_never_falls_back_to_plaintext() {
        assert_eq!(
            resolve(Some(SslMode::Prefer), None, Some(true), Local).unwrap().mode,
            SslMode::Require
        );
        assert!(matches!(
            resolve(Some(SslMode::Disable), None, Some(true), Local),
            Err(TlsError::SecretRequiresTls)
        ));
        assert_eq!(
            resolve(None, None, Some(false), Local).unwrap().mode,
            SslMode::Require,
            "ssl: false in a secret does not turn TLS off"
        );
        assert_eq!(
            resolve(Some(SslMode::Disable), None, Some(false), Local).unwrap().mode,
            SslMode::Disable
        );
    }

    #[test]
    fn verifying_modes_need_a_root_certificate_as_in_libpq() {
        // Without a root, verify-ca used to trust the built-in store and skip the host name: any
        // publicly trusted certificate, for any domain, was accepted.
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let err = resolve(Some(mode), None, None, Local).unwrap_err();
            assert!(matches!(err, TlsError::NoRootCert { .. }), "{mode}: {err}");
            let msg = err.to_string();
            assert!(msg.contains("DB_SSL_ROOT_CERT") && msg.contains(mode.as_str()), "{msg}");
            let direct = TlsSettings { mode, root_cert: None };
            assert!(
                matches!(direct.native_connector(), Err(TlsError::NoRootCert { .. })),
                "{mode}: the connector refuses too"
            );
        }
        assert_eq!(
            resolve(Some(SslMode::Require), None, None, Local).unwrap().mode,
            SslMode::Require,
            "require encrypts without verifying, as in libpq"
        );
    }

    #[test]
    fn system_means_the_os_store_and_only_with_verify_full() {
        let system = resolve(Some(SslMode::VerifyFull), Some("system"), None, Local).unwrap();
        assert!(system.system_roots());
        assert!(system.native_connector().is_ok(), "no file is read for `system`");
        assert_eq!(
            resolve(None, Some("system"), None, Local).unwrap().mode,
            SslMode::VerifyFull,
            "libpq 16+: sslrootcert=system makes verify-full the default"
        );
        for weak in [SslMode::VerifyCa, SslMode::Require, SslMode::Prefer, SslMode::Disable] {
            let err = resolve(Some(weak), Some("system"), None, Local).unwrap_err();
            assert!(
                matches!(err, TlsError::WeakModeWithSystemRoots { mode } if mode == weak),
                "{weak}: {err}"
            );
            assert!(err.to_string().contains("verify-full"), "{err}");
        }
        let file = resolve(Some(SslMode::VerifyFull), Some("./system"), None, Local).unwrap();
        assert!(
            !file.system_roots(),
            "a file named system is written ./system, as in libpq"
        );
    }

    #[test]
    fn unreadable_or_empty_ca_is_a_clear_error() {
        let missing = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some("/nonexistent/ca.pem".into()),
        };
        let msg = missing.connector().err().expect("must fail").to_string();
        assert!(msg.contains("/nonexistent/ca.pem"), "{msg}");
        let dir = std::env::temp_dir().join(format!("tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let bad = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some(empty),
        };
        assert!(matches!(bad.connector(), Err(TlsError::CaInvalid { .. })));
        std::fs::remove_dir_all(dir).ok();
    }
}
