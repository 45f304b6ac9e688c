//! The writes that can make a cached verification stale: revoking, rolling, editing and creating keys,
//! changing or removing members, disabling users. The store does the rows; each write here runs
//! them in a `KeyTx` and names what changed, so the event and the cache drop go together.

use super::{Invalidation, Verifier};
use crate::domain::ids::{KeyId, UserId, WorkspaceId};
use crate::domain::permissions::Role;
use crate::domain::time::Timestamp;
use crate::store::{
    Actor, ApiKeyRecord, ClientInfo, Editor, KeyChanges, Leak, MemberActor, MemberChange,
    NewApiKey, RollOutcome, UpdateOutcome, UserDeletion, UserRow,
};

impl Verifier {
    pub async fn create_api_key(
        &self,
        new: &NewApiKey<'_>,
        client: &ClientInfo,
    ) -> Result<ApiKeyRecord, sqlx::Error> {
        let mut tx = self.begin().await?;
        let record = self
            .store
            .api_keys()
            .create_in(&mut tx, new, client)
            .await?;
        tx.invalidate(Invalidation::KeyIssued(*new.digest)).await?;
        tx.commit().await?;
        record.ok_or(sqlx::Error::RowNotFound)
    }

    /// Idempotent: revoking a revoked key changes nothing and reports `false`.
    pub async fn revoke_api_key(
        &self,
        workspace_id: &WorkspaceId,
        key_id: &KeyId,
        actor: Actor<'_>,
        reason: &str,
        client: &ClientInfo,
    ) -> Result<Option<(ApiKeyRecord, bool)>, sqlx::Error> {
        let mut tx = self.begin().await?;
        let revoked = self
            .store
            .api_keys()
            .revoke_in(&mut tx, workspace_id, key_id, actor, reason, client)
            .await?;
        if matches!(revoked, Some((_, true))) {
            tx.invalidate(Invalidation::Key(key_id.clone())).await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }

    /// A PATCH of a key (see `ApiKeyRepo::update_in`); what the cache holds of the key is
    /// dropped here and, through the change feed, on every other instance.
    pub async fn update_api_key(
        &self,
        workspace_id: &WorkspaceId,
        key_id: &KeyId,
        changes: &KeyChanges,
        editor: &Editor<'_>,
        client: &ClientInfo,
    ) -> Result<UpdateOutcome, sqlx::Error> {
        let mut tx = self.begin().await?;
        let outcome = self
            .store
            .api_keys()
            .update_in(&mut tx, workspace_id, key_id, changes, editor, client)
            .await?;
        if let UpdateOutcome::Updated { changed, .. } = &outcome {
            if !changed.is_empty() {
                tx.invalidate(Invalidation::Key(key_id.clone())).await?;
                tx.commit().await?;
            }
        }
        Ok(outcome)
    }

    /// Replaces a key with a new one (see `ApiKeyRepo::roll_in`); the old key keeps
    /// working until `old_expires_at` (sooner if it was due to expire before).
    pub async fn roll_api_key(
        &self,
        workspace_id: &WorkspaceId,
        key_id: &KeyId,
        replacement: &NewApiKey<'_>,
        old_expires_at: Timestamp,
        roller: &Editor<'_>,
        client: &ClientInfo,
    ) -> Result<RollOutcome, sqlx::Error> {
        let mut tx = self.begin().await?;
        let outcome = self
            .store
            .api_keys()
            .roll_in(
                &mut tx,
                workspace_id,
                key_id,
                replacement,
                old_expires_at,
                roller,
                client,
            )
            .await?;
        if let RollOutcome::Rolled { .. } = outcome {
            tx.invalidate(Invalidation::Key(key_id.clone())).await?;
            tx.invalidate(Invalidation::KeyIssued(*replacement.digest))
                .await?;
            tx.commit().await?;
        }
        Ok(outcome)
    }

    /// Revokes the active keys among `leaks`; how many there were.
    pub async fn revoke_leaked_keys(
        &self,
        leaks: &[Leak],
        client: &ClientInfo,
    ) -> Result<u64, sqlx::Error> {
        if leaks.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let revoked = self
            .store
            .api_keys()
            .revoke_leaked_in(&mut tx, leaks, client)
            .await?;
        let count = revoked.len() as u64;
        for key_id in revoked {
            tx.invalidate(Invalidation::Key(key_id)).await?;
        }
        tx.commit().await?;
        Ok(count)
    }

    pub async fn change_member_role(
        &self,
        workspace_id: &WorkspaceId,
        user_id: &UserId,
        new_role: Role,
        actor: &MemberActor<'_>,
    ) -> Result<MemberChange, sqlx::Error> {
        let mut tx = self.begin().await?;
        let (change, changed) = self
            .store
            .members()
            .change_role_in(&mut tx, workspace_id, user_id, new_role, actor)
            .await?;
        if let MemberChange::Done(_) = change {
            if changed {
                tx.invalidate(member(workspace_id, user_id)).await?;
            }
            tx.commit().await?;
        }
        Ok(change)
    }

    /// Removes the membership and revokes the user's keys in that workspace, together.
    pub async fn remove_member(
        &self,
        workspace_id: &WorkspaceId,
        user_id: &UserId,
        actor: &MemberActor<'_>,
    ) -> Result<MemberChange, sqlx::Error> {
        let mut tx = self.begin().await?;
        let change = self
            .store
            .members()
            .remove_in(&mut tx, workspace_id, user_id, actor)
            .await?;
        if let MemberChange::Done(_) = change {
            tx.invalidate(member(workspace_id, user_id)).await?;
            tx.commit().await?;
        }
        Ok(change)
    }

    /// Disabling ends the user's sessions and revokes their keys in the same transaction, so no
    /// credential of a disabled user outlives the command. Returns `None` for an unknown email.
    pub async fn set_user_disabled(
        &self,
        email: &str,
        disabled: bool,
        actor: Actor<'_>,
    ) -> Result<Option<(UserRow, u64)>, sqlx::Error> {
        let mut tx = self.begin().await?;
        let outcome = self
            .store
            .users()
            .set_disabled_in(&mut tx, email, disabled, actor)
            .await?;
        if let Some((user, _)) = &outcome {
            tx.invalidate(Invalidation::User(user.id.clone())).await?;
            tx.commit().await?;
        }
        Ok(outcome)
    }
}

impl Verifier {
    /// The workspace's name is part of what a cached key answers with (`/api/v1/me`).
    pub async fn rename_workspace(
        &self,
        workspace_id: &WorkspaceId,
        name: &str,
        actor: Actor<'_>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let renamed = self
            .store
            .workspaces()
            .rename_in(&mut tx, workspace_id, name, actor)
            .await?;
        if renamed {
            tx.invalidate(Invalidation::Workspace(workspace_id.clone()))
                .await?;
            tx.commit().await?;
        }
        Ok(renamed)
    }

