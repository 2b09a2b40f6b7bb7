//! Accounts and their sessions: sign-up with an emailed code, sign-in (with the second factor
//! when one is owed), password resets and changes, sessions ended one by one or all but one,
//! and the account's deletion (docs/security.md#email-codes, #lockout, #session-fixation).
//!
//! Whether an account exists is never told by outcome or timing: sign-up and resend succeed
//! either way and queue mail; sign-in checks a dummy hash for an unknown address.

use mailroom_core::accounts::{CODE_ATTEMPTS, CODE_TTL, CodePurpose};
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::password_policy::{self, CompositionRules};
use mailroom_core::{EmailAddress, SessionId};
use mailroom_crypto::password::Verification;
use mailroom_mail::queued::MailMessage;
use mailroom_storage::accounts::{
    CodeAttempt, NewAccount, NewDevice, PlatformRole, SessionInfo, SignInDevice, User,
};
use mailroom_storage::audit::AuditEntry;
use mailroom_storage::privacy::Deletion;
use mailroom_storage::queue::{JobKind, PreparedJob};
use mailroom_storage::two_factor::TrustedDevice;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::application::actor::Credential;
use crate::application::actor::Principal;
use crate::application::lockout::{Claimant, Verdict, gated};
use crate::application::mail_accounts::google;
use crate::application::second_factor;
use crate::audit::{self, AuditTrail};
use crate::auth::codes;
use crate::auth::passwords::PasswordWork;
use crate::auth::session::{self, Presented};
use crate::error::{Conflict, DomainError};
use crate::state::AppState;
use crate::work_queue::mail_job;

/// Where a correct password leads.
pub enum SignIn {
    /// Signed in: the user and the new session's token.
    Complete { user: User, session: String },
    /// A second factor is owed, to be sent with this token (docs/security.md#totp).
    SecondFactorOwed { mfa_token: SecretString },
}

/// Records a sign-up and mails its code, unless the address has an account already; the
/// caller cannot tell which.
pub async fn sign_up(
    state: &AppState,
    trail: &AuditTrail,
    email: &str,
    password: &SecretString,
) -> Result<(), DomainError> {
    let email = parse_email(email)?;
    state.auth_limiter.check_account(&email).await?;
    // No organization yet, so no organization rules.
    check_password_policy(password, &email, CompositionRules::default())
        .map_err(|error| error.for_field("password"))?;
    // Hashed either way, so that both paths take the same time.
    let password_hash = state.passwords.hash(password).await?;
    let now = OffsetDateTime::now_utc();
    let event = AuditEvent {
        target: Some(email.to_string()),
        subject: Some(email.to_string()),
        ..trail.event(Action::SignupRequested, Outcome::Success)
    };
    if state
        .database
        .accounts()
        .user_by_email(&email)
        .await?
        .is_some()
    {
        return audit::record(&state.database, event).await;
    }
    let code = codes::generate();
    let code_hash = codes::hash(&state.code_key, CodePurpose::Signup, &email, &code);
    let mail = code_mail(state, &email, "confirm your email address", &code).await?;
    let issued = state
        .database
        .accounts()
        .save_signup(
            &email,
            password_hash.as_str(),
            &code_hash,
            now + CODE_TTL,
            Some(&mail),
            &event,
            now,
        )
        .await?;
    if issued {
        state.queue.wake(JobKind::SystemMail);
    }
    Ok(())
}

pub async fn resend(state: &AppState, email: &str) -> Result<(), DomainError> {
    let email = parse_email(email)?;
    state.auth_limiter.check_account(&email).await?;
    let now = OffsetDateTime::now_utc();
    let code = codes::generate();
    let code_hash = codes::hash(&state.code_key, CodePurpose::Signup, &email, &code);
    let mail = code_mail(state, &email, "confirm your email address", &code).await?;
    let expires_at = now + CODE_TTL;
    let replaced = state
        .database
        .accounts()
        .replace_code(
            CodePurpose::Signup,
            &email,
            &code_hash,
            expires_at,
            Some(&mail),
            now,
        )
        .await?;
    if replaced {
        state.queue.wake(JobKind::SystemMail);
    }
    Ok(())
}

