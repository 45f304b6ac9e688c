//! Key verification: the in-process cache, the lookup behind it, the change feed that keeps it
//! in step with other processes, and the invalidation of its entries.

mod cache;
pub mod change_feed;
mod key_events;
mod lookup;

pub use cache::*;
pub use key_events::NOTIFY_CHANNEL;
pub use lookup::KeyPrincipalRow;