    /// Deletes the workspace with everything in it; its keys stop working everywhere within a
    /// second. The name it had, or `None` when there was no such workspace.
    pub async fn delete_workspace(
        &self,
        workspace_id: &WorkspaceId,
        actor: Actor<'_>,
    ) -> Result<Option<String>, sqlx::Error> {
        let mut tx = self.begin().await?;
        let deleted = self
            .store
            .workspaces()
            .delete_in(&mut tx, workspace_id, actor)
            .await?;
        if deleted.is_some() {
            tx.invalidate(Invalidation::Workspace(workspace_id.clone()))
                .await?;
            tx.commit().await?;
        }
        Ok(deleted)
    }

    /// See `UserRepo::delete_in`; the user's keys stop working everywhere within a second.
    pub async fn delete_user(
        &self,
        email: &str,
        actor: Actor<'_>,
    ) -> Result<UserDeletion, sqlx::Error> {
        let mut tx = self.begin().await?;
        let deletion = self.store.users().delete_in(&mut tx, email, actor).await?;
        if let UserDeletion::Deleted { user_id, .. } = &deletion {
            tx.invalidate(Invalidation::User(user_id.clone())).await?;
            tx.commit().await?;
        }
        Ok(deletion)
    }
}

fn member(workspace_id: &WorkspaceId, user_id: &UserId) -> Invalidation {
    Invalidation::Member {
        workspace_id: workspace_id.clone(),
        user_id: user_id.clone(),
    }
}
