//! Users, their organizations, pending sign-ups, emailed codes and browser sessions.

use futures::FutureExt;
use mailroom_core::accounts::{
    CODE_ATTEMPTS, CODE_ISSUE_WINDOW, CODES_PER_HOUR, CodePurpose, SecondFactorDuty,
};
use mailroom_core::audit::{Action, AuditEvent};
use mailroom_core::org::OrgRole;
use mailroom_core::password_policy::CompositionRules;
use mailroom_core::{EmailAddress, OrgId, SessionId, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::queue::PreparedJob;
use crate::tx::{Inner, Tenancy};
use crate::{Database, Pool, StorageError, on_backend};

/// A user with their organization membership.
#[derive(Clone, Debug)]
pub struct User {
    pub id: UserId,
    pub email: String,
    /// `None` for an account made by a provider's sign-in, until a password is set.
    pub password_hash: Option<String>,
    /// From the provider that signed them in, when one did.
    pub display_name: Option<String>,
    pub picture_url: Option<String>,
    pub platform_role: PlatformRole,
    pub org_id: OrgId,
    pub org_role: OrgRole,
    pub created_at: OffsetDateTime,
    /// Their organization's password composition rules.
    pub password_rules: CompositionRules,
    /// A confirmed TOTP secret exists.
    pub mfa_enabled: bool,
    /// What the mandatory second factor decides by: whether their organization has other members, and whether it
    /// requires a second factor of everyone.
    pub org_has_other_members: bool,
    pub org_requires_mfa: bool,
    /// A super-admin disabled the account: it cannot sign in, and nothing it holds works.
    pub disabled: bool,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    password_hash: String,
    display_name: Option<String>,
    picture_url: Option<String>,
    platform_role: String,
    created_at: i64,
    org_id: Uuid,
    org_role: String,
    password_rules: i32,
    mfa_enabled: bool,
    org_has_other_members: bool,
    org_requires_mfa: bool,
    disabled: bool,
}

impl User {
    /// Whether this user must have a second factor (docs/security.md#mfa-required).
    pub fn second_factor_required(&self) -> bool {
        SecondFactorDuty {
            super_admin: self.platform_role == PlatformRole::SuperAdmin,
            org_manager: self.org_role.manages(),
            org_has_other_members: self.org_has_other_members,
            org_requires_it: self.org_requires_mfa,
        }
        .required()
    }
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: UserId::from_uuid(row.id),
            email: row.email,
            password_hash: Some(row.password_hash).filter(|hash| hash != NO_PASSWORD),
            display_name: row.display_name,
            picture_url: row.picture_url,
            platform_role: PlatformRole::stored(&row.platform_role),
            org_id: OrgId::from_uuid(row.org_id),
            org_role: crate::teams::role_of(&row.org_role),
            created_at: from_ms(row.created_at),
            password_rules: CompositionRules::from_bits(
                u8::try_from(row.password_rules).unwrap_or(0),
            ),
            mfa_enabled: row.mfa_enabled,
            org_has_other_members: row.org_has_other_members,
            org_requires_mfa: row.org_requires_mfa,
            disabled: row.disabled,
        }
    }
}

/// The stored `password_hash` of an account without a password (migration 0041).
pub(crate) const NO_PASSWORD: &str = "";

const USER_FIELDS: &str = "u.id, u.email, u.password_hash, u.display_name, u.picture_url, u.platform_role, \
     u.created_at, m.org_id, m.role AS org_role, \
     (SELECT o.password_rules FROM orgs o WHERE o.id = m.org_id) AS password_rules, \
     u.has_second_factor AS mfa_enabled, \
     EXISTS (SELECT 1 FROM org_members x WHERE x.org_id = m.org_id AND x.user_id <> u.id) \
       AS org_has_other_members, \
     (SELECT o.require_mfa FROM orgs o WHERE o.id = m.org_id) AS org_requires_mfa, \
     u.disabled_at IS NOT NULL AS disabled";

/// A session to create: its secret's hash, never the secret.
#[derive(Clone)]
pub struct NewSession {
    pub id: SessionId,
    pub token_hash: Vec<u8>,
    pub ip: String,
    pub user_agent: Option<String>,
    pub expires_at: OffsetDateTime,
}

/// Changes to an organization's name and policies; `None` leaves one unchanged.
#[derive(Clone, Debug, Default)]
pub struct OrgPolicyChange {
    pub name: Option<String>,
    /// Browser sessions end after this long without use; `Some(None)` for never.
    pub idle_timeout_secs: Option<Option<i64>>,
    pub password_rules: Option<CompositionRules>,
    /// A second factor for every member (docs/security.md#mfa-required).
    pub require_mfa: Option<bool>,
    /// Members, not only owners and admins, may create API keys (docs/security.md#api-key-format).
    pub members_create_keys: Option<bool>,
    /// Members, not only owners and admins, may connect mail accounts.
    pub members_connect_accounts: Option<bool>,
}

/// A client IP and user agent a user has signed in from ('' when it sent none).
#[derive(Clone, Debug)]
pub struct SignInDevice {
    pub ip: String,
    pub user_agent: String,
    pub first_seen_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
}

/// Whether the session just opened came from a client IP and user agent its user had
/// never signed in from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewDevice(pub bool);