/// Turns a sign-up whose code is right into an account; returns it and its session token.
pub async fn confirm(
    state: &AppState,
    trail: &AuditTrail,
    presented: Presented<'_>,
    email: &str,
    code: &SecretString,
) -> Result<(User, String), DomainError> {
    let email = parse_email(email)?;
    state.auth_limiter.check_account(&email).await?;
    let now = OffsetDateTime::now_utc();
    check_code(state, CodePurpose::Signup, &email, code, now).await?;
    let issued = rotate_session(state, trail, presented, now).await?;
    let event = AuditEvent {
        session_id: Some(issued.record.id),
        target: Some(email.to_string()),
        subject: Some(email.to_string()),
        ..trail.event(Action::EmailVerified, Outcome::Success)
    };
    let user = state
        .database
        .accounts()
        .complete_signup(&email, &issued.record, &event, now)
        .await?
        .ok_or(DomainError::InvalidCode)?;
    tracing::info!(user_id = %user.id, "account created");
    Ok((user, issued.token))
}

/// Signs in with a password: opens a session, unless a second factor is owed and this
/// browser is not a trusted device of the user's.
pub async fn sign_in(
    state: &AppState,
    trail: &AuditTrail,
    presented: Presented<'_>,
    email: &str,
    password: &SecretString,
) -> Result<SignIn, DomainError> {
    let user = authenticate(state, trail, email, password).await?;
    sign_in_as(state, trail, presented, user).await
}

/// Signs in a user who has just proved who they are (a password, a provider): opens a
/// session, unless a second factor is owed and this browser is not a trusted device.
pub(crate) async fn sign_in_as(
    state: &AppState,
    trail: &AuditTrail,
    presented: Presented<'_>,
    user: User,
) -> Result<SignIn, DomainError> {
    if user.mfa_enabled {
        if !second_factor::trusted_device(state, &user, presented.trusted_device).await? {
            let mfa_token = second_factor::challenge(state, &user).await?;
            return Ok(SignIn::SecondFactorOwed { mfa_token });
        }
        state
            .database
            .accounts()
            .record_successful_login(&user, None, OffsetDateTime::now_utc())
            .await?;
    }
    let session = open_session(state, trail, presented, &user).await?;
    Ok(SignIn::Complete { user, session })
}

/// The second step of a sign-in: spends the challenge (each attempt takes one, so racing
/// attempts cannot both spend codes), checks the proof, opens the session; returns the user,
/// the session token, and the trusted-device token when asked to remember the browser. A
/// wrong code comes back with a fresh `mfa_token` for the next try.
pub async fn complete_second_factor(
    state: &AppState,
    trail: &AuditTrail,
    presented: Presented<'_>,
    mfa_token: &SecretString,
    proof: second_factor::Proof<'_>,
    remember_device: bool,
) -> Result<(User, String, Option<SecretString>), DomainError> {
    let user = second_factor::spend_challenge(state, mfa_token).await?;
    if let Err(error) = second_factor::check(state, trail, &user, proof).await {
        return Err(match error {
            DomainError::InvalidCode | DomainError::CodeAlreadyUsed => {
                DomainError::SecondFactorRefused {
                    refused: Box::new(error),
                    mfa_token: second_factor::challenge(state, &user).await?,
                }
            }
            error => error,
        });
    }
    let session = open_session(state, trail, presented, &user).await?;
    let trusted = if remember_device {
        Some(second_factor::trust_device(state, trail, &user).await?)
    } else {
        None
    };
    Ok((user, session, trusted))
}

/// Opens a session for a user who has just proved who they are; returns its token.
async fn open_session(
    state: &AppState,
    trail: &AuditTrail,
    presented: Presented<'_>,
    user: &User,
) -> Result<String, DomainError> {
    let now = OffsetDateTime::now_utc();
    let issued = rotate_session(state, trail, presented, now).await?;
    let signed_in = AuditEvent {
        session_id: Some(issued.record.id),
        ..trail.by_user(user, Action::SigninSucceeded, Outcome::Success)
    };
    let alert = new_device_mail(state, trail, user).await?;
    let NewDevice(new_device) = state
        .database
        .accounts()
        .create_session(user.id, &issued.record, &signed_in, Some(&alert), now)
        .await?;
    // The alert was queued with the sign-in, only if the device was new.
    if new_device {
        state.queue.wake(JobKind::SystemMail);
    }
    tracing::info!(user_id = %user.id, "signed in");
    Ok(issued.token)
}

