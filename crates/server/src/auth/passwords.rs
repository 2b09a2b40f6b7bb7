//! Password hashing off the async executor, bounded: a storm of sign-ins queues here instead
//! of occupying every runtime thread (each hash takes tens of milliseconds of CPU and 19 MiB).

use std::sync::Arc;

use mailroom_crypto::password::{self, PasswordHash, Verification};
use secrecy::SecretString;
use tokio::sync::Semaphore;

use crate::error::DomainError;

#[derive(Clone)]
pub struct PasswordWork {
    permits: Arc<Semaphore>,
    /// Verified against when the account does not exist, so that an unknown email takes as
    /// long as a wrong password (docs/security.md#enumeration).
    dummy: PasswordHash,
}

impl PasswordWork {
    /// At most one hash per core at a time.
    pub fn new() -> Result<Self, password::PasswordHashError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut random = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut random);
        let dummy = password::hash(&SecretString::from(format!("{random:?}")))?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(cores)),
            dummy,
        })
    }

    pub async fn hash(&self, secret: &SecretString) -> Result<PasswordHash, DomainError> {
        let secret = secret.clone();
        self.run(move || password::hash(&secret)).await
    }

    /// Checks `secret` against `stored`, or against a dummy hash when there is no account:
    /// the same work either way, and never a match without an account.
    pub async fn verify(
        &self,
        secret: &SecretString,
        stored: Option<&str>,
    ) -> Result<Verification, DomainError> {
        let secret = secret.clone();
        let (hash, real) = match stored {
            Some(stored) => (PasswordHash::from_stored(stored), true),
            None => (self.dummy.clone(), false),
        };
        let verified = self.run(move || password::verify(&secret, &hash)).await?;
        Ok(if real {
            verified
        } else {
            Verification::Mismatch
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, password::PasswordHashError> + Send + 'static,
    ) -> Result<T, DomainError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(DomainError::internal)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(DomainError::internal)?
            .map_err(DomainError::internal)
    }
}