/// A live session and whose it is.
pub struct SessionOwner {
    pub session_id: SessionId,
    pub user: User,
    pub last_seen_at: OffsetDateTime,
    /// When the session was opened, i.e. when its owner last proved who they are.
    pub created_at: OffsetDateTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformRole {
    User,
    SuperAdmin,
}

impl PlatformRole {
    /// The role a stored value names. Anything but a super-admin's is a plain user's: an
    /// unreadable value grants nothing (the column's CHECK allows only these two).
    pub(crate) fn stored(value: &str) -> Self {
        if value == PlatformRole::SuperAdmin.as_str() {
            PlatformRole::SuperAdmin
        } else {
            PlatformRole::User
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PlatformRole::User => "user",
            PlatformRole::SuperAdmin => "super_admin",
        }
    }
}

/// A verified account to create, with the owner of a new personal organization.
#[derive(Clone)]
pub struct NewAccount {
    pub email: String,
    pub password_hash: String,
    pub platform_role: PlatformRole,
}

/// A session as its owner sees it in their list.
pub struct SessionInfo {
    pub id: SessionId,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
}

/// What one guess at an emailed code may do.
pub enum CodeAttempt {
    /// The guess is counted; compare it with this hash.
    Counted { code_hash: Vec<u8> },
    /// The budget of guesses is spent.
    Exhausted,
    /// No live code: never sent, used, or expired.
    Missing,
}

/// Accounts, pending sign-ups, codes, sessions, devices and passwords. Reached through [`Database::accounts`].
#[derive(Clone, Copy)]
pub struct Accounts<'a> {
    pub(crate) db: &'a Database,
}

