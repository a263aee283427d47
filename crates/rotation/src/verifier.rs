//! What a password is stored as: the form the server's own settings ask for, computed here so the
//! plaintext never reaches Postgres, its log (`log_statement=all`) or `pg_stat_statements`.
//!
//! Postgres stores whatever `ALTER ROLE … PASSWORD` hands it when the string already looks like a
//! verifier, and otherwise hashes it as `password_encryption` says. Sending a SCRAM verifier to a
//! server set to `md5` would leave a SCRAM secret behind, which an md5-only client cannot use, and
//! a verifier with 4096 iterations on a server set to more would quietly weaken it. So the
//! session reads [`SETTINGS_QUERY`] first and [`stored_password`] follows what it says:
//!
//! * `md5`: `md5` + hex(md5(password ‖ role)), as libpq's `PQencryptPasswordConn` makes it;
//! * `scram-sha-256`: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (RFC 5802/7677)
//!   with a fresh 16-byte salt and the server's `scram_iterations` (Postgres 16+; 4096 before).
//!
//! devstack stores its test passwords through these same functions.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use postgres_protocol::escape::escape_literal;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::fmt;

/// Reads both settings in one round trip. `scram_iterations` exists from Postgres 16; before, the
/// second column is NULL and the iteration count is the fixed 4096.
pub const SETTINGS_QUERY: &str =
    "SELECT current_setting('password_encryption'), current_setting('scram_iterations', true)";

/// The iteration count of Postgres before 16, and the default of `scram_iterations` since.
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 4096;

/// Salt length Postgres uses (`SCRAM_DEFAULT_SALT_LEN`).
const SALT_LEN: usize = 16;

/// How the server stores new passwords (`password_encryption`, `scram_iterations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordEncryption {
    /// `md5`: the md5 hash of password and role name.
    Md5,
    /// `scram-sha-256` with this many iterations.
    ScramSha256 {
        /// `scram_iterations`.
        iterations: u32,
    },
}

impl Default for PasswordEncryption {
    fn default() -> Self {
        Self::ScramSha256 {
            iterations: DEFAULT_SCRAM_ITERATIONS,
        }
    }
}

impl fmt::Display for PasswordEncryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Md5 => f.write_str("md5"),
            Self::ScramSha256 { iterations } => write!(f, "scram-sha-256 ({iterations} iterations)"),
        }
    }
}

/// The server reported settings this crate does not know how to follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// `password_encryption` holds something else than `md5` or `scram-sha-256`.
    #[error("the server's password_encryption is \"{0}\"; only md5 and scram-sha-256 are supported")]
    Encryption(String),
    /// `scram_iterations` is not a positive number.
    #[error("the server's scram_iterations is \"{0}\", not a positive number")]
    Iterations(String),
}

impl PasswordEncryption {
    /// From the two columns of [`SETTINGS_QUERY`].
    ///
    /// # Errors
    /// [`SettingsError`] for a value Postgres would not report for a password it can check.
    pub fn from_settings(password_encryption: &str, scram_iterations: Option<&str>) -> Result<Self, SettingsError> {
        match password_encryption.trim() {
            // Before Postgres 14, `on` meant md5.
            "md5" | "on" => Ok(Self::Md5),
            "scram-sha-256" => {
                let iterations = match scram_iterations.map(str::trim) {
                    None | Some("") => DEFAULT_SCRAM_ITERATIONS,
                    Some(v) => v
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| SettingsError::Iterations(v.chars().take(32).collect()))?,
                };
                Ok(Self::ScramSha256 { iterations })
            }
            other => Err(SettingsError::Encryption(other.chars().take(32).collect())),
        }
    }
}

/// What the server should store for `role`'s `password`. The md5 form can log in with the md5
/// method by itself, so it is as secret as the password and kept as one.
pub fn stored_password(role: &str, password: &SecretString, encryption: PasswordEncryption) -> SecretString {
    let bytes = password.expose_secret().as_bytes();
    SecretString::from(match encryption {
        PasswordEncryption::Md5 => postgres_protocol::password::md5(bytes, role),
        // Postgres's default count is postgres-protocol's own verifier; only another count needs
        // ours (its PBKDF2 is generic, so in debug builds it runs at this crate's opt-level: ~14 ms
        // against ~1 ms for postgres-protocol's).
        PasswordEncryption::ScramSha256 {
            iterations: DEFAULT_SCRAM_ITERATIONS,
        } => postgres_protocol::password::scram_sha_256(bytes),
        PasswordEncryption::ScramSha256 { iterations } => {
            let mut salt = [0u8; SALT_LEN];
            rand::rng().fill_bytes(&mut salt);
            scram_sha_256(bytes, &salt, iterations)
        }
    })
}

/// [`stored_password`] as a SQL string literal.
pub fn stored_password_literal(role: &str, password: &SecretString, encryption: PasswordEncryption) -> SecretString {
    SecretString::from(escape_literal(
        stored_password(role, password, encryption).expose_secret(),
    ))
}

