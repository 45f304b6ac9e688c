//! GitHub's secret-scanning public keys, from the file `HEFFL_GITHUB_SECRET_SCANNING_KEYS`
//! names, read again whenever its size or modification time changes, so an operator (or a
//! cron job fetching `https://api.github.com/meta/public_keys/secret_scanning`) can rotate
//! keys without a restart. A file that cannot be read or parsed leaves the keys read before.

use crate::domain::secret_scanning::PublicKeys;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

type Stamp = (Option<SystemTime>, u64);

pub struct GitHubKeys {
    path: PathBuf,
    loaded: Mutex<Option<(Stamp, Arc<PublicKeys>)>>,
}

impl GitHubKeys {
    pub fn new(path: PathBuf) -> GitHubKeys {
        GitHubKeys {
            path,
            loaded: Mutex::new(None),
        }
    }

    /// The keys as the file holds them now; `None` when it has never been readable.
    pub async fn current(&self) -> Option<Arc<PublicKeys>> {
        let stamp = tokio::fs::metadata(&self.path)
            .await
            .ok()
            .map(|meta| (meta.modified().ok(), meta.len()));
        let cached = self.cached();
        if let (Some(stamp), Some((seen, keys))) = (stamp, &cached) {
            if stamp == *seen {
                return Some(keys.clone());
            }
        }
        let Some(stamp) = stamp else {
            tracing::error!(path = %self.path.display(), "HEFFL_GITHUB_SECRET_SCANNING_KEYS cannot be read; using the keys read before, if any");
            return cached.map(|(_, keys)| keys);
        };
        let parsed = match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => PublicKeys::parse(&text),
            Err(err) => Err(err.to_string()),
        };
        match parsed {
            Ok(keys) => {
                tracing::info!(path = %self.path.display(), keys = keys.len(), "read GitHub's secret-scanning keys");
                let keys = Arc::new(keys);
                if let Ok(mut loaded) = self.loaded.lock() {
                    *loaded = Some((stamp, keys.clone()));
                }
                Some(keys)
            }
            Err(err) => {
                tracing::error!(path = %self.path.display(), error = %err, "HEFFL_GITHUB_SECRET_SCANNING_KEYS cannot be used; using the keys read before, if any");
                cached.map(|(_, keys)| keys)
            }
        }
    }

    fn cached(&self) -> Option<(Stamp, Arc<PublicKeys>)> {
        self.loaded.lock().ok().and_then(|loaded| loaded.clone())
    }
}
