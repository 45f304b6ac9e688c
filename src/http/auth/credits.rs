//! The last two checks before a handler runs, in the order of docs/api.md §14: the route's
//! scope (403 `insufficient_scope`), then its cost in the key's credits (429
//! `credits_exhausted`). Every /api/v1 handler starts with `Principal::admit`, so a request
//! refused by any earlier check (the key, its address, its rate limit, its scope) spends no
//! credit, and one the handler runs has spent its cost, whatever the handler answers.

use crate::domain::credits::retry_after_secs;
use crate::domain::scopes::Scope;
use crate::error::{ApiError, Reason};
use crate::http::auth::api_key::Principal;
use crate::http::state::AppState;
use crate::verify::credits::{CreditLedger, KeyLease, SpendNow};
use crate::verify::{KeyCredits, KeyPrincipalRow};

/// A spend that could not be decided without the database.
pub struct MustLease;

impl Principal {
    /// The route's scope, then one credit.
    pub async fn admit(&self, state: &AppState, scope: Scope) -> Result<(), ApiError> {
        self.require(scope)?;
        self.spend(state, 1).await
    }

    /// Spends `cost` of the key's credits (nothing for a key without credits).
    pub async fn spend(&self, state: &AppState, cost: i64) -> Result<(), ApiError> {
        match self.spend_now(state, cost) {
            Ok(done) => done,
            // Boxed: the database wait of this rare path would otherwise be part of every
            // keyed handler's future, which is moved whole each time it is boxed and called.
            Err(MustLease) => Box::pin(self.spend_leasing(state, cost)).await,
        }
    }

    /// The spend when the lease this instance holds decides it, the common case: no waiting.
    fn spend_now(&self, state: &AppState, cost: i64) -> Result<Result<(), ApiError>, MustLease> {
        let Some(credits) = &self.credits else {
            return Ok(Ok(()));
        };
        match CreditLedger::spend_now(credit_lease(state, self), credits, cost, now_ms()) {
            SpendNow::Spent => Ok(Ok(())),
            SpendNow::Exhausted => Ok(Err(exhausted(credits))),
            SpendNow::MustLease => Err(MustLease),
        }
    }

    async fn spend_leasing(&self, state: &AppState, cost: i64) -> Result<(), ApiError> {
        let Some(credits) = &self.credits else {
            return Ok(());
        };
        let lease = credit_lease(state, self);
        let spent = state
            .credits
            .spend(&state.store, &self.key_id, lease, credits, cost)
            .await?;
        if spent {
            Ok(())
        } else {
            Err(exhausted(credits))
        }
    }
}

/// The key's lease on this instance, found through the cached row (the ledger's map is read
/// once per row, not per request).
pub fn credit_lease<'a>(state: &AppState, row: &'a KeyPrincipalRow) -> &'a KeyLease {
    row.memo
        .credit_lease
        .get_or_init(|| state.credits.lease_of(&row.key_id))
}

fn now_ms() -> i64 {
    crate::domain::time::Timestamp::now().0
}

fn exhausted(credits: &KeyCredits) -> ApiError {
    let retry = retry_after_secs(credits.refill.as_ref(), now_ms());
    let message = match retry {
        Some(secs) => format!("This key has used all its credits; they are refilled in {secs} seconds. Its creator's workspace admins can add more in Settings > Developer."),
        None => "This key has used all its credits; a workspace admin can add more in Settings > Developer.".to_owned(),
    };
    ApiError::TooManyRequests {
        reason: Reason::CreditsExhausted,
        message: message.into(),
        retry_after_secs: retry.map_or(0, |secs| u64::try_from(secs).unwrap_or(u64::MAX)),
    }
}
