//! Teams (docs/security.md#roles, #one-org-per-user, #invitations): members and their roles, ownership, invitations, plans. Every
//! function takes the tenant (`OrgId`) it acts in, and the role checks are repeated inside
//! the write's transaction against the roles as they are then. Each change appends its audit
//! entry in the same transaction.

use futures::FutureExt;
use mailroom_core::api_keys::Revocation;
use mailroom_core::audit::AuditEvent;
use mailroom_core::org::{self, OrgRole, PlanId, Refusal};
use mailroom_core::{InvitationId, OrgId, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::accounts::{PERSONAL_ORG_NAME, PlatformRole, from_ms, ms};
use crate::queue::PreparedJob;
use crate::tx::{Inner, Tenancy};
use crate::{Database, StorageError, Tx, on_backend};

#[derive(Clone, Debug)]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub role: OrgRole,
    pub joined_at: OffsetDateTime,
    pub mfa_enabled: bool,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Plan {
    #[sqlx(try_from = "String")]
    pub id: PlanId,
    pub name: String,
    pub team: bool,
    pub member_limit: i32,
    pub verifications_per_month: i64,
    pub emails_per_month: i64,
    pub key_requests_per_minute: i32,
    pub key_requests_per_day: i32,
    /// Bulk jobs the organization may have queued or running at once.
    pub max_open_jobs: i32,
    /// Requests each member may make of the `/v1` API with a session or an access token.
    pub user_requests_per_minute: i32,
    pub user_requests_per_day: i32,
}

impl Plan {
    /// The plan's monthly quota of `metric`.
    pub fn quota_of(&self, metric: mailroom_core::usage::Metric) -> i64 {
        match metric {
            mailroom_core::usage::Metric::Verifications => self.verifications_per_month,
            mailroom_core::usage::Metric::Emails => self.emails_per_month,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Invitation {
    pub id: InvitationId,
    pub email: String,
    pub role: OrgRole,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

pub struct NewInvitation {
    pub id: InvitationId,
    /// Normalized.
    pub email: String,
    pub role: OrgRole,
    pub token_hash: Vec<u8>,
    pub invited_by: UserId,
    pub expires_at: OffsetDateTime,
}

/// What an organization may let its members do, besides its owners and admins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberPower {
    CreateKeys,
    ConnectAccounts,
}

impl MemberPower {
    fn column(self) -> &'static str {
        match self {
            MemberPower::CreateKeys => "members_create_keys",
            MemberPower::ConnectAccounts => "members_connect_accounts",
        }
    }
}

/// What became of a change to the team.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Done,
    /// No such member (or invitation) in this organization: another tenant's is the same.
    NotFound,
    Refused(Refusal),
}

impl Change {
    pub(crate) fn done_if(found: bool) -> Self {
        if found { Self::Done } else { Self::NotFound }
    }
}

/// What became of accepting an invitation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acceptance {
    Joined {
        org_id: OrgId,
        role: OrgRole,
    },
    /// Unknown, expired, revoked or already used.
    Invalid,
    /// The invitation was sent to another address.
    OtherAddress,
    TeamPlanRequired,
    MemberLimitReached,
    AlreadyMember,
    /// Joining means leaving (and deleting) the caller's personal organization: they must
    /// say so.
    LeaveCurrentOrgRequired,
    /// The caller's organization has other members, or is not a personal one.
    InAnotherTeam,
}

#[derive(Clone, Debug)]
pub struct OrgSummary {
    pub id: OrgId,
    pub name: String,
    pub personal: bool,
    pub plan_id: PlanId,
    pub members: i64,
    pub created_at: OffsetDateTime,
}

#[derive(Clone, Debug)]
pub struct UserSummary {
    pub id: UserId,
    pub email: String,
    pub platform_role: PlatformRole,
    pub org_id: OrgId,
    pub org_role: OrgRole,
    pub disabled: bool,
    /// The address's last lock's end, past or not: see [`UserSummary::locked_until`].
    last_lock_until: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

impl UserSummary {
    /// Until when sign-ins to the user's address are locked, if they are now.
    pub fn locked_until(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.last_lock_until.filter(|until| *until > now)
    }
}

/// A stored role; anything unexpected reads as the least privileged one.
pub(crate) fn role_of(stored: &str) -> OrgRole {
    OrgRole::parse(stored).unwrap_or(OrgRole::Member)
}

/// Organizations, members, invitations and plans. Reached through [`Database::teams`].
#[derive(Clone, Copy)]
pub struct Teams<'a> {
    pub(crate) db: &'a Database,
}

impl Teams<'_> {
    pub async fn members(&self, org_id: OrgId) -> Result<Vec<Member>, StorageError> {
        let rows: Vec<(Uuid, String, String, i64, bool)> = self.db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT u.id, u.email, m.role, m.created_at, u.has_second_factor \
                             FROM org_members m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 \
                             ORDER BY m.created_at, u.email",
                        )
                        .bind(org_id.as_uuid())
                        .fetch_all(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, email, role, joined_at, mfa_enabled)| Member {
                user_id: UserId::from_uuid(id),
                email,
                role: role_of(&role),
                joined_at: from_ms(joined_at),
                mfa_enabled,
            })
            .collect())
    }

    /// Gives `target` the role `new`, if `actor` may.
    pub async fn change_member_role(
        &self,
        org_id: OrgId,
        actor: UserId,
        target: UserId,
        new: OrgRole,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<Change, StorageError> {
        self.audited_change(event, now, move |tx| {
            async move {
                let Some((actor_role, current)) = roles_in(tx, org_id, actor, target).await? else {
                    return Ok(Change::NotFound);
                };
                if let Err(refusal) = org::may_change_role(actor_role, current, new) {
                    return Ok(Change::Refused(refusal));
                }
                set_role(tx, org_id, target, new).await?;
                Ok(Change::Done)
            }
            .boxed()
        })
        .await
    }

    /// Removes `target` from the organization (or lets a member leave): they get a personal
    /// organization of their own again, as every user has one (docs/security.md#one-org-per-user), and the keys they
    /// made in this one stop working, in the same transaction.
    pub async fn remove_member(
        &self,
        org_id: OrgId,
        actor: UserId,
        target: UserId,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<Change, StorageError> {
        let audit_key = self.db.audit_key()?;
        let template = event.clone();
        self.audited_change(event, now, move |tx| {
            let (audit_key, template) = (audit_key.clone(), template.clone());
            async move {
                let Some((actor_role, current)) = roles_in(tx, org_id, actor, target).await? else {
                    return Ok(Change::NotFound);
                };
                if let Err(refusal) = org::may_remove(actor_role, current, actor == target) {
                    return Ok(Change::Refused(refusal));
                }
                let personal = OrgId::generate();
                // The membership ends here, as this organization; the personal one begins as
                // itself; the keys are revoked as this one again.
                on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query("DELETE FROM org_members WHERE org_id = $1 AND user_id = $2")
                        .bind(org_id.as_uuid())
                        .bind(target.as_uuid())
                        .execute(&mut **tx)
                        .await?;
                });
                tx.act_for(&Tenancy::Org(personal)).await?;
                on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query("INSERT INTO orgs (id, name, personal, created_at) VALUES ($1, $2, TRUE, $3)")
                        .bind(personal.as_uuid())
                        .bind(PERSONAL_ORG_NAME)
                        .bind(ms(now))
                        .execute(&mut **tx)
                        .await?;
                    sqlx::query(
                        "INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)",
                    )
                    .bind(personal.as_uuid())
                    .bind(target.as_uuid())
                    .bind(ms(now))
                    .execute(&mut **tx)
                    .await?;
                });
                tx.act_for(&Tenancy::Org(org_id)).await?;
                let reason = if actor == target {
                    Revocation::CreatorLeft
                } else {
                    Revocation::CreatorRemoved
                };
                crate::api_keys::revoke_keys_of_creator(
                    tx, &audit_key, org_id, target, reason, &template, now,
                )
                .await?;
                Ok(Change::Done)
            }
            .boxed()
        })
        .await
    }

    /// Makes `to` the owner; the owner `from` becomes an admin.
    pub async fn transfer_ownership(
        &self,
        org_id: OrgId,
        from: UserId,
        to: UserId,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<Change, StorageError> {
        self.audited_change(event, now, move |tx| {
            async move {
                let Some((from_role, _)) = roles_in(tx, org_id, from, to).await? else {
                    return Ok(Change::NotFound);
                };
                if from_role != OrgRole::Owner {
                    return Ok(Change::Refused(Refusal::OwnerOnly));
                }
                if from == to {
                    return Ok(Change::Done);
                }
                set_role(tx, org_id, from, OrgRole::Admin).await?;
                set_role(tx, org_id, to, OrgRole::Owner).await?;
                Ok(Change::Done)
            }
            .boxed()
        })
        .await
    }

    pub async fn create_invitation(
        &self,
        org_id: OrgId,
        invitation: &NewInvitation,
        mail: Option<&PreparedJob>,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let (id, email, role, token_hash, invited_by, expires_at) = (
            invitation.id,
            invitation.email.clone(),
            invitation.role,
            invitation.token_hash.clone(),
            invitation.invited_by,
            invitation.expires_at,
        );
        let mail = mail.cloned();
        self.audited_change(event, now, move |tx| {
            let (email, token_hash, mail) = (email.clone(), token_hash.clone(), mail.clone());
            async move {
                on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query(
                        "INSERT INTO invitations (id, org_id, email, role, token_hash, invited_by, created_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(id.as_uuid())
                    .bind(org_id.as_uuid())
                    .bind(&email)
                    .bind(role.as_str())
                    .bind(&token_hash)
                    .bind(invited_by.as_uuid())
                    .bind(ms(now))
                    .bind(ms(expires_at))
                    .execute(&mut **tx)
                    .await?;
                });
                // Queued with the invitation, or not at all (the outbox pattern).
                if let Some(mail) = &mail {
                    crate::queue::enqueue_in(tx, mail).await?;
                }
                Ok(Change::Done)
            }
            .boxed()
        })
        .await
        .map(drop)
    }

    /// The organization's invitations that can still be accepted.
    pub async fn invitations(
        &self,
        org_id: OrgId,
        now: OffsetDateTime,
    ) -> Result<Vec<Invitation>, StorageError> {
        let rows: Vec<(Uuid, String, String, i64, i64)> = self.db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT id, email, role, created_at, expires_at FROM invitations \
                             WHERE org_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
                             ORDER BY created_at DESC",
                        )
                        .bind(org_id.as_uuid())
                        .bind(ms(now))
                        .fetch_all(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, email, role, created_at, expires_at)| Invitation {
                id: InvitationId::from_uuid(id),
                email,
                role: role_of(&role),
                created_at: from_ms(created_at),
                expires_at: from_ms(expires_at),
            })
            .collect())
    }

    /// Revokes a pending invitation of this organization's.
    pub async fn revoke_invitation(
        &self,
        org_id: OrgId,
        id: InvitationId,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<Change, StorageError> {
        self.audited_change(event, now, move |tx| {
            async move {
                let revoked = on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query(
                        "UPDATE invitations SET revoked_at = $1 WHERE id = $2 AND org_id = $3 \
                         AND accepted_at IS NULL AND revoked_at IS NULL",
                    )
                    .bind(ms(now))
                    .bind(id.as_uuid())
                    .bind(org_id.as_uuid())
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
                });
                Ok(Change::done_if(revoked == 1))
            }
            .boxed()
        })
        .await
    }

    /// Accepts an invitation for `user` (whose address is `email`). `event` is completed with
    /// the organization joined and appended when they join.
    pub async fn accept_invitation(
        &self,
        token_hash: &[u8],
        user: UserId,
        email: &str,
        leave_current_org: bool,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<Acceptance, StorageError> {
        let key = self.db.audit_key()?;
        let (token_hash, email) = (token_hash.to_vec(), email.to_lowercase());
        self.db
            .serializable(|tx| {
                let (key, token_hash, email, mut event) = (
                    key.clone(),
                    token_hash.clone(),
                    email.clone(),
                    event.clone(),
                );
                async move {
                    tx.act_for(&Tenancy::InvitationToken(hex::encode(&token_hash)))
                        .await?;
                    let acceptance =
                        accept(tx, &token_hash, user, &email, leave_current_org, now).await?;
                    if let Acceptance::Joined { org_id, .. } = acceptance {
                        event.org_id = Some(org_id);
                        crate::audit::append(tx, &key, &event, now).await?;
                    }
                    Ok(acceptance)
                }
                .boxed()
            })
            .await
    }

    pub async fn org_name(&self, org_id: OrgId) -> Result<String, StorageError> {
        self.db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_scalar("SELECT name FROM orgs WHERE id = $1")
                            .bind(org_id.as_uuid())
                            .fetch_one(&mut **tx)
                            .await?
                    }))
                }
                .boxed()
            })
            .await
    }

    pub async fn plan_of(&self, org_id: OrgId) -> Result<Plan, StorageError> {
        self.db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                Ok(on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query_as(
                        "SELECT p.* FROM plans p JOIN orgs o ON o.plan_id = p.id WHERE o.id = $1",
                    )
                    .bind(org_id.as_uuid())
                    .fetch_one(&mut **tx)
                    .await?
                }))
            }
            .boxed()
            })
            .await
    }

    /// Whether the organization lets its members (not only owners and admins) do `what`.
    pub async fn members_may(
        &self,
        org_id: OrgId,
        what: MemberPower,
    ) -> Result<bool, StorageError> {
        // The column names come from the enum, never from input.
        let sql = format!("SELECT {} FROM orgs WHERE id = $1", what.column());
        self.db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_scalar(&sql)
                            .bind(org_id.as_uuid())
                            .fetch_one(&mut **tx)
                            .await?
                    }))
                }
                .boxed()
            })
            .await
    }

    /// Every plan there is, by id, as the platform administrator `admin` sees them.
    pub async fn plans(&self, admin: UserId) -> Result<Vec<Plan>, StorageError> {
        self.db
            .transaction_for(&Tenancy::Platform(admin), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as("SELECT * FROM plans ORDER BY id")
                            .fetch_all(&mut **tx)
                            .await?
                    }))
                }
                .boxed()
            })
            .await
    }

    /// Every organization, as the platform administrator `admin` sees them.
    pub async fn all_orgs(&self, admin: UserId) -> Result<Vec<OrgSummary>, StorageError> {
        let rows: Vec<(Uuid, String, bool, String, i64, i64)> = self.db
            .transaction_for(&Tenancy::Platform(admin), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT o.id, o.name, o.personal, o.plan_id, \
                             (SELECT COUNT(*) FROM org_members m WHERE m.org_id = o.id), o.created_at \
                             FROM orgs o ORDER BY o.created_at",
                        )
                        .fetch_all(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        rows.into_iter()
            .map(|(id, name, personal, plan_id, members, created_at)| {
                Ok(OrgSummary {
                    id: OrgId::from_uuid(id),
                    name,
                    personal,
                    plan_id: PlanId::from(plan_id),
                    members,
                    created_at: from_ms(created_at),
                })
            })
            .collect()
    }

    /// Puts an organization on a plan; false when either does not exist.
    pub async fn set_org_plan(
        &self,
        org_id: OrgId,
        plan_id: &PlanId,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let plan_id = plan_id.clone();
        self.audited_change(event, now, move |tx| {
            let plan_id = plan_id.clone();
            async move {
                let updated = on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query(
                        "UPDATE orgs SET plan_id = $1 WHERE id = $2 AND EXISTS (SELECT 1 FROM plans WHERE id = $1)",
                    )
                    .bind(plan_id.as_str())
                    .bind(org_id.as_uuid())
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
                });
                Ok(Change::done_if(updated == 1))
            }
            .boxed()
        })
        .await
        .map(|change| change == Change::Done)
    }

    /// Every user, as the platform administrator `admin` sees them.
    pub async fn all_users(&self, admin: UserId) -> Result<Vec<UserSummary>, StorageError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: Uuid,
            email: String,
            platform_role: String,
            org_id: Uuid,
            role: String,
            disabled_at: Option<i64>,
            locked_until: Option<i64>,
            created_at: i64,
        }
        let rows: Vec<Row> = self.db
            .transaction_for(&Tenancy::Platform(admin), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT u.id, u.email, u.platform_role, m.org_id, m.role, u.disabled_at, \
                             f.locked_until, u.created_at FROM users u \
                             JOIN org_members m ON m.user_id = u.id \
                             LEFT JOIN login_failures f ON f.email = u.email ORDER BY u.created_at",
                        )
                        .fetch_all(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| UserSummary {
                id: UserId::from_uuid(row.id),
                email: row.email,
                platform_role: PlatformRole::stored(&row.platform_role),
                org_id: OrgId::from_uuid(row.org_id),
                org_role: role_of(&row.role),
                disabled: row.disabled_at.is_some(),
                last_lock_until: row.locked_until.map(from_ms),
                created_at: from_ms(row.created_at),
            })
            .collect())
    }

    /// Disables (ending every session and token family, and revoking the keys they made in
    /// their organization) or re-enables a user; false when there is no such user.
    pub async fn set_user_disabled(
        &self,
        user_id: UserId,
        disabled: bool,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let audit_key = self.db.audit_key()?;
        let template = event.clone();
        self.audited_change(event, now, move |tx| {
            let (audit_key, template) = (audit_key.clone(), template.clone());
            async move {
                // A change to the user's own row (the entry goes to their organization's chain).
                tx.act_for(&Tenancy::User(user_id)).await?;
                let updated = on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
                        .bind(disabled.then(|| ms(now)))
                        .bind(user_id.as_uuid())
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                });
                if updated != 1 {
                    return Ok(Change::NotFound);
                }
                if disabled {
                    crate::accounts::end_every_session(tx, user_id, now).await?;
                    let org_id: Uuid = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_scalar("SELECT org_id FROM org_members WHERE user_id = $1")
                            .bind(user_id.as_uuid())
                            .fetch_one(&mut **tx)
                            .await?
                    });
                    // Their keys in the organization they are in now, as it.
                    tx.act_for(&Tenancy::Org(OrgId::from_uuid(org_id))).await?;
                    crate::api_keys::revoke_keys_of_creator(
                        tx,
                        &audit_key,
                        OrgId::from_uuid(org_id),
                        user_id,
                        Revocation::CreatorDisabled,
                        &template,
                        now,
                    )
                    .await?;
                }
                Ok(Change::Done)
            }
            .boxed()
        })
        .await
        .map(|change| change == Change::Done)
    }

    /// Runs a change and, when it is done, appends its audit entry in the same transaction.
    pub(crate) async fn audited_change<F>(
        &self,
        event: &AuditEvent,
        now: OffsetDateTime,
        change: F,
    ) -> Result<Change, StorageError>
    where
        F: for<'t> Fn(&'t mut Tx) -> futures::future::BoxFuture<'t, Result<Change, StorageError>>
            + Clone
            + Send
            + 'static,
    {
        let key = self.db.audit_key()?;
        self.db
            .serializable(|tx| {
                let (key, event, change) = (key.clone(), event.clone(), change.clone());
                async move {
                    // The change acts for the organization its entry is recorded in.
                    if let Some(org) = event.org_id {
                        tx.act_for(&Tenancy::Org(org)).await?;
                    }
                    let outcome = change(tx).await?;
                    if outcome == Change::Done {
                        crate::audit::append(tx, &key, &event, now).await?;
                    }
                    Ok(outcome)
                }
                .boxed()
            })
            .await
    }
}