impl Accounts<'_> {
    /// The account of an address: found by the address, then read acting for its user.
    pub async fn user_by_email(&self, email: &EmailAddress) -> Result<Option<User>, StorageError> {
        let email = email.as_str().to_owned();
        self.db
            .transaction_for(&Tenancy::Email(email.clone()), |tx| {
                async move {
                    let id: Option<Uuid> = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                            .bind(&email)
                            .fetch_optional(&mut **tx)
                            .await?
                    });
                    match id {
                        Some(id) => user_in(tx, UserId::from_uuid(id)).await,
                        None => Ok(None),
                    }
                }
                .boxed()
            })
            .await
    }

    /// Records a sign-up waiting for its code, and the code ([`issue_code`]'s rules), and
    /// appends `event` in the same transaction. A sign-up repeated while the old code lives
    /// keeps the first password. Whether a code was issued; if so, `mail` (the code's) is
    /// queued in the same transaction.
    #[allow(clippy::too_many_arguments)] // one operation's inputs, each its own
    pub async fn save_signup(
        &self,
        email: &EmailAddress,
        password_hash: &str,
        code_hash: &[u8],
        expires_at: OffsetDateTime,
        mail: Option<&PreparedJob>,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let key = self.db.audit_key()?;
        // The work may run more than once and owns what it uses (see `serializable`).
        let (email, password_hash, code_hash, mail) = (
            email.as_str().to_owned(),
            password_hash.to_owned(),
            code_hash.to_owned(),
            mail.cloned(),
        );
        self.db.serializable(|tx| {
            let (email, password_hash, code_hash, key, event, mail) = (
                email.clone(),
                password_hash.clone(),
                code_hash.clone(),
                key.clone(),
                event.clone(),
                mail.clone(),
            );
            async move {
                tx.act_for(&Tenancy::Email(email.clone())).await?;
                on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query(
                        // While the first sign-up's code is live its password stays: a second
                        // sign-up for the same address must not slip its own password under
                        // the owner's code.
                        "INSERT INTO pending_signups (email, password_hash, created_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (email) DO UPDATE SET password_hash = CASE WHEN EXISTS \
                         (SELECT 1 FROM email_codes c WHERE c.purpose = 'signup' AND c.email = excluded.email \
                          AND c.expires_at > excluded.created_at) \
                         THEN pending_signups.password_hash ELSE excluded.password_hash END",
                    )
                    .bind(&email)
                    .bind(&password_hash)
                    .bind(ms(now))
                    .execute(&mut **tx)
                    .await?;
                });
                let issued =
                    issue_code(tx, CodePurpose::Signup, &email, &code_hash, expires_at, true, now)
                        .await?;
                if issued && let Some(mail) = &mail {
                    crate::queue::enqueue_in(tx, mail).await?;
                }
                crate::audit::append(tx, &key, &event, now).await?;
                Ok(issued)
            }
            .boxed()
        })
        .await
    }

    /// Records a code for `email` (a password reset) by [`issue_code`]'s rules; whether one
    /// was issued; if so, `mail` is queued in the same transaction.
    pub async fn save_code(
        &self,
        purpose: CodePurpose,
        email: &EmailAddress,
        code_hash: &[u8],
        expires_at: OffsetDateTime,
        mail: Option<&PreparedJob>,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let code = IssuedCode {
            purpose,
            code_hash,
            expires_at,
            insert: true,
        };
        self.issue_code(email, code, mail, now).await
    }

    async fn issue_code(
        &self,
        email: &EmailAddress,
        code: IssuedCode<'_>,
        mail: Option<&PreparedJob>,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let (email, code_hash, mail) = (
            email.as_str().to_owned(),
            code.code_hash.to_owned(),
            mail.cloned(),
        );
        let IssuedCode {
            purpose,
            expires_at,
            insert,
            ..
        } = code;
        self.db
            .serializable(|tx| {
                let (email, code_hash, mail) = (email.clone(), code_hash.clone(), mail.clone());
                async move {
                    let issued =
                        issue_code(tx, purpose, &email, &code_hash, expires_at, insert, now)
                            .await?;
                    if issued && let Some(mail) = &mail {
                        crate::queue::enqueue_in(tx, mail).await?;
                    }
                    Ok(issued)
                }
                .boxed()
            })
            .await
    }

    /// Sets a new password after a verified reset: the code is spent, failures and lock are
    /// cleared, and every session of the account ends (docs/security.md#password-reset); `event`, as the account's
    /// own, is appended in the same transaction. `None` without an account.
    pub async fn reset_password(
        &self,
        email: &EmailAddress,
        code_hash: &[u8],
        password_hash: &str,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<Option<User>, StorageError> {
        let key = self.db.audit_key()?;
        let user = match self.user_by_email(email).await? {
            Some(user) => user,
            None => return Ok(None),
        };
        let event = by_account(event, user.id, user.org_id);
        let (email, code_hash, password_hash) = (
            email.as_str().to_owned(),
            code_hash.to_owned(),
            password_hash.to_owned(),
        );
        let reset = self.db.serializable_for(&Tenancy::Email(email.clone()), |tx| {
            let (email, code_hash, password_hash, key, event) =
                (email.clone(), code_hash.clone(), password_hash.clone(), key.clone(), event.clone());
            async move {
                on_backend!(&mut tx.0, Inner, tx => {
                    // Spending the code is the first write: of two resets racing with the same
                    // code, one finds it gone.
                    let spent = sqlx::query(
                        "DELETE FROM email_codes WHERE purpose = 'password_reset' AND email = $1 AND code_hash = $2",
                    )
                    .bind(&email)
                    .bind(&code_hash)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                    if spent == 0 {
                        return Ok(false);
                    }
                });
                update_password_hash(tx, user.id, &password_hash).await?;
                crate::lockout::forget(tx, &email, None).await?;
                revoke_sessions_except(tx, user.id, None, now).await?;
                revoke_token_families(tx, user.id, now).await?;
                crate::two_factor::forget_devices(tx, user.id).await?;
                crate::audit::append(tx, &key, &event, now).await?;
                Ok(true)
            }
            .boxed()
        })
        .await?;
        Ok(reset.then_some(user))
    }

    /// Changes a signed-in user's password and ends their other sessions and every token
    /// family (programs sign in again with the new password).
    pub async fn change_password(
        &self,
        user_id: UserId,
        keep: Option<SessionId>,
        password_hash: &str,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let password_hash = password_hash.to_owned();
        self.db
            .serializable(|tx| {
                let password_hash = password_hash.clone();
                async move {
                    update_password_hash(tx, user_id, &password_hash).await?;
                    revoke_sessions_except(tx, user_id, keep, now).await?;
                    revoke_token_families(tx, user_id, now).await?;
                    crate::two_factor::forget_devices(tx, user_id).await?;
                    Ok(())
                }
                .boxed()
            })
            .await
    }

    /// Whether the user ever had a session from this address with this browser.
    /// Where the user has signed in from, newest first (docs/security.md#account-export).
    pub async fn sign_in_devices(
        &self,
        user_id: UserId,
    ) -> Result<Vec<SignInDevice>, StorageError> {
        let rows: Vec<(String, String, i64, i64)> = self.db
            .transaction_for(&Tenancy::User(user_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT ip, user_agent, first_seen_at, last_seen_at FROM sign_in_devices \
                             WHERE user_id = $1 ORDER BY last_seen_at DESC",
                        )
                        .bind(user_id.as_uuid())
                        .fetch_all(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(ip, user_agent, first_seen_at, last_seen_at)| SignInDevice {
                    ip,
                    user_agent,
                    first_seen_at: from_ms(first_seen_at),
                    last_seen_at: from_ms(last_seen_at),
                },
            )
            .collect())
    }

    /// Changes an organization's policies in one statement; `None` leaves one as it is.
    pub async fn update_org_policies(
        &self,
        org_id: OrgId,
        change: &OrgPolicyChange,
    ) -> Result<(), StorageError> {
        let change = change.clone();
        self.db.transaction_for(&Tenancy::Org(org_id), |tx| {
            async move {
                on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query(
                        "UPDATE orgs SET \
                         session_idle_timeout_secs = CASE WHEN $1 THEN $2 ELSE session_idle_timeout_secs END, \
                         password_rules = COALESCE($3, password_rules), \
                         require_mfa = COALESCE($4, require_mfa), \
                         name = COALESCE($6, name), \
                         members_create_keys = COALESCE($7, members_create_keys), \
                         members_connect_accounts = COALESCE($8, members_connect_accounts) \
                         WHERE id = $5",
                    )
                    .bind(change.idle_timeout_secs.is_some())
                    .bind(change.idle_timeout_secs.flatten())
                    .bind(change.password_rules.map(|rules| i32::from(rules.bits())))
                    .bind(change.require_mfa)
                    .bind(org_id.as_uuid())
                    .bind(change.name.as_deref())
                    .bind(change.members_create_keys)
                    .bind(change.members_connect_accounts)
                    .execute(&mut **tx)
                    .await?;
                });
                Ok(())
            }
            .boxed()
        })
        .await
    }

    /// A user's live sessions, newest first.
    pub async fn sessions_of(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionInfo>, StorageError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: Uuid,
            ip: Option<String>,
            user_agent: Option<String>,
            created_at: i64,
            last_seen_at: i64,
        }
        let rows: Vec<Row> = self
            .db
            .transaction_for(&Tenancy::User(user_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT id, ip, user_agent, created_at, last_seen_at FROM sessions \
                             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
                             ORDER BY created_at DESC",
                        )
                        .bind(user_id.as_uuid())
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
            .map(|row| SessionInfo {
                id: SessionId::from_uuid(row.id),
                ip: row.ip,
                user_agent: row.user_agent,
                created_at: from_ms(row.created_at),
                last_seen_at: from_ms(row.last_seen_at),
            })
            .collect())
    }

    /// Ends one of the user's sessions; `false` when they have no such live session.
    pub async fn revoke_user_session(
        &self,
        user_id: UserId,
        session_id: SessionId,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let revoked = self
            .db
            .transaction_for(&Tenancy::User(user_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE sessions SET revoked_at = $1 \
                             WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
                        )
                        .bind(ms(now))
                        .bind(session_id.as_uuid())
                        .bind(user_id.as_uuid())
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(revoked == 1)
    }

    /// Ends every session of the user but `keep`; returns how many.
    pub async fn revoke_other_sessions(
        &self,
        user_id: UserId,
        keep: Option<SessionId>,
        now: OffsetDateTime,
    ) -> Result<u64, StorageError> {
        self.db
            .serializable(|tx| revoke_sessions_except(tx, user_id, keep, now).boxed())
            .await
    }

    /// A new code for a sign-up that waits for one, by [`issue_code`]'s rules; whether one was
    /// issued (none without a waiting sign-up); if so, `mail` is queued in the same
    /// transaction.
    pub async fn replace_code(
        &self,
        purpose: CodePurpose,
        email: &EmailAddress,
        code_hash: &[u8],
        expires_at: OffsetDateTime,
        mail: Option<&PreparedJob>,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let code = IssuedCode {
            purpose,
            code_hash,
            expires_at,
            insert: false,
        };
        self.issue_code(email, code, mail, now).await
    }

    /// Counts one guess against the live code, atomically: however many guesses race, no
    /// more than `budget` are ever counted.
    pub async fn take_code_attempt(
        &self,
        purpose: CodePurpose,
        email: &EmailAddress,
        budget: u32,
        now: OffsetDateTime,
    ) -> Result<CodeAttempt, StorageError> {
        let budget = i32::try_from(budget).unwrap_or(i32::MAX);
        let email = email.as_str().to_owned();
        let (counted, live_attempts): (Option<Vec<u8>>, Option<i32>) = self.db
            .transaction_for(&Tenancy::Email(email.clone()), |tx| {
                async move {
                    let counted: Option<Vec<u8>> = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_scalar(
                            "UPDATE email_codes SET attempts = attempts + 1 \
                             WHERE purpose = $1 AND email = $2 AND attempts < $3 AND expires_at > $4 \
                             RETURNING code_hash",
                        )
                        .bind(purpose.as_str())
                        .bind(&email)
                        .bind(budget)
                        .bind(ms(now))
                        .fetch_optional(&mut **tx)
                        .await?
                    });
                    if counted.is_some() {
                        return Ok((counted, None));
                    }
                    let live_attempts: Option<i32> = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_scalar(
                            "SELECT attempts FROM email_codes \
                             WHERE purpose = $1 AND email = $2 AND expires_at > $3",
                        )
                        .bind(purpose.as_str())
                        .bind(&email)
                        .bind(ms(now))
                        .fetch_optional(&mut **tx)
                        .await?
                    });
                    Ok((None, live_attempts))
                }
                .boxed()
            })
            .await?;
        if let Some(code_hash) = counted {
            return Ok(CodeAttempt::Counted { code_hash });
        }
        Ok(match live_attempts {
            Some(attempts) if attempts >= budget => CodeAttempt::Exhausted,
            _ => CodeAttempt::Missing,
        })
    }

    /// Turns a verified sign-up into a user who owns a new personal organization, opens their
    /// first session and appends `event` as the new account's own; all or nothing. `None`
    /// when no sign-up was waiting (a racing request completed it first).
    pub async fn complete_signup(
        &self,
        email: &EmailAddress,
        session: &NewSession,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<Option<User>, StorageError> {
        let key = self.db.audit_key()?;
        let email = email.as_str().to_owned();
        let session = session.clone();
        let created = self.db
            .serializable_for(&Tenancy::Email(email.clone()), |tx| {
                let (email, session, key, event) =
                    (email.clone(), session.clone(), key.clone(), event.clone());
                async move {
                    let password_hash: Option<String> = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query("DELETE FROM email_codes WHERE purpose = 'signup' AND email = $1")
                            .bind(&email)
                            .execute(&mut **tx)
                            .await?;
                        sqlx::query_scalar(
                            "DELETE FROM pending_signups WHERE email = $1 RETURNING password_hash",
                        )
                        .bind(&email)
                        .fetch_optional(&mut **tx)
                        .await?
                    });
                    let Some(password_hash) = password_hash else {
                        return Ok(None);
                    };
                    // The address got an account meanwhile (`admin create`): the sign-up is void.
                    if email_taken(tx, &email).await? {
                        return Ok(None);
                    }
                    let account = NewAccount {
                        email,
                        password_hash,
                        platform_role: PlatformRole::User,
                    };
                    let (user_id, org_id) = insert_account(tx, &account, now).await?;
                    insert_session(tx, user_id, &session, now).await?;
                    // The first device: noted, and no news to anyone.
                    note_device(tx, user_id, &session.ip, session.user_agent.as_deref(), now)
                        .await?;
                    crate::audit::append(tx, &key, &by_account(&event, user_id, org_id), now)
                        .await?;
                    Ok(Some(user_id))
                }
                .boxed()
            })
            .await?;
        match created {
            Some(user_id) => self.user_by_id(user_id).await,
            None => Ok(None),
        }
    }

    /// Creates a verified account with its personal organization (the CLI's `admin create`).
    pub async fn create_account(
        &self,
        account: &NewAccount,
        now: OffsetDateTime,
    ) -> Result<User, StorageError> {
        let account = account.clone();
        let user_id = self
            .db
            .serializable(|tx| {
                let account = account.clone();
                async move { Ok(insert_account(tx, &account, now).await?.0) }.boxed()
            })
            .await?;
        self.user_by_id(user_id)
            .await?
            .ok_or(StorageError::Database(sqlx::Error::RowNotFound))
    }

    /// Whether an account was ever made here (the platform's own record of it: no row of any
    /// user's is read).
    pub async fn has_accounts(&self) -> Result<bool, StorageError> {
        Ok(on_backend!(&self.db.pool, Pool, pool => {
            sqlx::query_scalar("SELECT has_accounts FROM installation WHERE singleton = 1")
                .fetch_one(pool)
                .await?
        }))
    }

    /// Replaces the one-time setup token (only its hash is kept).
    pub async fn save_setup_token(
        &self,
        token_hash: &[u8],
        expires_at: OffsetDateTime,
    ) -> Result<(), StorageError> {
        on_backend!(&self.db.pool, Pool, pool => {
            sqlx::query(
                "INSERT INTO setup_token (singleton, token_hash, expires_at) VALUES (1, $1, $2) \
                 ON CONFLICT (singleton) DO UPDATE SET token_hash = excluded.token_hash, \
                 expires_at = excluded.expires_at",
            )
            .bind(token_hash)
            .bind(ms(expires_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Spends the setup token on the first account, a super-admin, and signs it in. `None`
    /// when the token is wrong, expired or spent, or an account already exists.
    pub async fn complete_setup(
        &self,
        token_hash: &[u8],
        account: &NewAccount,
        session: &NewSession,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<Option<User>, StorageError> {
        let key = self.db.audit_key()?;
        let (token_hash, account, session) =
            (token_hash.to_owned(), account.clone(), session.clone());
        let created = self
            .db
            .serializable(|tx| {
                let (token_hash, account, session, key, event) = (
                    token_hash.clone(),
                    account.clone(),
                    session.clone(),
                    key.clone(),
                    event.clone(),
                );
                async move {
                    let spent = on_backend!(&mut tx.0, Inner, tx => {
                        let users: i64 = sqlx::query_scalar(
                            "SELECT CAST(CASE WHEN has_accounts THEN 1 ELSE 0 END AS BIGINT) \
                             FROM installation WHERE singleton = 1",
                        )
                            .fetch_one(&mut **tx)
                            .await?;
                        let deleted = sqlx::query(
                            "DELETE FROM setup_token WHERE token_hash = $1 AND expires_at > $2",
                        )
                        .bind(&token_hash)
                        .bind(ms(now))
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                        users == 0 && deleted == 1
                    });
                    if !spent {
                        return Ok(None);
                    }
                    let (user_id, org_id) = insert_account(tx, &account, now).await?;
                    insert_session(tx, user_id, &session, now).await?;
                    // The first device: noted, and no news to anyone.
                    note_device(tx, user_id, &session.ip, session.user_agent.as_deref(), now)
                        .await?;
                    crate::audit::append(tx, &key, &by_account(&event, user_id, org_id), now)
                        .await?;
                    Ok(Some(user_id))
                }
                .boxed()
            })
            .await?;
        match created {
            Some(user_id) => self.user_by_id(user_id).await,
            None => Ok(None),
        }
    }

    pub async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StorageError> {
        self.db
            .transaction_for(&Tenancy::User(id), |tx| user_in(tx, id).boxed())
            .await
    }

    /// Opens a session for a user who just proved who they are, and appends `signed_in` in
    /// the same transaction, after a `signin.new_device` entry of the same pattern when the
    /// device is new to the account.
    pub async fn create_session(
        &self,
        user_id: UserId,
        session: &NewSession,
        signed_in: &AuditEvent,
        new_device_mail: Option<&PreparedJob>,
        now: OffsetDateTime,
    ) -> Result<NewDevice, StorageError> {
        let key = self.db.audit_key()?;
        let (session, mail) = (session.clone(), new_device_mail.cloned());
        self.db
            .serializable(|tx| {
                let (session, key, signed_in) = (session.clone(), key.clone(), signed_in.clone());
                let mail = mail.clone();
                async move {
                    insert_session(tx, user_id, &session, now).await?;
                    let device = Device {
                        ip: &session.ip,
                        user_agent: session.user_agent.as_deref(),
                    };
                    record_sign_in(tx, &key, user_id, device, &signed_in, mail.as_ref(), now).await
                }
                .boxed()
            })
            .await
    }

    /// The live session with this token hash, and its owner.
    pub async fn session_owner(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
    ) -> Result<Option<SessionOwner>, StorageError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            session_id: Uuid,
            last_seen_at: i64,
            session_created_at: i64,
            #[sqlx(flatten)]
            user: UserRow,
        }
        let token_hash = token_hash.to_vec();
        let row: Option<Row> = self
            .db
            .transaction_for(&Tenancy::SessionToken(hex::encode(&token_hash)), |tx| {
                async move {
                    // Whose session it is, first: the rest is read acting for them.
                    let owner: Option<Uuid> = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_scalar(
                            "SELECT user_id FROM sessions WHERE token_hash = $1 \
                             AND revoked_at IS NULL AND expires_at > $2",
                        )
                        .bind(&token_hash)
                        .bind(ms(now))
                        .fetch_optional(&mut **tx)
                        .await?
                    });
                    let Some(owner) = owner else {
                        return Ok(None);
                    };
                    if act_for_user_and_org(tx, UserId::from_uuid(owner))
                        .await?
                        .is_none()
                    {
                        return Ok(None);
                    }
                    let sql = format!(
                        "SELECT {USER_FIELDS}, s.id AS session_id, s.last_seen_at, \
                         s.created_at AS session_created_at FROM sessions s \
                         JOIN users u ON u.id = s.user_id JOIN org_members m ON m.user_id = u.id \
                         JOIN orgs o ON o.id = m.org_id \
                         WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 \
                         AND (o.session_idle_timeout_secs IS NULL \
                              OR s.last_seen_at > $2 - o.session_idle_timeout_secs * 1000)"
                    );
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(&sql)
                            .bind(&token_hash)
                            .bind(ms(now))
                            .fetch_optional(&mut **tx)
                            .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(row.map(|row| SessionOwner {
            session_id: SessionId::from_uuid(row.session_id),
            user: row.user.into(),
            last_seen_at: from_ms(row.last_seen_at),
            created_at: from_ms(row.session_created_at),
        }))
    }

    /// Marks a session of the user's used now and extends its life (rolling expiry).
    pub async fn touch_session(
        &self,
        user_id: UserId,
        id: SessionId,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<(), StorageError> {
        self.db
            .transaction_for(&Tenancy::User(user_id), |tx| {
                async move {
                    on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE sessions SET last_seen_at = $1, expires_at = $2 \
                             WHERE id = $3 AND user_id = $4 AND revoked_at IS NULL",
                        )
                        .bind(ms(now))
                        .bind(ms(expires_at))
                        .bind(id.as_uuid())
                        .bind(user_id.as_uuid())
                        .execute(&mut **tx)
                        .await?;
                    });
                    Ok(())
                }
                .boxed()
            })
            .await
    }

    /// Ends the session with this token hash, whoever's it is (a browser signing in again
    /// drops the session it carried).
    pub async fn revoke_session_by_token(
        &self,
        token_hash: &[u8],
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let hash = token_hash.to_vec();
        self.db.transaction_for(&Tenancy::SessionToken(hex::encode(token_hash)), |tx| {
            async move {
                on_backend!(&mut tx.0, Inner, tx => {
                    sqlx::query(
                        "UPDATE sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
                    )
                    .bind(ms(now))
                    .bind(&hash)
                    .execute(&mut **tx)
                    .await?;
                });
                Ok(())
            }
            .boxed()
        })
        .await
    }

    /// A successful sign-in clears the address's failure count and lockout history, unless a
    /// racing failure locked it meanwhile; `new_hash` upgrades a password hash made with
    /// older parameters.
    pub async fn record_successful_login(
        &self,
        user: &User,
        new_hash: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let (user_id, email, new_hash) = (user.id, user.email.clone(), new_hash.map(str::to_owned));
        self.db
            .serializable(|tx| {
                let (email, new_hash) = (email.clone(), new_hash.clone());
                async move {
                    crate::lockout::forget(tx, &email, Some(now)).await?;
                    if let Some(new_hash) = new_hash {
                        update_password_hash(tx, user_id, &new_hash).await?;
                    }
                    Ok(())
                }
                .boxed()
            })
            .await
    }

    /// Replaces a password hash made with older parameters, after a correct password.
    pub async fn upgrade_password_hash(
        &self,
        user_id: UserId,
        new_hash: &str,
    ) -> Result<(), StorageError> {
        let new_hash = new_hash.to_owned();
        self.db
            .serializable(|tx| {
                let new_hash = new_hash.clone();
                async move { update_password_hash(tx, user_id, &new_hash).await }.boxed()
            })
            .await
    }
}

/// Issues `code_hash` as the code for `email`: a live code with guesses left is replaced but
/// keeps its expiry and its count of guesses (resending buys neither more time nor more
/// guesses); an expired or spent one is followed by a fresh code with a fresh budget — unless
/// [`CODES_PER_HOUR`] codes went to the address within the hour. `insert` says whether to
/// start a code where there is none. Whether a code was issued (and should be mailed).
/// A code to record: what for, its hash, until when, and whether it may start a row of its
/// own (a reset) or only replace the code of a waiting sign-up.
struct IssuedCode<'a> {
    purpose: CodePurpose,
    code_hash: &'a [u8],
    expires_at: OffsetDateTime,
    insert: bool,
}

async fn issue_code(
    tx: &mut crate::Tx,
    purpose: CodePurpose,
    email: &str,
    code_hash: &[u8],
    expires_at: OffsetDateTime,
    insert: bool,
    now: OffsetDateTime,
) -> Result<bool, StorageError> {
    tx.act_for(&Tenancy::Email(email.to_owned())).await?;
    let now_ms = ms(now);
    on_backend!(&mut tx.0, Inner, tx => {
        let existing: Option<(i64, i32, i32, i64)> = sqlx::query_as(
            "SELECT expires_at, attempts, issued, issued_since FROM email_codes \
             WHERE purpose = $1 AND email = $2",
        )
        .bind(purpose.as_str())
        .bind(email)
        .fetch_optional(&mut **tx)
        .await?;
        let Some((old_expiry, attempts, issued, issued_since)) = existing else {
            if insert {
                sqlx::query(
                    "INSERT INTO email_codes (purpose, email, code_hash, expires_at, attempts, created_at, \
                     issued, issued_since) VALUES ($1, $2, $3, $4, 0, $5, 1, $5)",
                )
                .bind(purpose.as_str())
                .bind(email)
                .bind(code_hash)
                .bind(ms(expires_at))
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
            }
            return Ok(insert);
        };
        let window_ms = i64::try_from(CODE_ISSUE_WINDOW.as_millis()).unwrap_or(i64::MAX);
        let (issued, issued_since) = if issued_since > now_ms - window_ms {
            (issued, issued_since)
        } else {
            (0, now_ms)
        };
        if u32::try_from(issued).unwrap_or(u32::MAX) >= CODES_PER_HOUR {
            return Ok(false);
        }
        let spent = old_expiry <= now_ms || u32::try_from(attempts).unwrap_or(u32::MAX) >= CODE_ATTEMPTS;
        let (expiry, attempts) = if spent { (ms(expires_at), 0) } else { (old_expiry, attempts) };
        sqlx::query(
            "UPDATE email_codes SET code_hash = $1, expires_at = $2, attempts = $3, issued = $4, \
             issued_since = $5 WHERE purpose = $6 AND email = $7",
        )
        .bind(code_hash)
        .bind(expiry)
        .bind(attempts)
        .bind(issued + 1)
        .bind(issued_since)
        .bind(purpose.as_str())
        .bind(email)
        .execute(&mut **tx)
        .await?;
    });
    Ok(true)
}

/// The user `id` with their membership, read acting for them (their second factor's state
/// is theirs to read).
pub(crate) async fn user_in(tx: &mut crate::Tx, id: UserId) -> Result<Option<User>, StorageError> {
    if act_for_user_and_org(tx, id).await?.is_none() {
        return Ok(None);
    }
    let sql = format!(
        "SELECT {USER_FIELDS} FROM users u JOIN org_members m ON m.user_id = u.id WHERE u.id = $1"
    );
    let row: Option<UserRow> = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query_as(&sql).bind(id.as_uuid()).fetch_optional(&mut **tx).await?
    });
    Ok(row.map(User::from))
}

