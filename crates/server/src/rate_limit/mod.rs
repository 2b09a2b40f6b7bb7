//! Rate limits (docs/security.md#key-rate-limits, #lockout): GCRA ([`mailroom_core::gcra`]) over a store of theoretical
//! arrival times, in process by default, or in Redis (`--redis-url`) so that every node counts
//! against the same limits. One trait, [`LimitStore`], two stores.
//!
//! When Redis cannot be reached the configured [`FailureMode`] decides: `closed` (the default)
//! refuses limited requests with 503 `rate_limiter_unavailable` until it is back — an
//! attacker must not gain unlimited guesses by taking Redis down; `open` lets them through.

pub mod auth;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use mailroom_core::gcra::{self, Decision, Rate};
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex as AsyncMutex;

use crate::error::DomainError;
use crate::problem::ApiError;

/// The periods of the per-minute and per-day rates, in the limiter's microseconds.
pub(crate) const MINUTE_US: i64 = 60 * 1_000_000;
pub(crate) const DAY_US: i64 = 24 * 60 * MINUTE_US;

/// How long a Redis round trip may take before the limiter counts Redis as down.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// What limited requests get when the store cannot answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailureMode {
    #[default]
    Closed,
    Open,
}

impl std::str::FromStr for FailureMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "closed" => Ok(FailureMode::Closed),
            "open" => Ok(FailureMode::Open),
            other => Err(format!("expected closed or open, not {other:?}")),
        }
    }
}

/// The store could not decide.
#[derive(Debug, thiserror::Error)]
#[error("the rate limit store is unavailable: {0}")]
pub struct Unavailable(String);

/// Where theoretical arrival times live. Each call decides one request against all of
/// `rates` (keyed by `keys`) at once.
pub trait LimitStore: Send + Sync {
    fn decide(
        &self,
        keys: &[String],
        rates: &[Rate],
    ) -> impl Future<Output = Result<Decision, Unavailable>> + Send;
}

/// In process: a map of keys to times, under one lock (a decision is a few arithmetic steps).
#[derive(Default)]
pub struct MemoryStore {
    tats: Mutex<HashMap<String, i64>>,
}

impl LimitStore for MemoryStore {
    async fn decide(&self, keys: &[String], rates: &[Rate]) -> Result<Decision, Unavailable> {
        let now = now_us();
        let mut tats = self
            .tats
            .lock()
            .map_err(|_| Unavailable("the limiter's lock is poisoned".into()))?;
        let stored: Vec<Option<i64>> = keys.iter().map(|key| tats.get(key).copied()).collect();
        let (decision, new) = gcra::decide(now, rates, &stored);
        if decision.allowed {
            for (key, tat) in keys.iter().zip(new) {
                tats.insert(key.clone(), tat);
            }
        }
        Ok(decision)
    }
}

impl MemoryStore {
    /// Forgets keys whose budget is whole again, so the map does not grow forever.
    fn forget_idle(&self) {
        let now = now_us();
        if let Ok(mut tats) = self.tats.lock() {
            tats.retain(|_, tat| *tat > now);
        }
    }
}

/// In Redis: one Lua script decides and spends atomically, on Redis's clock.
pub struct RedisStore {
    client: redis::Client,
    /// Opened on first use and again after a failure: a Redis restart heals by itself.
    connection: AsyncMutex<Option<MultiplexedConnection>>,
    script: redis::Script,
}

impl RedisStore {
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            connection: AsyncMutex::new(None),
            script: redis::Script::new(include_str!("gcra.lua")),
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, Unavailable> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let connection = tokio::time::timeout(
            REDIS_TIMEOUT,
            self.client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| Unavailable("connecting to Redis timed out".into()))?
        .map_err(|error| Unavailable(error.to_string()))?;
        *slot = Some(connection.clone());
        Ok(connection)
    }
}