/// The roles of two users in the organization, as the transaction sees them; `None` unless
/// both are its members (another organization's member is as missing as nobody).
async fn roles_in(
    tx: &mut Tx,
    org_id: OrgId,
    first: UserId,
    second: UserId,
) -> Result<Option<(OrgRole, OrgRole)>, StorageError> {
    Ok(role_in(tx, org_id, first)
        .await?
        .zip(role_in(tx, org_id, second).await?))
}

async fn role_in(
    tx: &mut Tx,
    org_id: OrgId,
    user: UserId,
) -> Result<Option<OrgRole>, StorageError> {
    let role: Option<String> = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query_scalar("SELECT role FROM org_members WHERE org_id = $1 AND user_id = $2")
            .bind(org_id.as_uuid())
            .bind(user.as_uuid())
            .fetch_optional(&mut **tx)
            .await?
    });
    Ok(role.as_deref().map(role_of))
}

async fn set_role(
    tx: &mut Tx,
    org_id: OrgId,
    user: UserId,
    role: OrgRole,
) -> Result<(), StorageError> {
    on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query("UPDATE org_members SET role = $1 WHERE org_id = $2 AND user_id = $3")
            .bind(role.as_str())
            .bind(org_id.as_uuid())
            .bind(user.as_uuid())
            .execute(&mut **tx)
            .await?;
    });
    Ok(())
}