pub async fn forgot(state: &AppState, email: &str) -> Result<(), DomainError> {
    let email = parse_email(email)?;
    state.auth_limiter.check_account(&email).await?;
    let now = OffsetDateTime::now_utc();
    let code = codes::generate();
    let code_hash = codes::hash(&state.code_key, CodePurpose::PasswordReset, &email, &code);
    // A code is recorded whether or not the address has an account (the answer and its
    // timing must not tell); only an account's owner is mailed.
    let mail = match state.database.accounts().user_by_email(&email).await? {
        Some(_) => Some(code_mail(state, &email, "reset your password", &code).await?),
        None => None,
    };
    let issued = state
        .database
        .accounts()
        .save_code(
            CodePurpose::PasswordReset,
            &email,
            &code_hash,
            now + CODE_TTL,
            mail.as_ref(),
            now,
        )
        .await?;
    if issued && mail.is_some() {
        state.queue.wake(JobKind::SystemMail);
    }
    Ok(())
}

pub async fn reset(
    state: &AppState,
    trail: &AuditTrail,
    email: &str,
    code: &SecretString,
    new_password: &SecretString,
) -> Result<(), DomainError> {
    let email = parse_email(email)?;
    state.auth_limiter.check_account(&email).await?;
    let rules = state
        .database
        .accounts()
        .user_by_email(&email)
        .await?
        .map(|user| user.password_rules)
        .unwrap_or_default();
    check_password_policy(new_password, &email, rules)?;
    let now = OffsetDateTime::now_utc();
    let code_hash = check_code(state, CodePurpose::PasswordReset, &email, code, now).await?;
    let password_hash = state.passwords.hash(new_password).await?;
    let event = AuditEvent {
        target: Some(email.to_string()),
        subject: Some(email.to_string()),
        ..trail.event(Action::PasswordReset, Outcome::Success)
    };
    state
        .database
        .accounts()
        .reset_password(&email, &code_hash, password_hash.as_str(), &event, now)
        .await?
        .ok_or(DomainError::InvalidCode)?;
    Ok(())
}

/// Checks an email and password for a sign-in or a password grant: the same work, and the
/// same lockout, for an address without an account (docs/security.md#enumeration).
pub async fn authenticate(
    state: &AppState,
    trail: &AuditTrail,
    email: &str,
    password: &SecretString,
) -> Result<User, DomainError> {
    let Ok(address) = EmailAddress::parse(email) else {
        // A malformed address cannot have an account: answered like a wrong password.
        state.passwords.verify(password, None).await?;
        audit::record(
            &state.database,
            AuditEvent {
                target: Some(email.chars().take(254).collect()),
                ..trail.event(Action::SigninFailed, Outcome::Failure)
            },
        )
        .await?;
        return Err(DomainError::InvalidCredentials);
    };
    state.auth_limiter.check_account(&address).await?;
    let user = state.database.accounts().user_by_email(&address).await?;
    let claimant = Claimant::address(address, user.as_ref());
    let rehash = check_password_of(state, trail, &claimant, password).await?;
    // A dummy hash never matches: past the check there is an account.
    let user = user.ok_or(DomainError::InvalidCredentials)?;
    password_accepted(state, &user, password, rehash).await?;
    // Said only to whoever knows the password.
    if user.disabled {
        return Err(DomainError::AccountDisabled);
    }
    Ok(user)
}

/// Checks a signed-in user's password again (a sensitive change asks for it) through the
/// lockout gate.
async fn check_password(
    state: &AppState,
    trail: &AuditTrail,
    user: &User,
    password: &SecretString,
) -> Result<(), DomainError> {
    let claimant = Claimant::account(user)?;
    let rehash = check_password_of(state, trail, &claimant, password).await?;
    password_accepted(state, user, password, rehash).await
}

