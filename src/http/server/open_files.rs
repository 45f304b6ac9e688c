//! The open-files limit against the connection cap. Every connection is a file descriptor; a
//! cap the process's limit cannot hold makes accept fail with EMFILE under load, and then
//! nobody, not even `/healthz`, gets in. At start-up the soft limit is raised to the hard limit
//! (what an unprivileged process may do), and a cap that still does not fit, with what the
//! server needs for itself, is lowered to fit, with a warning naming both numbers.

/// Descriptors the server keeps besides client connections: listeners, the database pool,
/// Redis, log files, the runtime's own; generous, since running out is the failure this avoids.
const OWN_NEEDS: u64 = 64;

/// The cap to use with `open_files` descriptors available and a pool of `db_connections`.
pub fn fitted_cap(configured: u32, open_files: u64, db_connections: u32) -> u32 {
    let own = OWN_NEEDS + u64::from(db_connections);
    let room = open_files.saturating_sub(own).max(1);
    u32::try_from(room.min(u64::from(configured))).unwrap_or(configured)
}

/// Raises the soft limit to the hard one and returns the cap to use.
pub fn fit_connection_cap(configured: u32, db_connections: u32) -> u32 {
    let open_files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!(error = %err, "could not read or raise the open-files limit");
            return configured;
        }
    };
    let cap = fitted_cap(configured, open_files, db_connections);
    if cap < configured {
        tracing::warn!(
            configured_max_connections = configured,
            max_connections = cap,
            open_files_limit = open_files,
            "HEFFL_MAX_CONNECTIONS ({configured}) does not fit the open-files limit \
             ({open_files}, raised to the hard limit); using {cap}. Raise the limit \
             (LimitNOFILE= in systemd, ulimit -n) to use the configured cap"
        );
    } else {
        tracing::debug!(open_files_limit = open_files, "open-files limit");
    }
    cap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_that_fits_is_kept_and_one_that_does_not_is_lowered() {
        assert_eq!(fitted_cap(10_000, 1_048_576, 10), 10_000);
        assert_eq!(fitted_cap(10_000, 256, 10), 256 - 64 - 10);
        assert_eq!(fitted_cap(10_000, 10, 10), 1);
        assert_eq!(fitted_cap(100, u64::MAX, 10), 100);
    }
}
