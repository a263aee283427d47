//! db-credentials against a real Postgres (TLS, SCRAM) and moto, through the real AWS SDK.

mod cache;
mod common;
mod doctor;
mod failures;
mod recovery;
mod sources;