/// The password check behind the gate, against a dummy hash when there is no account; on a
/// match, whether the hash should be upgraded.
async fn check_password_of(
    state: &AppState,
    trail: &AuditTrail,
    claimant: &Claimant<'_>,
    password: &SecretString,
) -> Result<bool, DomainError> {
    let user = claimant.user();
    gated(
        state,
        trail,
        claimant,
        || DomainError::InvalidCredentials,
        async {
            let hash = user.and_then(|user| user.password_hash.as_deref());
            Ok(match state.passwords.verify(password, hash).await? {
                Verification::Match { rehash } if user.is_some() => Verdict::Right(rehash),
                _ => Verdict::Wrong,
            })
        },
    )
    .await
}

/// After a right password: upgrades an outdated hash, and clears the failure count unless a
/// second factor is still owed (then only this attempt stops counting).
async fn password_accepted(
    state: &AppState,
    user: &User,
    password: &SecretString,
    rehash: bool,
) -> Result<(), DomainError> {
    if rehash {
        let upgraded = state.passwords.hash(password).await?;
        state
            .database
            .accounts()
            .upgrade_password_hash(user.id, upgraded.as_str())
            .await?;
    }
    if user.mfa_enabled {
        let claimant = Claimant::account(user)?;
        Ok(state
            .database
            .lockout()
            .forgive_login_attempt(claimant.email())
            .await?)
    } else {
        Ok(state
            .database
            .accounts()
            .record_successful_login(user, None, OffsetDateTime::now_utc())
            .await?)
    }
}

/// A sign-in from a client IP and user agent never seen for this user: audited, and the
/// owner told by email (docs/security.md#new-device-alert).
/// Tells the account's owner of a sign-in from a device it had not seen.
/// The owner's alert of a sign-in from a new device, sealed and ready for the sign-in's
/// transaction to queue if the device is new (the outbox pattern).
pub async fn new_device_mail(
    state: &AppState,
    trail: &AuditTrail,
    user: &User,
) -> Result<PreparedJob, DomainError> {
    let message = MailMessage::NewSignIn {
        ip: trail.ip().to_owned(),
        user_agent: trail.user_agent().unwrap_or("unknown").to_owned(),
    };
    Ok(state
        .database
        .queue()
        .prepare_job(mail_job(&user.email, message))
        .await?)
}

/// Ends the caller's session, or the family of their access token.
pub async fn sign_out(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
) -> Result<(), DomainError> {
    let now = OffsetDateTime::now_utc();
    let target = match principal.credential {
        Credential::Session(id) => {
            state
                .database
                .accounts()
                .revoke_user_session(principal.user.id, id, now)
                .await?;
            id.to_string()
        }
        Credential::AccessToken { family } => {
            state
                .database
                .tokens()
                .revoke_token_family(principal.user.id, family, now)
                .await?;
            format!("token family {family}")
        }
    };
    record_revocation(state, trail, principal, target).await
}

/// A new session for a browser that just proved who it is. The session it carried before, if
/// any, ends: a session id is never kept across a sign-in (no fixation: docs/security.md#session-fixation).
async fn rotate_session(
    state: &AppState,
    trail: &AuditTrail,
    presented: Presented<'_>,
    now: OffsetDateTime,
) -> Result<session::IssuedSession, DomainError> {
    if let Some(previous) = presented.session {
        state
            .database
            .accounts()
            .revoke_session_by_token(&session::token_hash(previous), now)
            .await?;
    }
    Ok(session::issue(trail, now))
}

/// Spends one guess of the budget on `code`, then checks it; returns the stored hash it
/// matched, for the caller to spend the code by.
async fn check_code(
    state: &AppState,
    purpose: CodePurpose,
    email: &EmailAddress,
    code: &SecretString,
    now: OffsetDateTime,
) -> Result<Vec<u8>, DomainError> {
    let attempt = state
        .database
        .accounts()
        .take_code_attempt(purpose, email, CODE_ATTEMPTS, now)
        .await?;
    match attempt {
        CodeAttempt::Counted { code_hash }
            if codes::matches(
                &state.code_key,
                &code_hash,
                purpose,
                email,
                code.expose_secret(),
            ) =>
        {
            Ok(code_hash)
        }
        CodeAttempt::Exhausted => Err(DomainError::CodeExhausted),
        CodeAttempt::Counted { .. } | CodeAttempt::Missing => Err(DomainError::InvalidCode),
    }
}

