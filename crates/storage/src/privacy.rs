//! Account deletion (docs/security.md#account-deletion): everything of a user's goes in one transaction, and the
//! deletion is recorded in the same one.

use futures::FutureExt;
use mailroom_core::audit::AuditEvent;
use mailroom_core::{OrgId, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::tx::{Inner, Tenancy};
use crate::{Database, StorageError, on_backend};

/// What became of a deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// The user is gone; so is their organization when they were its only member.
    Deleted { org_deleted: bool },
    /// They own an organization with other members: ownership must move first.
    OwnershipTransferRequired,
}

/// Erasing an account and what is kept about a person. Reached through [`Database::privacy`].
#[derive(Clone, Copy)]
pub struct Privacy<'a> {
    pub(crate) db: &'a Database,
}

impl Privacy<'_> {
    /// Deletes the user and every row that is theirs: sessions, refresh tokens, second
    /// factors, trusted and sign-in devices (by cascade), pending codes, sign-ups and failed
    /// sign-ins for their address, the personal fields of every audit entry by or about them, and their
    /// organization with its data keys when nobody else is in it. `event` (which must hold
    /// nothing personal) is appended in the same transaction.
    pub async fn delete_account(
        &self,
        user_id: UserId,
        email: &str,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<Deletion, StorageError> {
        let key = self.db.audit_key()?;
        let email = email.to_lowercase();
        self.db.serializable_for(&Tenancy::User(user_id), |tx| {
            let (key, email, mut event) = (key.clone(), email.clone(), event.clone());
            async move {
                // As the user, and as their organization (whose other members are counted).
                let org: Uuid = on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query_scalar("SELECT org_id FROM org_members WHERE user_id = $1")
                        .bind(user_id.as_uuid())
                        .fetch_one(&mut **tx)
                        .await?
                });
                tx.act_for(&Tenancy::Org(OrgId::from_uuid(org))).await?;
                let (org_id, role, others): (Uuid, String, i64) = on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query_as(
                        "SELECT m.org_id, m.role, \
                         (SELECT COUNT(*) FROM org_members x WHERE x.org_id = m.org_id AND x.user_id <> m.user_id) \
                         FROM org_members m WHERE m.user_id = $1",
                    )
                    .bind(user_id.as_uuid())
                    .fetch_one(&mut **tx)
                    .await?
                });
                if role == "owner" && others > 0 {
                    return Ok(Deletion::OwnershipTransferRequired);
                }
                crate::audit::erase_personal_fields(tx, &key, user_id, &email, now).await?;
                tx.act_for(&Tenancy::ErasedEmail(email.clone())).await?;
                tx.act_for(&Tenancy::Email(email.clone())).await?;
                on_backend!(&mut tx.0, Inner, tx => {
                    for sql in [
                        "DELETE FROM email_codes WHERE email = $1",
                        "DELETE FROM pending_signups WHERE email = $1",
                        "DELETE FROM invitations WHERE email = $1",
                        "DELETE FROM login_failures WHERE email = $1",
                    ] {
                        sqlx::query(sql).bind(&email).execute(&mut **tx).await?;
                    }
                    sqlx::query("DELETE FROM users WHERE id = $1")
                        .bind(user_id.as_uuid())
                        .execute(&mut **tx)
                        .await?;
                });
                // The organization's chain records the deletion (and outlives the
                // organization until the retention purge).
                event.org_id = Some(OrgId::from_uuid(org_id));
                let org_deleted = others == 0;
                if org_deleted {
                    // Its data keys go with it: whatever was sealed under them is unreadable
                    // from now on (but for backups, which hold the wrapped keys too, until
                    // they expire). Deleted as that organization.
                    tx.act_for(&Tenancy::Org(OrgId::from_uuid(org_id))).await?;
                    tx.act_for(&Tenancy::KeyScope(org_id)).await?;
                    on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query("DELETE FROM data_keys WHERE scope = $1")
                            .bind(org_id)
                            .execute(&mut **tx)
                            .await?;
                        sqlx::query("DELETE FROM orgs WHERE id = $1")
                            .bind(org_id)
                            .execute(&mut **tx)
                            .await?;
                    });
                }
                crate::audit::append(tx, &key, &event, now).await?;
                Ok(Deletion::Deleted { org_deleted })
            }
            .boxed()
        })
        .await
    }
}