impl LimitStore for RedisStore {
    async fn decide(&self, keys: &[String], rates: &[Rate]) -> Result<Decision, Unavailable> {
        let mut connection = self.connection().await?;
        let mut invocation = self.script.prepare_invoke();
        for (key, rate) in keys.iter().zip(rates) {
            invocation.key(key).arg(rate.count).arg(rate.period_us);
        }
        let answer: Result<Result<Vec<i64>, _>, _> =
            tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut connection)).await;
        let values = match answer {
            Ok(Ok(values)) => values,
            failed => {
                *self.connection.lock().await = None;
                return Err(Unavailable(match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => "Redis did not answer in time".into(),
                }));
            }
        };
        let [allowed, limit, remaining, reset_us, retry_after_us] = values[..] else {
            return Err(Unavailable(format!("unexpected script answer {values:?}")));
        };
        Ok(Decision {
            allowed: allowed == 1,
            limit: u32::try_from(limit).unwrap_or(0),
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset_us,
            retry_after_us,
        })
    }
}

enum Store {
    Memory(MemoryStore),
    Redis(Box<RedisStore>),
}

impl LimitStore for Store {
    async fn decide(&self, keys: &[String], rates: &[Rate]) -> Result<Decision, Unavailable> {
        match self {
            Store::Memory(store) => store.decide(keys, rates).await,
            Store::Redis(store) => store.decide(keys, rates).await,
        }
    }
}

/// The process's limiter. Cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    store: Arc<Store>,
    prefix: Arc<str>,
    on_failure: FailureMode,
}

impl Limiter {
    pub fn in_memory() -> Self {
        Self {
            store: Arc::new(Store::Memory(MemoryStore::default())),
            prefix: "".into(),
            on_failure: FailureMode::Closed,
        }
    }

    /// Limits shared through Redis at `url`; every key starts with `prefix`.
    pub fn redis(url: &str, prefix: &str, on_failure: FailureMode) -> anyhow::Result<Self> {
        Ok(Self {
            store: Arc::new(Store::Redis(Box::new(RedisStore::new(url)?))),
            prefix: prefix.into(),
            on_failure,
        })
    }

    /// Decides one request against `rates`, each under its key. `Ok(None)`: the store is down
    /// and the failure mode lets the request through unlimited.
    pub async fn check(
        &self,
        keys: &[String],
        rates: &[Rate],
    ) -> Result<Option<Decision>, DomainError> {
        let keys: Vec<String> = keys
            .iter()
            .map(|key| format!("{}{key}", self.prefix))
            .collect();
        match self.store.decide(&keys, rates).await {
            Ok(decision) => Ok(Some(decision)),
            Err(error) => {
                tracing::warn!(%error, mode = ?self.on_failure, "rate limiting unavailable");
                match self.on_failure {
                    FailureMode::Open => Ok(None),
                    FailureMode::Closed => Err(DomainError::RateLimiterUnavailable),
                }
            }
        }
    }

    /// Trims the in-process store (Redis expires its keys itself).
    pub fn forget_idle(&self) {
        if let Store::Memory(store) = self.store.as_ref() {
            store.forget_idle();
        }
    }
}

/// Runs the request when `decision` allows it (or when there is none: the store is down and
/// the failure mode is open), else answers 429 with `detail`; a decided response carries the
/// `RateLimit-*` headers either way.
pub async fn gate(
    decision: Result<Option<Decision>, DomainError>,
    detail: &'static str,
    run: impl Future<Output = axum::response::Response>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let decision = match decision {
        Ok(Some(decision)) => decision,
        Ok(None) => return run.await,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let mut response = if decision.allowed {
        run.await
    } else {
        ApiError::from(refusal(&decision, detail)).into_response()
    };
    set_headers(response.headers_mut(), &decision);
    response
}

/// The refusal for a decision that did not allow the request.
pub fn refusal(decision: &Decision, detail: &'static str) -> DomainError {
    DomainError::RateLimited {
        detail,
        retry_after: seconds(decision.retry_after_us),
    }
}

/// `RateLimit-Limit`, `-Remaining`, `-Reset` (and `Retry-After` when refused).
pub fn set_headers(headers: &mut HeaderMap, decision: &Decision) {
    for (name, value) in [
        ("ratelimit-limit", u64::from(decision.limit)),
        ("ratelimit-remaining", u64::from(decision.remaining)),
        ("ratelimit-reset", seconds(decision.reset_us)),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    if !decision.allowed {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(seconds(decision.retry_after_us)),
        );
    }
}

/// Whole seconds, rounded up: "retry after 0 seconds" would invite an immediate retry.
fn seconds(us: i64) -> u64 {
    u64::try_from(us.max(0)).unwrap_or(0).div_ceil(1_000_000)
}

fn now_us() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros(),
    )
    .unwrap_or(i64::MAX)
}