/// The mail of a code, sealed and ready to be queued with the code itself (the outbox
/// pattern).
async fn code_mail(
    state: &AppState,
    email: &EmailAddress,
    purpose: &'static str,
    code: &str,
) -> Result<PreparedJob, DomainError> {
    let message = MailMessage::Code {
        purpose: purpose.to_owned(),
        code: code.to_owned(),
        valid_minutes: u32::try_from(CODE_TTL.as_secs() / 60).unwrap_or(u32::MAX),
    };
    Ok(state
        .database
        .queue()
        .prepare_job(mail_job(email.as_str(), message))
        .await?)
}

/// The rules for a new password (docs/security.md#password-policy); the error names `new_password` (sign-up renames it).
fn check_password_policy(
    password: &SecretString,
    email: &EmailAddress,
    rules: CompositionRules,
) -> Result<(), DomainError> {
    password_policy::check(password.expose_secret(), email.as_str(), rules).map_err(|rejection| {
        DomainError::WeakPassword {
            field: "new_password",
            detail: rejection.to_string(),
        }
    })
}

pub fn parse_email(raw: &str) -> Result<EmailAddress, DomainError> {
    EmailAddress::parse(raw).map_err(|error| DomainError::InvalidEmail {
        field: "email",
        detail: error.to_string(),
    })
}

pub async fn change_password_of(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    current_password: &SecretString,
    new_password: &SecretString,
) -> Result<(), DomainError> {
    principal.require_recent_auth()?;
    let user = &principal.user;
    // Through the lockout gate: a stolen session is no password oracle.
    check_password(state, trail, user, current_password)
        .await
        .map_err(|error| match error {
            DomainError::InvalidCredentials => DomainError::WrongCurrentPassword,
            error => error,
        })?;
    let email = EmailAddress::parse(&user.email).map_err(DomainError::internal)?;
    check_password_policy(new_password, &email, user.password_rules)?;
    let hash = state.passwords.hash(new_password).await?;
    let now = OffsetDateTime::now_utc();
    state
        .database
        .accounts()
        .change_password(user.id, principal.session_id(), hash.as_str(), now)
        .await
        .map_err(DomainError::internal)?;
    audit::record(
        &state.database,
        AuditEvent {
            session_id: principal.session_id(),
            ..trail.by_user(user, Action::PasswordChanged, Outcome::Success)
        },
    )
    .await?;
    Ok(())
}

pub async fn revoke_one(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    id: SessionId,
) -> Result<(), DomainError> {
    let revoked = state
        .database
        .accounts()
        .revoke_user_session(principal.user.id, id, OffsetDateTime::now_utc())
        .await
        .map_err(DomainError::internal)?;
    if !revoked {
        return Err(DomainError::NotFound);
    }
    record_revocation(state, trail, principal, id.to_string()).await
}

pub async fn revoke_others(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
) -> Result<(), DomainError> {
    let revoked = state
        .database
        .accounts()
        .revoke_other_sessions(
            principal.user.id,
            principal.session_id(),
            OffsetDateTime::now_utc(),
        )
        .await
        .map_err(DomainError::internal)?;
    record_revocation(state, trail, principal, format!("{revoked} other sessions")).await
}

/// Audits the end of one or more of the caller's sessions (or token families).
async fn record_revocation(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    target: String,
) -> Result<(), DomainError> {
    audit::record(
        &state.database,
        AuditEvent {
            session_id: principal.session_id(),
            target: Some(target),
            ..trail.by_user(&principal.user, Action::SessionRevoked, Outcome::Success)
        },
    )
    .await?;
    Ok(())
}

