//! Limits that several instances share through Redis (docs/api.md §12), or that each instance keeps on
//! its own when `HEFFL_REDIS_URL` is unset or Redis is unreachable.
//!
//! `SharedLimits` is made once per server from the configuration; each limit (per-key rate
//! limit, leak-report throttle, ...) is a `Limiter` made from it with its own scope name:
//! `limits.limiter("leak")`. On the request path, `Limiter::start` answers from memory while a
//! key is far from its limit and asks for Redis only near it (see `local`), which
//! `Limiter::ask_redis` then does; `Limiter::check` is the two together. The batched sync and
//! the health check run in `redis_sync::run`, started with the server's other background tasks.

pub mod bounded;
mod local;
mod redis_sync;

pub use local::Decision;

use local::{Mode, Step, Table};
use redis_sync::Redis;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Every limit counts requests per minute.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How often unsent admits are sent to Redis (the `T` of the bound in docs/scaling.md).
pub const SYNC_INTERVAL: Duration = Duration::from_millis(20);
const FRESH_FOR: Duration = Duration::from_millis(100);

/// The shared part: the Redis connection, whether it is up, how many instances share it.
pub(crate) struct Hub {
    redis: Redis,
    up: AtomicBool,
    /// The outage warning was logged (once per outage).
    warned: AtomicBool,
    instances: AtomicU32,
    tables: Mutex<Vec<(&'static str, Weak<Table>)>>,
}

impl Hub {
    fn mode(&self) -> Mode {
        if !self.up.load(Ordering::Relaxed) {
            return Mode::PerInstance;
        }
        Mode::Shared {
            instances: self.instances.load(Ordering::Relaxed).max(1),
            // Past this, a key idle here may have been used up elsewhere: one local admit, then
            // the exact check. Generous, so that a busy instance whose syncs run late does not
            // send every request to Redis; how late they run is what the bound's T measures.
            fresh_for: FRESH_FOR,
        }
    }

