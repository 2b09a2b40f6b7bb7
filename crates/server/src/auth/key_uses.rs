//! Writing down API keys' uses, at most once a minute per key and address.

/// When this process last wrote down each key's use (the key list shows the last use to the
/// minute): a write per request would serialize every keyed request on SQLite's lock for
/// nothing. The storage's own condition keeps several nodes from writing more than that too.
#[derive(Clone, Default)]
pub struct KeyUses(
    std::sync::Arc<
        std::sync::Mutex<
            std::collections::HashMap<mailroom_core::ApiKeyId, (std::time::Instant, String)>,
        >,
    >,
);

impl KeyUses {
    const INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

    /// Whether the use of `key` from `ip` should be written now; notes it if so.
    pub fn due(&self, key: mailroom_core::ApiKeyId, ip: &str) -> bool {
        let Ok(mut uses) = self.0.lock() else {
            return true;
        };
        let now = std::time::Instant::now();
        let due = uses
            .get(&key)
            .is_none_or(|(at, last_ip)| now.duration_since(*at) >= Self::INTERVAL || last_ip != ip);
        if due {
            // Forget the idle ones now and then, so that the map stays small.
            if uses.len() > 10_000 {
                uses.retain(|_, (at, _)| now.duration_since(*at) < Self::INTERVAL);
            }
            uses.insert(key, (now, ip.to_owned()));
        }
        due
    }
}
