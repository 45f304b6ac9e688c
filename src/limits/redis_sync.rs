//! The Redis side of shared limits: the exact check, the batched sync, and the health check
//! that tells how many instances share the limits and whether Redis is reachable.
//!
//! A key's shared window is the life of its Redis key: the first increment creates it with a
//! one-minute expiry (`PEXPIRE … NX`), so every instance sees the same window and its reset.

use super::local::SharedCount;
use super::{Hub, SYNC_INTERVAL, WINDOW};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long a request waits for an exact check before deciding on its own.
const EXACT_TIMEOUT: Duration = Duration::from_millis(250);
const SYNC_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the health check runs; sharing resumes within about this long of Redis returning.
const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// An instance that missed this many health checks no longer counts as sharing.
const INSTANCE_TTL: Duration = Duration::from_secs(3);

/// Adds the unsent admits, then admits one more if the count is under the limit. Refused
/// requests are not counted, as in the per-instance window.
const EXACT: &str = r"
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  ttl = tonumber(ARGV[3])
end
local admitted = 0
if n < tonumber(ARGV[2]) then
  n = redis.call('INCR', KEYS[1])
  admitted = 1
end
return {admitted, n, ttl}
";

/// Registers this instance and counts the live ones, on Redis's clock so that hosts whose
/// clocks disagree still agree on who is alive.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])
";

pub(crate) struct Redis {
    client: Client,
    prefix: String,
    instance: String,
    connection: OnceLock<ConnectionManager>,
    exact: Script,
    heartbeat: Script,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("Redis did not answer in time")]
    Timeout,
    #[error("not connected yet")]
    NotConnected,
}

/// Every Redis round trip goes through here: bounded by `limit`, and timed for
/// `heffl_redis_round_trip_seconds` (failures and timeouts included: they are what an
/// operator looks for).
async fn timed<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, SyncError> {
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(limit, call).await;
    metrics::histogram!("heffl_redis_round_trip_seconds").record(started.elapsed().as_secs_f64());
    match outcome {
        Ok(result) => Ok(result?),
        Err(_) => Err(SyncError::Timeout),
    }
}

impl Redis {
    pub(crate) fn new(url: &str, prefix: &str) -> Result<Redis, RedisError> {
        Ok(Redis {
            client: Client::open(url)?,
            prefix: prefix.to_owned(),
            instance: crate::domain::base62::random_string(16),
            connection: OnceLock::new(),
            exact: Script::new(EXACT),
            heartbeat: Script::new(HEARTBEAT),
        })
    }

    fn key(&self, scope: &str, key: &str) -> String {
        format!("{}limit:{scope}:{key}", self.prefix)
    }

    fn connection(&self) -> Result<ConnectionManager, SyncError> {
        self.connection
            .get()
            .cloned()
            .ok_or(SyncError::NotConnected)
    }

