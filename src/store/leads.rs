use super::sql::Sql;
use super::Store;
use crate::domain::ids::{LeadId, UserId, WorkspaceId};
use crate::domain::time::Timestamp;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeadRow {
    pub id: LeadId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub title: Option<String>,
    pub owner_id: UserId,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Validated fields of a lead; for updates, `None` leaves the stored value.
#[derive(Debug, Clone, Default)]
pub struct LeadFields {
    pub name: Option<String>,
    pub email: Option<Option<String>>,
    pub mobile: Option<Option<String>>,
    pub title: Option<Option<String>>,
}

const LEAD_COLUMNS: &str =
    "SELECT id, workspace_id, name, email, mobile, title, owner_id, created_at, updated_at FROM leads";

/// The leads a key's user works with through /api/v1.
pub struct LeadRepo<'s> {
    store: &'s Store,
}

impl Store {
    pub fn leads(&self) -> LeadRepo<'_> {
        LeadRepo { store: self }
    }
}

impl LeadRepo<'_> {
    /// One page, newest first; `owner` restricts it to one user's leads (a member's boundary).
    pub async fn list(
        &self,
        workspace_id: &WorkspaceId,
        owner: Option<&UserId>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<LeadRow>, i64), sqlx::Error> {
        fn filter<'q>(sql: &mut Sql<'q>, workspace_id: &'q WorkspaceId, owner: Option<&'q UserId>) {
            sql.push(" WHERE workspace_id = ").bind(workspace_id);
            if let Some(owner) = owner {
                sql.push(" AND owner_id = ").bind(owner);
            }
        }
        let mut page = Sql::new(LEAD_COLUMNS);
        filter(&mut page, workspace_id, owner);
        page.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .bind(limit)
            .push(" OFFSET ")
            .bind(offset);
        let mut count = Sql::new("SELECT COUNT(*) FROM leads");
        filter(&mut count, workspace_id, owner);
        let (page, page_args) = page.finish()?;
        let (count, count_args) = count.finish()?;
        let items: Vec<LeadRow> = sqlx::query_as_with(&page, page_args)
            .fetch_all(self.store.pool())
            .await?;
        let (total,): (i64,) = sqlx::query_as_with(&count, count_args)
            .fetch_one(self.store.pool())
            .await?;
        Ok((items, total))
    }

    pub async fn create(
        &self,
        workspace_id: &WorkspaceId,
        owner_id: &UserId,
        fields: LeadFields,
    ) -> Result<LeadRow, sqlx::Error> {
        let now = Timestamp::now();
        let lead = LeadRow {
            id: LeadId::generate(),
            workspace_id: workspace_id.clone(),
            name: fields.name.unwrap_or_default(),
            email: fields.email.flatten(),
            mobile: fields.mobile.flatten(),
            title: fields.title.flatten(),
            owner_id: owner_id.clone(),
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO leads (id, workspace_id, owner_id, name, email, mobile, title, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&lead.id)
        .bind(&lead.workspace_id)
        .bind(&lead.owner_id)
        .bind(&lead.name)
        .bind(&lead.email)
        .bind(&lead.mobile)
        .bind(&lead.title)
        .bind(lead.created_at)
        .bind(lead.updated_at)
        .execute(self.store.pool())
        .await?;
        Ok(lead)
    }

    pub async fn get(
        &self,
        workspace_id: &WorkspaceId,
        lead_id: &LeadId,
    ) -> Result<Option<LeadRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "{LEAD_COLUMNS} WHERE workspace_id = $1 AND id = $2"
        ))
        .bind(workspace_id)
        .bind(lead_id)
        .fetch_optional(self.store.pool())
        .await
    }

    /// Whether a lead with this id exists in any workspace. Only used to choose between 403
    /// `workspace_mismatch` and 404 after the workspace-filtered lookup found nothing; it
    /// returns no data of the other workspace.
    pub async fn exists_elsewhere(&self, lead_id: &LeadId) -> Result<bool, sqlx::Error> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM leads WHERE id = $1")
            .bind(lead_id)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(found.is_some())
    }

    pub async fn update(
        &self,
        workspace_id: &WorkspaceId,
        lead_id: &LeadId,
        fields: LeadFields,
    ) -> Result<Option<LeadRow>, sqlx::Error> {
        // Only the fields sent are written; each bind sits next to its column.
        let mut sql = Sql::new("UPDATE leads SET updated_at = ");
        sql.bind(Timestamp::now());
        if let Some(name) = fields.name {
            sql.push(", name = ").bind(name);
        }
        if let Some(email) = fields.email {
            sql.push(", email = ").bind(email);
        }
        if let Some(mobile) = fields.mobile {
            sql.push(", mobile = ").bind(mobile);
        }
        if let Some(title) = fields.title {
            sql.push(", title = ").bind(title);
        }
        sql.push(" WHERE workspace_id = ")
            .bind(workspace_id)
            .push(" AND id = ")
            .bind(lead_id)
            .push(
                " RETURNING id, workspace_id, name, email, mobile, title, owner_id, created_at, \
                 updated_at",
            );
        let (sql, args) = sql.finish()?;
        sqlx::query_as_with(&sql, args)
            .fetch_optional(self.store.pool())
            .await
    }

    pub async fn delete(
        &self,
        workspace_id: &WorkspaceId,
        lead_id: &LeadId,
    ) -> Result<bool, sqlx::Error> {
        let result = sqlx::query("DELETE FROM leads WHERE workspace_id = $1 AND id = $2")
            .bind(workspace_id)
            .bind(lead_id)
            .execute(self.store.pool())
            .await?;
        Ok(result.rows_affected() > 0)
    }
}
