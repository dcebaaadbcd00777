//! The distributed backend: the same GCRA as a Redis script.

use std::time::Duration;

use ::redis::aio::ConnectionManager;

use super::{BackendError, Check, RateLimitBackend};
use crate::key::RateKey;
use crate::quota::{Decision, Policy};

fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(1)
}

/// GCRA in one atomic round trip. The clock is Redis's own (`TIME`), so
/// replicas with skewed clocks agree. Times are microseconds.
///
/// KEYS[1]: the bucket. ARGV: emission interval, burst, cost, peek (1/0).
/// Returns {allowed, remaining, retry_after, reset}.
const GCRA: &str = r#"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local peek = ARGV[4] == '1'
local capacity = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - capacity
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
if not peek then
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
end
local remaining = math.floor((now + capacity - new_tat) / interval)
return {1, remaining, 0, new_tat - now}
"#;

/// Gives back `cost` emission intervals of a bucket, atomically: the
/// theoretical arrival time moves back, and a time not after now is a full
/// bucket (the key is deleted). A missing key is a full bucket already.
///
/// KEYS[1]: the bucket. ARGV: emission interval, cost. Returns 1 if a
/// request was given back, 0 if the bucket was full.
const REFUND: &str = r#"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat <= now then
  return 0
end
local new_tat = tat - interval * cost
if new_tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
end
return 1
"#;

/// Limits shared by every replica through one Redis.
///
/// One script, sent once and then run by its SHA (`EVALSHA`, resent
/// automatically if Redis forgets it), decides atomically in one round trip;
/// another [refunds](RateLimitBackend::refund) the same way.
/// The connection manager reconnects on its own; while Redis is down each
/// check fails fast with [`BackendError::Unavailable`] and the layer applies
/// its failure policy.
///
/// ```no_run
/// # async fn run() -> Result<(), redis::RedisError> {
/// use mcp_ratelimit::RedisBackend;
///
/// let backend = RedisBackend::connect("redis://127.0.0.1:6379", "mcp:rl").await?;
/// # Ok(()) }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[derive(Clone)]
pub struct RedisBackend {
    /// `None` until the first connection succeeds (see [`RedisBackend::start`]).
    connection: std::sync::Arc<std::sync::RwLock<Option<ConnectionManager>>>,
    script: redis::Script,
    refund: redis::Script,
    prefix: String,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to `url`; keys are `<prefix>:<policy>:<key>`. Each command
    /// times out after 500 ms, so a hung Redis cannot hold requests.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisBackend, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let connection = ConnectionManager::new_with_config(client, manager_config()).await?;
        Ok(RedisBackend {
            connection: std::sync::Arc::new(std::sync::RwLock::new(Some(connection))),
            script: redis::Script::new(GCRA),
            refund: redis::Script::new(REFUND),
            prefix: prefix.to_owned(),
        })
    }

    /// Like [`connect`](Self::connect), but returns at once and connects in
    /// the background, retrying every second: a server can start while Redis
    /// is down (its checks fail, and the failure policy applies, until the
    /// first connection). Only a malformed URL is an error.
    pub fn start(url: &str, prefix: &str) -> Result<RedisBackend, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let backend = RedisBackend {
            connection: std::sync::Arc::new(std::sync::RwLock::new(None)),
            script: redis::Script::new(GCRA),
            refund: redis::Script::new(REFUND),
            prefix: prefix.to_owned(),
        };
        let slot = std::sync::Arc::downgrade(&backend.connection);
        tokio::spawn(async move {
            loop {
                match ConnectionManager::new_with_config(client.clone(), manager_config()).await {
                    Ok(connection) => {
                        if let Some(slot) = slot.upgrade() {
                            *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(connection);
                        }
                        tracing::info!("connected to Redis");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot connect to Redis; retrying");
                        if slot.strong_count() == 0 {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(backend)
    }

    fn connection(&self) -> Result<ConnectionManager, BackendError> {
        self.connection
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| BackendError::Unavailable("not connected to Redis yet".into()))
    }

    /// One `PING`: whether Redis answers now.
    pub async fn ping(&self) -> Result<(), BackendError> {
        let mut connection = self.connection()?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .map(|_| ())
            .map_err(|e| BackendError::Unavailable(e.to_string()))
    }

    async fn run(
        &self,
        policy: &Policy,
        key: &RateKey,
        cost: u32,
        peek: bool,
    ) -> Result<Decision, BackendError> {
        let quota = policy.quota();
        let interval = interval_micros(policy);
        let bucket = self.bucket(policy, key);
        let mut connection = self.connection()?;
        let (allowed, remaining, retry, reset): (i64, i64, i64, i64) = self
            .script
            .key(bucket)
            .arg(interval)
            .arg(quota.burst())
            .arg(cost.max(1))
            .arg(if peek { "1" } else { "0" })
            .invoke_async(&mut connection)
            .await
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(Decision {
            allowed: allowed == 1,
            limit: quota.limit(),
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset: micros(reset),
            retry_after: (allowed != 1).then(|| micros(retry)),
        })
    }
}

impl RedisBackend {
    fn bucket(&self, policy: &Policy, key: &RateKey) -> String {
        format!("{}:{}:{}", self.prefix, policy.name(), key)
    }

    async fn give_back(
        &self,
        policy: &Policy,
        key: &RateKey,
        cost: u32,
    ) -> Result<(), BackendError> {
        let mut connection = self.connection()?;
        let _given: i64 = self
            .refund
            .key(self.bucket(policy, key))
            .arg(interval_micros(policy))
            .arg(cost.max(1))
            .invoke_async(&mut connection)
            .await
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        Ok(())
    }
}

/// The emission interval in whole microseconds (Redis's clock), at least 1.
fn interval_micros(policy: &Policy) -> u64 {
    u64::try_from(policy.quota().emission_interval().as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl RateLimitBackend for RedisBackend {
    fn check<'a>(&'a self, policy: &'a Policy, key: &'a RateKey, cost: u32) -> Check<'a> {
        Check::Pending(Box::pin(self.run(policy, key, cost, false)))
    }

    fn peek<'a>(&'a self, policy: &'a Policy, key: &'a RateKey) -> Check<'a> {
        Check::Pending(Box::pin(self.run(policy, key, 1, true)))
    }

    fn refund<'a>(&'a self, policy: &'a Policy, key: &'a RateKey, cost: u32) -> Check<'a, ()> {
        Check::Pending(Box::pin(self.give_back(policy, key, cost)))
    }
}
