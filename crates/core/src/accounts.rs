//! The numbers behind sign-up, sign-in and sessions (docs/security.md): promises to users,
//! kept in one place.

use std::time::Duration;

/// An emailed code is good for five minutes…
pub const CODE_TTL: Duration = Duration::from_secs(5 * 60);
/// …and for five guesses in all, however often it is resent while it lives. Once it expired
/// or its guesses are spent, a resend or a new sign-up issues a fresh code with a fresh
/// budget…
pub const CODE_ATTEMPTS: u32 = 5;
/// …but no more than this many codes go to one address in an hour, which bounds the guesses
/// at `CODES_PER_HOUR * CODE_ATTEMPTS` an hour.
pub const CODES_PER_HOUR: u32 = 5;
/// The window `CODES_PER_HOUR` counts in.
pub const CODE_ISSUE_WINDOW: Duration = Duration::from_secs(60 * 60);
/// Failed sign-ins in a row that lock an account…
pub const LOCKOUT_THRESHOLD: u32 = 5;
/// …for this long the first time, twice as long each time after.
pub const LOCKOUT_BASE: Duration = Duration::from_secs(15 * 60);
/// The doubling stops here, so that a lock never outlives a working week.
const LOCKOUT_MAX_DOUBLINGS: u32 = 8;
/// Changing the password (and later 2FA, API keys, deleting the account) needs a sign-in
/// this recent (docs/security.md#recent-auth).
pub const RECENT_AUTH: Duration = Duration::from_secs(15 * 60);
/// The one-time link that creates the first super-admin is good for an hour.
pub const SETUP_TOKEN_TTL: Duration = Duration::from_secs(60 * 60);
/// An access token (JWT) for programs is good for fifteen minutes…
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// …a refresh token family for seven days from the password grant, however often rotated…
pub const REFRESH_FAMILY_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// …and a retired refresh token presented again this soon gets the same answer (two tabs
/// racing), not a revoked family.
pub const REFRESH_GRACE: Duration = Duration::from_secs(10);
/// A browser session lives this long past its last use.
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// A password accepted, the second factor still owed: the `mfa_token` lives this long.
pub const MFA_CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);
/// "Trust this device" skips the second factor this long.
pub const TRUSTED_DEVICE_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// What decides whether a second factor is mandatory for someone (docs/security.md#mfa-required).
#[derive(Clone, Copy, Debug)]
pub struct SecondFactorDuty {
    pub super_admin: bool,
    /// Owner or admin of their organization.
    pub org_manager: bool,
    pub org_has_other_members: bool,
    pub org_requires_it: bool,
}

impl SecondFactorDuty {
    /// Super-admins, and those who manage an organization other people are in, must have a
    /// second factor; so must everyone whose organization says so. A personal organization
    /// of one is not forced.
    pub fn required(self) -> bool {
        self.super_admin || self.org_requires_it || (self.org_manager && self.org_has_other_members)
    }
}

/// How long the `n`-th lockout (counting from 0) lasts.
pub fn lockout_duration(previous_lockouts: u32) -> Duration {
    LOCKOUT_BASE.saturating_mul(1 << previous_lockouts.min(LOCKOUT_MAX_DOUBLINGS))
}

/// The purposes an emailed code can serve; one live code per purpose and address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodePurpose {
    Signup,
    PasswordReset,
}

impl CodePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            CodePurpose::Signup => "signup",
            CodePurpose::PasswordReset => "password_reset",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_factor_is_owed_by_admins_of_teams_and_super_admins_only() {
        let nobody = SecondFactorDuty {
            super_admin: false,
            org_manager: true,
            org_has_other_members: false,
            org_requires_it: false,
        };
        assert!(
            !nobody.required(),
            "the owner of a personal organization of one"
        );
        assert!(
            SecondFactorDuty {
                org_has_other_members: true,
                ..nobody
            }
            .required()
        );
        assert!(
            !SecondFactorDuty {
                org_manager: false,
                org_has_other_members: true,
                ..nobody
            }
            .required()
        );
        assert!(
            SecondFactorDuty {
                super_admin: true,
                ..nobody
            }
            .required()
        );
        assert!(
            SecondFactorDuty {
                org_manager: false,
                org_requires_it: true,
                ..nobody
            }
            .required()
        );
    }

    #[test]
    fn lockouts_double_and_stop_doubling() {
        assert_eq!(lockout_duration(0), Duration::from_secs(15 * 60));
        assert_eq!(lockout_duration(1), Duration::from_secs(30 * 60));
        assert_eq!(lockout_duration(2), Duration::from_secs(60 * 60));
        assert_eq!(
            lockout_duration(40),
            lockout_duration(LOCKOUT_MAX_DOUBLINGS)
        );
    }
}
