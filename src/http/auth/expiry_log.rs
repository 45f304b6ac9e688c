//! Writes the `api_key.expired` audit event the first time an expired key is presented,
//! off the request path and once per key per process (the insert itself is idempotent too).

use crate::domain::ids::KeyId;
use crate::domain::time::Timestamp;
use crate::store::Store;
use crate::verify::KeyPrincipalRow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

const MAX_REMEMBERED: usize = 10_000;

#[derive(Default)]
pub struct ExpiryLog {
    noted: Mutex<HashSet<KeyId>>,
}

impl ExpiryLog {
    fn forget(&self, key_id: &KeyId) {
        let mut noted = match self.noted.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        noted.remove(key_id);
    }

    pub fn note(self: &Arc<Self>, store: &Store, row: &KeyPrincipalRow, expired_at: Timestamp) {
        {
            let mut noted = match self.noted.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            if noted.len() >= MAX_REMEMBERED {
                noted.clear();
            }
            if !noted.insert(row.key_id.clone()) {
                return;
            }
        }
        let store = store.clone();
        let workspace_id = row.workspace_id.clone();
        let key_id = row.key_id.clone();
        let log = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(err) = store
                .audit()
                .record_key_expired(&workspace_id, &key_id, expired_at)
                .await
            {
                tracing::warn!(error = %err, "could not record a key's expiry in the audit log");
                // Let the next presentation of the key try again.
                log.forget(&key_id);
            }
        });
    }
}