/// The SCRAM-SHA-256 verifier of `password` with `salt` and `iterations`, as Postgres's
/// `scram_build_secret` makes it: SASLprep first when the password is valid UTF-8 without
/// prohibited characters, the raw bytes otherwise.
fn scram_sha_256(password: &[u8], salt: &[u8], iterations: u32) -> String {
    let prepared = std::str::from_utf8(password)
        .ok()
        .and_then(|s| stringprep::saslprep(s).ok())
        .map_or_else(|| password.to_vec(), |p| p.into_owned().into_bytes());
    let salted: [u8; 32] = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(&prepared, salt, iterations);
    let hmac = |key: &[u8], message: &[u8]| {
        // HMAC takes keys of any length; the error arm cannot happen.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        mac.update(message);
        mac.finalize().into_bytes()
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    /// Plays the server's side of a SCRAM exchange against a stored verifier, with
    /// postgres-protocol's client (which computes Hi itself) on the other side: the verifier is
    /// right exactly when the client's proof checks out and it accepts the server's signature.
    fn server_accepts(verifier: &str, password: &str) -> bool {
        let (head, keys) = verifier.split_once('$').unwrap().1.split_once('$').unwrap();
        let (iterations, salt) = head.split_once(':').unwrap();
        let (stored_key, server_key) = keys.split_once(':').unwrap();
        let stored_key = STANDARD.decode(stored_key).unwrap();
        let server_key = STANDARD.decode(server_key).unwrap();

        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let client_first = String::from_utf8(client.message().to_vec()).unwrap();
        let client_first_bare = client_first.strip_prefix("n,,").unwrap();
        let client_nonce = client_first_bare.split("r=").nth(1).unwrap();
        let server_first = format!("r={client_nonce}srvnonce,s={salt},i={iterations}");
        client.update(server_first.as_bytes()).unwrap();
        let client_final = String::from_utf8(client.message().to_vec()).unwrap();
        let (without_proof, proof) = client_final.split_once(",p=").unwrap();
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let mac = |key: &[u8]| {
            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
            m.update(auth_message.as_bytes());
            m.finalize().into_bytes()
        };
        let client_signature = mac(&stored_key);
        let proof = STANDARD.decode(proof).unwrap();
        let client_key: Vec<u8> = proof.iter().zip(client_signature).map(|(p, s)| p ^ s).collect();
        if Sha256::digest(&client_key).as_slice() != stored_key.as_slice() {
            return false;
        }
        let server_final = format!("v={}", STANDARD.encode(mac(&server_key)));
        client.finish(server_final.as_bytes()).is_ok()
    }

    #[test]
    fn settings_are_read_as_postgres_reports_them() {
        assert_eq!(
            PasswordEncryption::from_settings("md5", None),
            Ok(PasswordEncryption::Md5)
        );
        assert_eq!(
            PasswordEncryption::from_settings("scram-sha-256", None),
            Ok(PasswordEncryption::ScramSha256 { iterations: 4096 })
        );
        assert_eq!(
            PasswordEncryption::from_settings("scram-sha-256", Some("10000")),
            Ok(PasswordEncryption::ScramSha256 { iterations: 10000 })
        );
        assert!(matches!(
            PasswordEncryption::from_settings("scram-sha-256", Some("0")),
            Err(SettingsError::Iterations(_))
        ));
        let err = PasswordEncryption::from_settings("crypt", None).unwrap_err();
        assert!(err.to_string().contains("\"crypt\""), "{err}");
    }

    #[test]
    fn md5_is_what_libpq_computes() {
        // md5("secret" ‖ "app"), as `SELECT 'md5' || md5('secretapp')` gives.
        let stored = stored_password("app", &secret("secret"), PasswordEncryption::Md5);
        assert_eq!(stored.expose_secret(), "md56a422f785c9e20873908ce25d1736ae2");
    }

    #[test]
    fn scram_verifier_with_the_servers_iteration_count_logs_in() {
        for (password, iterations) in [("pa'ss\"; é $$", 4096), ("Short-pw-1", 1), ("Longer-pw-2", 10_000)] {
            let stored = stored_password("app", &secret(password), PasswordEncryption::ScramSha256 { iterations });
            let stored = stored.expose_secret();
            assert!(stored.starts_with(&format!("SCRAM-SHA-256${iterations}:")), "{stored}");
            assert!(!stored.contains(password));
            assert!(server_accepts(stored, password), "{iterations}");
            assert!(!server_accepts(stored, "wrong"), "{iterations}");
        }
    }

    #[test]
    fn our_pbkdf2_matches_postgres_protocols_at_the_default_count() {
        // postgres-protocol computes the 4096-round verifier; ours must log in the same way.
        let ours = scram_sha_256(b"pa'ss\"; \xc3\xa9", &[7u8; SALT_LEN], DEFAULT_SCRAM_ITERATIONS);
        assert!(server_accepts(&ours, "pa'ss\"; é"));
        assert!(!server_accepts(&ours, "pa'ss"));
    }

    #[test]
    fn each_scram_verifier_has_a_fresh_salt() {
        let p = secret("same");
        let enc = PasswordEncryption::default();
        assert_ne!(
            stored_password("app", &p, enc).expose_secret(),
            stored_password("app", &p, enc).expose_secret()
        );
    }

    #[test]
    fn literals_are_quoted() {
        let lit = stored_password_literal("app", &secret("x"), PasswordEncryption::Md5);
        assert!(lit.expose_secret().starts_with("'md5") && lit.expose_secret().ends_with('\''));
    }
}