/// Says the transaction acts for the user and their organization (found through their own
/// membership); the organization, or `None` without one.
async fn act_for_user_and_org(
    tx: &mut crate::Tx,
    user_id: UserId,
) -> Result<Option<OrgId>, StorageError> {
    tx.act_for(&Tenancy::User(user_id)).await?;
    let org: Option<Uuid> = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query_scalar("SELECT org_id FROM org_members WHERE user_id = $1")
            .bind(user_id.as_uuid())
            .fetch_optional(&mut **tx)
            .await?
    });
    let Some(org) = org.map(OrgId::from_uuid) else {
        return Ok(None);
    };
    tx.act_for(&Tenancy::Org(org)).await?;
    Ok(Some(org))
}

async fn update_password_hash(
    tx: &mut crate::Tx,
    user_id: UserId,
    password_hash: &str,
) -> Result<(), StorageError> {
    tx.act_for(&Tenancy::User(user_id)).await?;
    on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id.as_uuid())
            .execute(&mut **tx)
            .await?;
    });
    Ok(())
}

/// The user, their personal organization, and their ownership of it.
/// `event` as the account's own: by the user, in their organization's chain.
pub(crate) fn by_account(event: &AuditEvent, user_id: UserId, org_id: OrgId) -> AuditEvent {
    AuditEvent {
        actor: Some(user_id),
        org_id: Some(org_id),
        ..event.clone()
    }
}