async fn accept(
    tx: &mut Tx,
    token_hash: &[u8],
    user: UserId,
    email: &str,
    leave_current_org: bool,
    now: OffsetDateTime,
) -> Result<Acceptance, StorageError> {
    type InvitationRow = (Uuid, Uuid, String, String);
    let invitation: Option<InvitationRow> = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query_as(
            "SELECT id, org_id, email, role FROM invitations WHERE token_hash = $1 \
             AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(ms(now))
        .fetch_optional(&mut **tx)
        .await?
    });
    let Some((id, org, invited, role)) = invitation else {
        return Ok(Acceptance::Invalid);
    };
    if invited != email {
        return Ok(Acceptance::OtherAddress);
    }
    let (org_id, role) = (OrgId::from_uuid(org), role_of(&role));
    // The inviting organization's plan and members, read as that organization.
    tx.act_for(&Tenancy::Org(org_id)).await?;
    let (team, member_limit, members): (bool, i32, i64) = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query_as(
            "SELECT p.team, p.member_limit, (SELECT COUNT(*) FROM org_members m WHERE m.org_id = o.id) \
             FROM orgs o JOIN plans p ON p.id = o.plan_id WHERE o.id = $1",
        )
        .bind(org)
        .fetch_one(&mut **tx)
        .await?
    });
    if !team {
        return Ok(Acceptance::TeamPlanRequired);
    }
    // The accepting user's organization now, found through their own membership and read as
    // that organization.
    tx.act_for(&Tenancy::User(user)).await?;
    let current: Uuid = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query_scalar("SELECT org_id FROM org_members WHERE user_id = $1")
            .bind(user.as_uuid())
            .fetch_one(&mut **tx)
            .await?
    });
    tx.act_for(&Tenancy::Org(OrgId::from_uuid(current))).await?;
    let (personal, others): (bool, i64) = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query_as(
            "SELECT o.personal, \
             (SELECT COUNT(*) FROM org_members x WHERE x.org_id = o.id AND x.user_id <> $1) \
             FROM orgs o WHERE o.id = $2",
        )
        .bind(user.as_uuid())
        .bind(current)
        .fetch_one(&mut **tx)
        .await?
    });
    if current == org {
        return Ok(Acceptance::AlreadyMember);
    }
    if !personal || others > 0 {
        return Ok(Acceptance::InAnotherTeam);
    }
    if !leave_current_org {
        return Ok(Acceptance::LeaveCurrentOrgRequired);
    }
    if members >= i64::from(member_limit) {
        return Ok(Acceptance::MemberLimitReached);
    }
    // The personal organization goes, as itself (the transaction acts for it since above),
    // with its data and its data keys (one organization per user stays a constraint,
    // not a habit).
    tx.act_for(&Tenancy::KeyScope(current)).await?;
    on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query("DELETE FROM data_keys WHERE scope = $1")
            .bind(current)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM orgs WHERE id = $1")
            .bind(current)
            .execute(&mut **tx)
            .await?;
    });
    // The membership begins as the organization it is in.
    tx.act_for(&Tenancy::Org(org_id)).await?;
    on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query("INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
            .bind(org)
            .bind(user.as_uuid())
            .bind(role.as_str())
            .bind(ms(now))
            .execute(&mut **tx)
            .await?;
        sqlx::query("UPDATE invitations SET accepted_at = $1 WHERE id = $2")
            .bind(ms(now))
            .bind(id)
            .execute(&mut **tx)
            .await?;
    });
    Ok(Acceptance::Joined { org_id, role })
}