    fn tables(&self) -> Vec<(&'static str, Arc<Table>)> {
        let mut tables = match self.tables.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        tables.retain(|(_, table)| table.strong_count() > 0);
        tables
            .iter()
            .filter_map(|(scope, table)| Some((*scope, table.upgrade()?)))
            .collect()
    }
}

/// Made once per server; cheap to clone.
#[derive(Clone)]
pub struct SharedLimits {
    hub: Option<Arc<Hub>>,
    /// The most keys each limiter's table keeps (`HEFFL_MAX_TRACKED_ADDRESSES`).
    max_entries: usize,
}

impl Default for SharedLimits {
    fn default() -> SharedLimits {
        SharedLimits {
            hub: None,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// `HEFFL_MAX_TRACKED_ADDRESSES`' default.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

impl SharedLimits {
    /// Per-instance limits only.
    pub fn per_instance() -> SharedLimits {
        SharedLimits::default()
    }

    /// Limits shared through the Redis at `url`, under keys starting with `prefix`. Nothing
    /// connects until `run` does; until then, and whenever Redis is down, limits are per
    /// instance.
    pub fn redis(url: &str, prefix: &str) -> Result<SharedLimits, redis::RedisError> {
        let redis = Redis::new(url, prefix)?;
        Ok(SharedLimits {
            max_entries: DEFAULT_MAX_ENTRIES,
            hub: Some(Arc::new(Hub {
                redis,
                up: AtomicBool::new(false),
                warned: AtomicBool::new(false),
                instances: AtomicU32::new(1),
                tables: Mutex::default(),
            })),
        })
    }

    /// Each limiter made from now on keeps at most `max_entries` keys (see `Table::bounded`).
    pub fn bounded(mut self, max_entries: usize) -> SharedLimits {
        self.max_entries = max_entries;
        self
    }

    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// A limit named `scope` (part of its Redis keys; one per kind of limit).
    pub fn limiter(&self, scope: &'static str) -> Limiter {
        let table = Arc::new(Table::bounded(WINDOW, self.max_entries));
        if let Some(hub) = &self.hub {
            let mut tables = match hub.tables.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            tables.push((scope, Arc::downgrade(&table)));
        }
        Limiter {
            scope,
            table,
            hub: self.hub.clone(),
        }
    }

    /// `None` without Redis; otherwise whether limits are shared right now.
    pub fn is_up(&self) -> Option<bool> {
        self.hub.as_ref().map(|hub| hub.up.load(Ordering::Relaxed))
    }

    /// Syncs and watches Redis until the task is aborted; returns at once without Redis.
    pub async fn run(self) {
        if let Some(hub) = self.hub {
            redis_sync::run(hub).await;
        }
    }
}

/// How far `Limiter::start` got.
#[derive(Debug)]
pub enum Check {
    Decided(Decision),
    AskRedis(Question),
}

/// What `Limiter::ask_redis` must ask: `flush` local admits to add, then whether one more fits.
#[derive(Debug)]
pub struct Question {
    flush: u64,
    renew: Option<u64>,
    limit: u32,
}

/// One kind of limit: a window per key, shared when Redis is configured and up.
pub struct Limiter {
    scope: &'static str,
    table: Arc<Table>,
    hub: Option<Arc<Hub>>,
}

impl Limiter {
    /// Counts one request for `key` against `limit` per minute (0: no limit).
    pub async fn check(&self, key: &str, limit: u32, now: Instant) -> Decision {
        match self.start(key, limit, now) {
            Check::Decided(decision) => decision,
            Check::AskRedis(question) => self.ask_redis(key, question).await,
        }
    }

    /// The part of `check` that never waits: decided locally, or a question for Redis that
    /// `ask_redis` must finish (the request is already counted; do not `start` again).
    pub fn start(&self, key: &str, limit: u32, now: Instant) -> Check {
        if limit == 0 {
            return Check::Decided(Decision {
                allowed: true,
                limit,
                remaining: 0,
                reset_secs: 1,
            });
        }
        let mode = self
            .hub
            .as_ref()
            .map_or(Mode::PerInstance, |hub| hub.mode());
        match self.table.decide(key, limit, mode, now) {
            Step::Decided(decision) => Check::Decided(decision),
            Step::Exact { flush, renew } => Check::AskRedis(Question {
                flush,
                renew,
                limit,
            }),
        }
    }

    pub async fn ask_redis(&self, key: &str, question: Question) -> Decision {
        let Question {
            flush,
            renew,
            limit,
        } = question;
        let Some(hub) = &self.hub else {
            // Per-instance mode never asks for an exact check; keep the type honest anyway.
            return self.fail(key, flush, limit);
        };
        match hub.redis.exact(self.scope, key, flush, limit).await {
            Ok((admitted, answer)) => {
                let now = Instant::now();
                self.table
                    .with_entry(key, |entry, window| {
                        entry.apply_count(flush, answer, window, now);
                        entry.apply_exact(admitted, renew, limit, now)
                    })
                    .unwrap_or(Decision {
                        allowed: admitted,
                        limit,
                        remaining: 0,
                        reset_secs: answer.ttl.as_secs().max(1),
                    })
            }
            Err(err) => {
                redis_sync::went_down(hub, &err);
                self.fail(key, flush, limit)
            }
        }
    }

    fn fail(&self, key: &str, flush: u64, limit: u32) -> Decision {
        let now = Instant::now();
        self.table
            .with_entry(key, |entry, window| {
                entry.fail_exact(flush, limit, window, now)
            })
            .unwrap_or(Decision {
                allowed: true,
                limit,
                remaining: 0,
                reset_secs: 1,
            })
    }

    /// When `key` has used up `limit` in its current window (as far as this instance knows):
    /// the seconds until it resets. Counts nothing and never waits for Redis.
    pub fn exhausted(&self, key: &str, limit: u32, now: Instant) -> Option<u64> {
        self.table.exhausted(key, limit, now)
    }

    /// Drops windows that have ended.
    pub fn prune(&self, now: Instant) {
        self.table.prune(now);
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}