/// Whether an account has the address (read acting for the address).
pub(crate) async fn email_taken(tx: &mut crate::Tx, email: &str) -> Result<bool, StorageError> {
    let taken: Option<i32> = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query_scalar("SELECT 1 FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&mut **tx)
            .await?
    });
    Ok(taken.is_some())
}

pub(crate) async fn insert_account(
    tx: &mut crate::Tx,
    account: &NewAccount,
    now: OffsetDateTime,
) -> Result<(UserId, OrgId), StorageError> {
    let (user_id, org_id) = (UserId::generate(), OrgId::generate());
    tx.act_for(&Tenancy::User(user_id)).await?;
    tx.act_for(&Tenancy::Org(org_id)).await?;
    on_backend!(&mut tx.0, Inner, tx => {
        // Not named after its owner: the organization may outlive them (docs/security.md#account-deletion).
        sqlx::query("INSERT INTO orgs (id, name, personal, created_at) VALUES ($1, $2, $3, $4)")
            .bind(org_id.as_uuid())
            .bind(PERSONAL_ORG_NAME)
            .bind(true)
            .bind(ms(now))
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, platform_role, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user_id.as_uuid())
        .bind(&account.email)
        .bind(&account.password_hash)
        .bind(account.platform_role.as_str())
        .bind(ms(now))
        .execute(&mut **tx)
        .await?;
        sqlx::query("INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)")
            .bind(org_id.as_uuid())
            .bind(user_id.as_uuid())
            .bind(ms(now))
            .execute(&mut **tx)
            .await?;
    });
    Ok((user_id, org_id))
}