    /// Connects lazily: the manager reconnects by itself after an outage, each attempt short
    /// so that a dead Redis is noticed quickly.
    fn connect(&self) -> Result<(), RedisError> {
        if self.connection.get().is_some() {
            return Ok(());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        let _ = self.connection.set(manager);
        Ok(())
    }

    pub(crate) async fn exact(
        &self,
        scope: &str,
        key: &str,
        flush: u64,
        limit: u32,
    ) -> Result<(bool, SharedCount), SyncError> {
        let mut connection = self.connection()?;
        let mut invocation = self.exact.key(self.key(scope, key));
        invocation
            .arg(flush)
            .arg(limit)
            .arg(WINDOW.as_millis() as u64);
        let (admitted, count, ttl): (u8, u64, i64) =
            timed(EXACT_TIMEOUT, invocation.invoke_async(&mut connection)).await?;
        Ok((admitted == 1, shared_count(count, ttl)))
    }

    async fn heartbeat(&self) -> Result<u32, SyncError> {
        self.connect()?;
        let mut connection = self.connection()?;
        let mut invocation = self.heartbeat.key(format!("{}instances", self.prefix));
        invocation
            .arg(&self.instance)
            .arg(INSTANCE_TTL.as_millis() as u64);
        timed(SYNC_TIMEOUT, invocation.invoke_async(&mut connection)).await
    }

    /// One pipeline for the whole batch: per key, add its admits, start its window if this
    /// created it, and read the total and the time left.
    async fn sync(&self, batch: &[(&str, &str, u64)]) -> Result<Vec<SharedCount>, SyncError> {
        let mut connection = self.connection()?;
        let mut pipe = redis::pipe();
        let window_ms = WINDOW.as_millis() as u64;
        for (scope, key, flush) in batch {
            let key = self.key(scope, key);
            pipe.cmd("INCRBY").arg(&key).arg(*flush);
            pipe.cmd("PEXPIRE")
                .arg(&key)
                .arg(window_ms)
                .arg("NX")
                .ignore();
            pipe.cmd("PTTL").arg(&key);
        }
        let values: Vec<i64> = timed(SYNC_TIMEOUT, pipe.query_async(&mut connection)).await?;
        Ok(values
            .chunks_exact(2)
            .map(|pair| shared_count(u64::try_from(pair[0]).unwrap_or(0), pair[1]))
            .collect())
    }
}

fn shared_count(count: u64, ttl_ms: i64) -> SharedCount {
    let ttl = u64::try_from(ttl_ms).map_or(WINDOW, Duration::from_millis);
    SharedCount { count, ttl }
}

pub(crate) fn went_down(hub: &Hub, err: &SyncError) {
    hub.up.store(false, Ordering::Relaxed);
    metrics::gauge!("heffl_shared_limits_up").set(0.0);
    if !hub.warned.swap(true, Ordering::Relaxed) {
        tracing::warn!(error = %err, "Redis unreachable: each instance enforces limits on its own until it returns");
    }
}

fn came_up(hub: &Hub) {
    if !hub.up.swap(true, Ordering::Relaxed) {
        metrics::gauge!("heffl_shared_limits_up").set(1.0);
        if hub.warned.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis reachable again: limits are shared");
        }
    }
}

pub(crate) async fn run(hub: Arc<Hub>) {
    metrics::gauge!("heffl_shared_limits_up").set(0.0);
    let mut tick = tokio::time::interval(SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_health = Instant::now();
    loop {
        tick.tick().await;
        if Instant::now() >= next_health {
            next_health = Instant::now() + HEALTH_EVERY;
            match hub.redis.heartbeat().await {
                Ok(instances) => {
                    hub.instances.store(instances.max(1), Ordering::Relaxed);
                    metrics::gauge!("heffl_shared_limits_instances").set(f64::from(instances));
                    came_up(&hub);
                }
                Err(err) => went_down(&hub, &err),
            }
        }
        if hub.up.load(Ordering::Relaxed) {
            sync(&hub).await;
        } else {
            for (_, table) in hub.tables() {
                table.drop_pending();
            }
        }
    }
}

async fn sync(hub: &Hub) {
    let tables = hub.tables();
    let batches: Vec<_> = tables
        .iter()
        .map(|(scope, table)| (*scope, table, table.take_pending()))
        .collect();
    let batch: Vec<(&str, &str, u64)> = batches
        .iter()
        .flat_map(|(scope, _, keys)| keys.iter().map(|(key, n)| (*scope, key.as_str(), *n)))
        .collect();
    if batch.is_empty() {
        return;
    }
    let result = hub.redis.sync(&batch).await;
    let now = Instant::now();
    let mut answers = match &result {
        Ok(answers) => Some(answers.iter()),
        Err(err) => {
            went_down(hub, err);
            None
        }
    };
    for (_, table, keys) in &batches {
        for (key, flushed) in keys {
            let answer = answers.as_mut().and_then(|answers| answers.next());
            table.with_entry(key, |entry, window| match answer {
                Some(answer) => entry.apply_sync(*flushed, *answer, window, now),
                None => entry.return_unsent(*flushed),
            });
        }
    }
}
