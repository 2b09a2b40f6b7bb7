//! What a form's redirect tells the page it lands on. The query string carries a code, never
//! text: a link cannot make mailroom's pages say anything of the linker's choosing (an unknown
//! code shows nothing).

use serde::Deserialize;

/// Every notice a page can show, each with a stable code and a fixed text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    CodeSent,
    CodeResent,
    ResetCodeSent,
    PasswordReset,
    PasswordChanged,
    AccountDeleted,
    SessionSignedOut,
    OtherSessionsSignedOut,
    TwoFactorOff,
    BrowserForgotten,
    SignInAgain,
    RoleChanged,
    MemberRemoved,
    InvitationSent,
    InvitationRevoked,
    OwnershipTransferred,
    Welcome,
    KeyRevoked,
    PlanSet,
    UserUnlocked,
    Done,
    JobQueued,
    AccountConnected,
    AccountDisconnected,
    AccountDisconnectedNotRevoked,
    IdentityLinked,
    IdentityUnlinked,
    EmailQueued,
}

impl Notice {
    const ALL: [Notice; 28] = [
        Notice::CodeSent,
        Notice::CodeResent,
        Notice::ResetCodeSent,
        Notice::PasswordReset,
        Notice::PasswordChanged,
        Notice::AccountDeleted,
        Notice::SessionSignedOut,
        Notice::OtherSessionsSignedOut,
        Notice::TwoFactorOff,
        Notice::BrowserForgotten,
        Notice::SignInAgain,
        Notice::RoleChanged,
        Notice::MemberRemoved,
        Notice::InvitationSent,
        Notice::InvitationRevoked,
        Notice::OwnershipTransferred,
        Notice::Welcome,
        Notice::KeyRevoked,
        Notice::PlanSet,
        Notice::UserUnlocked,
        Notice::Done,
        Notice::JobQueued,
        Notice::AccountConnected,
        Notice::AccountDisconnected,
        Notice::AccountDisconnectedNotRevoked,
        Notice::IdentityLinked,
        Notice::IdentityUnlinked,
        Notice::EmailQueued,
    ];

    /// The code in the query string.
    pub fn code(self) -> &'static str {
        match self {
            Notice::CodeSent => "code_sent",
            Notice::CodeResent => "code_resent",
            Notice::ResetCodeSent => "reset_code_sent",
            Notice::PasswordReset => "password_reset",
            Notice::PasswordChanged => "password_changed",
            Notice::AccountDeleted => "account_deleted",
            Notice::SessionSignedOut => "session_signed_out",
            Notice::OtherSessionsSignedOut => "other_sessions_signed_out",
            Notice::TwoFactorOff => "two_factor_off",
            Notice::BrowserForgotten => "browser_forgotten",
            Notice::SignInAgain => "sign_in_again",
            Notice::RoleChanged => "role_changed",
            Notice::MemberRemoved => "member_removed",
            Notice::InvitationSent => "invitation_sent",
            Notice::InvitationRevoked => "invitation_revoked",
            Notice::OwnershipTransferred => "ownership_transferred",
            Notice::Welcome => "welcome",
            Notice::KeyRevoked => "key_revoked",
            Notice::PlanSet => "plan_set",
            Notice::UserUnlocked => "user_unlocked",
            Notice::Done => "done",
            Notice::JobQueued => "job_queued",
            Notice::AccountConnected => "account_connected",
            Notice::AccountDisconnected => "account_disconnected",
            Notice::AccountDisconnectedNotRevoked => "account_disconnected_not_revoked",
            Notice::IdentityLinked => "identity_linked",
            Notice::IdentityUnlinked => "identity_unlinked",
            Notice::EmailQueued => "email_queued",
        }
    }

    /// What the page says.
    pub fn text(self) -> &'static str {
        match self {
            Notice::CodeSent => "We sent a code to this address.",
            Notice::CodeResent => "If a sign-up waits for this address, a new code is on its way.",
            Notice::ResetCodeSent => "If this address has an account, a code is on its way.",
            Notice::PasswordReset => "Your password is changed; every session was signed out.",
            Notice::PasswordChanged => {
                "Your password is changed; your other sessions were signed out."
            }
            Notice::AccountDeleted => "Your account is deleted.",
            Notice::SessionSignedOut => "That session is signed out.",
            Notice::OtherSessionsSignedOut => "Every other session is signed out.",
            Notice::TwoFactorOff => "Two-factor authentication is off.",
            Notice::BrowserForgotten => "That browser asks for the second factor again.",
            Notice::SignInAgain => "That sign-in took too long or was used up: sign in again.",
            Notice::RoleChanged => "The role is changed.",
            Notice::MemberRemoved => "They are no longer a member.",
            Notice::InvitationSent => "The invitation is on its way.",
            Notice::InvitationRevoked => "The invitation is revoked.",
            Notice::OwnershipTransferred => "The ownership is transferred.",
            Notice::Welcome => "Welcome to the team.",
            Notice::KeyRevoked => "The key is revoked.",
            Notice::PlanSet => "The plan is set.",
            Notice::UserUnlocked => "The account is unlocked.",
            Notice::Done => "Done.",
            Notice::JobQueued => "The job is queued.",
            Notice::AccountConnected => "The account is connected.",
            Notice::AccountDisconnected => "The account is disconnected, its credentials deleted.",
            Notice::AccountDisconnectedNotRevoked => {
                "The account is disconnected, its credentials deleted; Google could not be told to revoke its access: remove mailroom from the Google account's third-party connections."
            }
            Notice::IdentityLinked => "The provider is linked: you can sign in with it.",
            Notice::IdentityUnlinked => "The provider is unlinked.",
            Notice::EmailQueued => "The message is accepted: its delivery is below.",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|notice| notice.code() == code)
    }
}

/// A page's `?notice=` parameter.
#[derive(Deserialize)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}

impl NoticeQuery {
    /// The notice's text, if the code is one of ours.
    pub fn text(&self) -> Option<&'static str> {
        text_of(self.notice.as_deref())
    }
}

/// The text of a notice code from a query string; nothing for an unknown one.
pub fn text_of(code: Option<&str>) -> Option<&'static str> {
    code.and_then(Notice::from_code).map(Notice::text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_notice_round_trips_and_codes_are_unique() {
        for notice in Notice::ALL {
            assert_eq!(Notice::from_code(notice.code()), Some(notice));
        }
        let mut codes: Vec<_> = Notice::ALL.iter().map(|notice| notice.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Notice::ALL.len());
        assert_eq!(
            text_of(Some("Your account is suspended. Call +1-555-0100 now.")),
            None
        );
    }
}