/// Ends every browser session and token family of the user (a disabled account).
pub(crate) async fn end_every_session(
    tx: &mut crate::Tx,
    user_id: UserId,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    revoke_sessions_except(tx, user_id, None, now).await?;
    revoke_token_families(tx, user_id, now).await
}

/// Revokes every refresh-token family of the user: their access tokens stop working too.
async fn revoke_token_families(
    tx: &mut crate::Tx,
    user_id: UserId,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    tx.act_for(&Tenancy::User(user_id)).await?;
    on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
            .bind(ms(now))
            .bind(user_id.as_uuid())
            .execute(&mut **tx)
            .await?;
    });
    Ok(())
}

/// Ends every live session of the user, but `keep`; returns how many ended.
async fn revoke_sessions_except(
    tx: &mut crate::Tx,
    user_id: UserId,
    keep: Option<SessionId>,
    now: OffsetDateTime,
) -> Result<u64, StorageError> {
    tx.act_for(&Tenancy::User(user_id)).await?;
    Ok(on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 \
             WHERE user_id = $2 AND ($3 IS NULL OR id <> $3) AND revoked_at IS NULL",
        )
        .bind(ms(now))
        .bind(user_id.as_uuid())
        .bind(keep.map(|id| id.as_uuid()))
        .execute(&mut **tx)
        .await?
        .rows_affected()
    }))
}