pub async fn delete(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    confirm: &str,
) -> Result<(), DomainError> {
    principal.require_recent_auth()?;
    let user = &principal.user;
    if !confirm.trim().eq_ignore_ascii_case(&user.email) {
        return Err(DomainError::ConfirmationMismatch { field: "confirm" });
    }
    // Nothing personal: not who, not from where. The request id ties it to the server's log.
    let event = AuditEvent {
        ip: None,
        user_agent: None,
        ..trail.event(Action::AccountDeleted, Outcome::Success)
    };
    // The Google grants of an organization the deletion takes with it are revoked after it.
    // Those of an organization that stays are its own: they stay connected.
    let grants = google::grants_of(state, user.org_id).await;
    let deletion = state
        .database
        .privacy()
        .delete_account(user.id, &user.email, &event, OffsetDateTime::now_utc())
        .await?;
    match deletion {
        Deletion::Deleted { org_deleted } => {
            tracing::info!(org_deleted, "account deleted");
            if org_deleted {
                google::revoke_all(state, grants).await;
            }
            Ok(())
        }
        Deletion::OwnershipTransferRequired => {
            Err(DomainError::Conflict(Conflict::OwnershipTransferRequired))
        }
    }
}

/// An account an operator creates, at `/setup` or with `mailroom admin create`: the address
/// checked, the password held to the rules (no organization yet, so none of an
/// organization's), and hashed. Both call this one operation, then store the account their
/// way (the setup link's consumption and a session; or the terminal's audited creation).
pub async fn operator_account(
    passwords: &PasswordWork,
    email: &str,
    password: &SecretString,
    platform_role: PlatformRole,
) -> Result<NewAccount, DomainError> {
    let email = parse_email(email)?;
    check_password_policy(password, &email, CompositionRules::default())
        .map_err(|error| error.for_field("password"))?;
    // On the bounded pool: the setup form hashes before its link is checked.
    let password_hash = passwords.hash(password).await?;
    Ok(NewAccount {
        email: email.to_string(),
        password_hash: password_hash.as_str().to_owned(),
        platform_role,
    })
}

/// The account's live sessions, for its owner.
pub async fn sessions(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<SessionInfo>, DomainError> {
    let now = OffsetDateTime::now_utc();
    Ok(state
        .database
        .accounts()
        .sessions_of(principal.user.id, now)
        .await?)
}

/// A page of the owner's audit entries, newest first, before entry `before`.
pub async fn activity(
    state: &AppState,
    principal: &Principal,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AuditEntry>, DomainError> {
    Ok(state
        .database
        .audit()
        .audit_for_actor(principal.user.id, before, limit)
        .await?)
}

/// Audit entries read per query while exporting.
const EXPORT_PAGE: i64 = 500;

/// What mailroom holds about an account (docs/security.md#account-export), as its owner
/// exports it.
pub struct AccountExport {
    pub sessions: Vec<SessionInfo>,
    pub sign_in_devices: Vec<SignInDevice>,
    pub trusted_devices: Vec<TrustedDevice>,
    pub backup_codes_left: i64,
    /// The providers linked to the account.
    pub identities: Vec<mailroom_storage::identities::Identity>,
    /// Every audit entry of the owner's, newest first, the export's own included.
    pub audit_entries: Vec<AuditEntry>,
}

/// Exports the account for its owner: audited first, so that the export holds its own entry.
pub async fn export(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
) -> Result<AccountExport, DomainError> {
    let user = &principal.user;
    let now = OffsetDateTime::now_utc();
    audit::record(
        &state.database,
        trail.by_user(user, Action::AccountExported, Outcome::Success),
    )
    .await?;
    let (accounts, two_factor) = (state.database.accounts(), state.database.two_factor());
    let mut audit_entries = Vec::new();
    let mut before = None;
    loop {
        let page = activity(state, principal, before, EXPORT_PAGE).await?;
        before = page.last().map(|entry| entry.id);
        let last_page = page.len() < usize::try_from(EXPORT_PAGE).unwrap_or(usize::MAX);
        audit_entries.extend(page);
        if last_page {
            break;
        }
    }
    Ok(AccountExport {
        sessions: accounts.sessions_of(user.id, now).await?,
        sign_in_devices: accounts.sign_in_devices(user.id).await?,
        trusted_devices: two_factor.trusted_devices(user.id, now).await?,
        backup_codes_left: two_factor.unused_backup_codes(user.id).await?,
        identities: state.database.identities().of_user(user.id).await?,
        audit_entries,
    })
}
