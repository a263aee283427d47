//! The rotation function against a real Postgres (TLS, SCRAM, `log_statement=all`) and moto,
//! driven the way Secrets Manager drives it (devstack's `RotationDriver`), with the handler
//! called in process.
//!
//! One test binary, one shared stack; every test makes its own roles and secrets. Tests that
//! need a server in a particular state (stopped, without TLS) start a private one.

mod alternating;
mod clone;
mod cloudformation;
mod custom_resource;
mod failures;
mod interruptions;
mod logs;
mod names_and_passwords;
mod password_encryption;
mod preflight;
mod revoke;
mod revoke_load;
mod rotate_deployed;
mod single_user;
mod support;
mod timing;