async fn insert_session(
    tx: &mut crate::Tx,
    user_id: UserId,
    session: &NewSession,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    tx.act_for(&Tenancy::User(user_id)).await?;
    on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, token_hash, ip, user_agent, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
        )
        .bind(session.id.as_uuid())
        .bind(user_id.as_uuid())
        .bind(&session.token_hash)
        .bind(&session.ip)
        .bind(session.user_agent.as_deref())
        .bind(ms(now))
        .bind(ms(session.expires_at))
        .execute(&mut **tx)
        .await?;
    });
    Ok(())
}

/// Where a sign-in came from.
#[derive(Clone, Copy, Debug)]
pub struct Device<'a> {
    pub ip: &'a str,
    pub user_agent: Option<&'a str>,
}

/// A sign-in as it is recorded: from where, its audit entry, and the owner's alert to queue
/// with it if the device is new.
#[derive(Clone, Copy)]
pub struct SignInRecord<'a> {
    pub device: Device<'a>,
    pub event: &'a AuditEvent,
    pub new_device_mail: Option<&'a PreparedJob>,
}

/// Notes the device a sign-in came from and appends `signed_in`, after a
/// `signin.new_device` entry of the same pattern when the device is new to the account.
pub(crate) async fn record_sign_in(
    tx: &mut crate::Tx,
    key: &[u8],
    user_id: UserId,
    device: Device<'_>,
    signed_in: &AuditEvent,
    mail: Option<&PreparedJob>,
    now: OffsetDateTime,
) -> Result<NewDevice, StorageError> {
    let new_device = note_device(tx, user_id, device.ip, device.user_agent, now).await?;
    if new_device {
        let alert = AuditEvent {
            action: Action::SigninFromNewDevice,
            ..signed_in.clone()
        };
        crate::audit::append(tx, key, &alert, now).await?;
        // The owner's alert commits with the sign-in that caused it, or not at all.
        if let Some(mail) = mail {
            crate::queue::enqueue_in(tx, mail).await?;
        }
    }
    crate::audit::append(tx, key, signed_in, now).await?;
    Ok(NewDevice(new_device))
}

/// Remembers a sign-in from `ip` and `user_agent`; true when it is the first from there.
/// Racing sign-ins from one new device find exactly one of them first: the insert is keyed.
pub(crate) async fn note_device(
    tx: &mut crate::Tx,
    user_id: UserId,
    ip: &str,
    user_agent: Option<&str>,
    now: OffsetDateTime,
) -> Result<bool, StorageError> {
    tx.act_for(&Tenancy::User(user_id)).await?;
    let user_agent = user_agent.unwrap_or_default();
    let inserted = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(
            "INSERT INTO sign_in_devices (user_id, ip, user_agent, first_seen_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (user_id, ip, user_agent) DO NOTHING",
        )
        .bind(user_id.as_uuid())
        .bind(ip)
        .bind(user_agent)
        .bind(ms(now))
        .execute(&mut **tx)
        .await?
        .rows_affected()
    });
    if inserted == 0 {
        on_backend!(&mut tx.0, Inner, tx => {
            sqlx::query(
                "UPDATE sign_in_devices SET last_seen_at = $4 \
                 WHERE user_id = $1 AND ip = $2 AND user_agent = $3",
            )
            .bind(user_id.as_uuid())
            .bind(ip)
            .bind(user_agent)
            .bind(ms(now))
            .execute(&mut **tx)
            .await?;
        });
    }
    Ok(inserted == 1)
}

/// What a new personal organization is called until its owner renames it.
pub const PERSONAL_ORG_NAME: &str = "Personal";

/// Unix milliseconds: how times are stored on both backends.
pub(crate) fn ms(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
