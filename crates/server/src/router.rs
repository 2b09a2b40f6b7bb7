//! Every path and what answers it: the JSON API's handlers ([`crate::routes`]) and the pages'
//! ([`crate::pages`]), in groups that share their layers (the auth routes' limit per client IP,
//! the keyed routes' limits, a person's limits, the browser guard, the body limits).

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::routing::{MethodRouter, any, delete, get, patch, post};
use tower_http::limit::RequestBodyLimitLayer;

use axum::middleware::from_fn_with_state;

use crate::config::BODY_LIMIT_BYTES;
use crate::edge::headers::CSP_REPORT_PATH;
use crate::extract::principal;
use crate::limits;
use crate::pages;
use crate::pages::account;
use crate::routes::{
    admin, api_keys, assets, auth, csp_report, emails, health, mail_accounts, me, metrics, org,
    privacy, setup, team, two_factor, usage, verify, verify_jobs, webhooks,
};
use crate::state::AppState;

pub fn router(state: &AppState) -> Router<AppState> {
    // The doors an attacker knocks on, limited per client IP.
    let auth = Router::new()
        .route("/v1/auth/signup", post(auth::signup))
        .route("/v1/auth/confirm-email", post(auth::confirm_email))
        .route("/v1/auth/resend-code", post(auth::resend_code))
        .route("/v1/auth/login", post(auth::login))
        .route("/v1/auth/login/2fa", post(auth::login_second_factor))
        .route("/v1/auth/token", post(auth::token))
        .route("/v1/auth/password/forgot", post(auth::forgot_password))
        .route("/v1/auth/password/reset", post(auth::reset_password))
        .route("/setup", get(setup::page).post(setup::submit))
        .route(
            "/signup",
            get(account::signup_page).post(account::signup_submit),
        )
        .route(
            "/confirm",
            get(account::confirm_page).post(account::confirm_submit),
        )
        .route("/confirm/resend", post(account::resend_submit))
        .route(
            "/signin",
            get(account::signin_page).post(account::signin_submit),
        )
        .route("/signin/2fa", post(account::second_factor_submit))
        .route(
            "/v1/auth/oidc/{provider}/start",
            get(pages::identities::start),
        )
        .route(
            "/v1/auth/oidc/{provider}/callback",
            get(pages::identities::callback),
        )
        .route(
            "/forgot",
            get(account::forgot_page).post(account::forgot_submit),
        )
        .route(
            "/reset",
            get(account::reset_page).post(account::reset_submit),
        )
        .route_layer(from_fn_with_state(state.clone(), limits::auth::limit_auth));
    // What API keys may call: the key is checked and limited once, in front (a person's
    // request, per user).
    let keyed = Router::new()
        .route("/v1/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/v1/api-keys/{id}", delete(api_keys::revoke))
        .route("/v1/audit-log", get(me::org_audit_log))
        .route(
            "/v1/mail-accounts",
            get(mail_accounts::list).post(mail_accounts::create),
        )
        .route(
            "/v1/mail-accounts/{id}",
            get(mail_accounts::show)
                .patch(mail_accounts::update)
                .delete(mail_accounts::disconnect),
        )
        .route("/v1/mail-accounts/{id}/test", post(mail_accounts::test))
        .route(
            "/v1/mail-accounts/google",
            post(mail_accounts::connect_google),
        )
        .route(
            "/v1/mail-accounts/{id}/reconnect",
            post(mail_accounts::reconnect_google),
        )
        .route("/v1/emails/{id}", get(emails::show).delete(emails::cancel))
        .route(
            "/v1/suppressions",
            get(emails::suppressions).post(emails::suppress),
        )
        .route("/v1/suppressions/{address}", delete(emails::unsuppress))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::show)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/test", post(webhooks::test))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/usage", get(usage::usage))
        .route("/v1/verify", post(verify::verify))
        .route("/v1/verify/batch", post(verify::batch))
        .route("/v1/verify/logs", get(verify::logs))
        .route(
            "/v1/verify/jobs/{id}",
            get(verify_jobs::show).delete(verify_jobs::cancel),
        )
        .route("/v1/verify/jobs/{id}/results", get(verify_jobs::results))
        .route_layer(from_fn_with_state(
            state.clone(),
            limits::keys::limit_api_keys,
        ));
    // Uploads of up to 100,000 addresses, and messages with their attachments: the API
    // routes allowed a larger body, each its own.
    let uploads = keyed_with_body_limit(
        state,
        Router::new().route(
            "/v1/verify/jobs",
            get(verify_jobs::list).post(verify_jobs::create),
        ),
        verify_jobs::UPLOAD_LIMIT_BYTES,
    )
    .merge(keyed_with_body_limit(
        state,
        Router::new()
            .route("/v1/emails", get(emails::list).post(emails::send))
            .route("/v1/emails/batch", post(emails::batch)),
        emails::BODY_LIMIT_BYTES,
    ));
    // The API for people (sessions and access tokens): limited per user.
    let accounts = Router::new()
        .route("/v1/me", get(auth::me).delete(privacy::delete_account))
        .route("/v1/me/export", get(privacy::export))
        .route("/v1/org", get(org::show).patch(org::update))
        .route("/v1/org/members", get(team::members))
        .route(
            "/v1/org/members/{user_id}",
            patch(team::change_role).delete(team::remove),
        )
        .route("/v1/org/transfer-ownership", post(team::transfer_ownership))
        .route(
            "/v1/org/invitations",
            get(team::invitations).post(team::invite),
        )
        .route("/v1/org/invitations/{id}", delete(team::revoke_invitation))
        .route("/v1/invitations/accept", post(team::accept))
        .route("/v1/admin/orgs", get(admin::orgs))
        .route("/v1/admin/orgs/{id}", patch(admin::set_plan))
        .route("/v1/admin/users", get(admin::users))
        .route("/v1/admin/users/{id}", patch(admin::set_disabled))
        .route("/v1/admin/users/{id}/unlock", post(admin::unlock))
        .route("/v1/me/audit-log", get(me::audit_log))
        .route("/v1/me/password", post(me::change_password))
        .route("/v1/me/2fa", delete(two_factor::disable))
        .route("/v1/me/2fa/totp", post(two_factor::start))
        .route("/v1/me/2fa/totp/confirm", post(two_factor::confirm))
        .route(
            "/v1/me/2fa/backup-codes",
            post(two_factor::regenerate_backup_codes),
        )
        .route("/v1/me/trusted-devices", get(two_factor::trusted_devices))
        .route(
            "/v1/me/trusted-devices/{id}",
            delete(two_factor::revoke_trusted_device),
        )
        .route(
            "/v1/me/sessions",
            get(me::sessions).delete(me::revoke_other_sessions),
        )
        .route("/v1/me/sessions/{id}", delete(me::revoke_session))
        .route(
            "/v1/me/identities",
            get(me::identities).post(me::link_identity),
        )
        .route("/v1/me/identities/{id}", delete(me::unlink_identity))
        .route_layer(from_fn_with_state(
            state.clone(),
            limits::accounts::limit_accounts,
        ));
    let guarded = Router::new()
        .merge(auth)
        .merge(keyed)
        .merge(accounts)
        .route("/", get(pages::landing))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/static/{name}", get(assets::asset))
        .route("/v1/auth/logout", post(auth::logout))
        .route("/security", get(pages::security::security_page))
        .route("/security/password", post(pages::security::password_submit))
        .route("/security/identities", post(pages::security::link_submit))
        .route(
            "/security/identities/{id}/unlink",
            post(pages::security::unlink_submit),
        )
        .route(
            "/security/sessions/revoke-others",
            post(pages::security::revoke_others_submit),
        )
        .route(
            "/security/sessions/{id}/revoke",
            post(pages::security::revoke_submit),
        )
        .route("/signout", post(pages::security::signout_submit))
        .route("/team", get(pages::team::team_page))
        .route("/team/members/{id}/role", post(pages::team::role_submit))
        .route(
            "/team/members/{id}/remove",
            post(pages::team::remove_submit),
        )
        .route("/team/invitations", post(pages::team::invite_submit))
        .route(
            "/team/invitations/{id}/revoke",
            post(pages::team::revoke_invitation_submit),
        )
        .route("/team/transfer", post(pages::team::transfer_submit))
        .route(
            "/invitations/accept",
            get(pages::team::accept_page).post(pages::team::accept_submit),
        )
        .route(
            "/api-keys",
            get(pages::team::keys_page).post(pages::team::create_key_submit),
        )
        .route(
            "/api-keys/{id}/revoke",
            post(pages::team::revoke_key_submit),
        )
        .route(
            "/accounts",
            get(pages::mail_accounts::page).post(pages::mail_accounts::create_submit),
        )
        .route(
            "/accounts/google",
            post(pages::mail_accounts::google_submit),
        )
        .route(
            "/accounts/{id}/reconnect",
            post(pages::mail_accounts::reconnect_submit),
        )
        .route("/emails", get(pages::emails::page))
        .route("/emails/test", post(pages::emails::test_submit))
        .route(
            "/emails/webhooks",
            get(pages::webhooks::page).post(pages::webhooks::create_submit),
        )
        .route("/emails/webhooks/{id}", get(pages::webhooks::detail))
        .route(
            "/emails/webhooks/{id}/test",
            post(pages::webhooks::test_submit),
        )
        .route(
            "/emails/webhooks/{id}/enabled",
            post(pages::webhooks::enabled_submit),
        )
        .route(
            "/emails/webhooks/{id}/delete",
            post(pages::webhooks::delete_submit),
        )
        .route("/emails/suppressions", post(pages::emails::suppress_submit))
        .route(
            "/emails/suppressions/remove",
            post(pages::emails::unsuppress_submit),
        )
        .route("/emails/{id}", get(pages::emails::detail))
        .route(
            "/accounts/{id}/test",
            post(pages::mail_accounts::test_submit),
        )
        .route(
            "/accounts/{id}/disconnect",
            post(pages::mail_accounts::disconnect_submit),
        )
        .route("/usage", get(pages::team::usage_page))
        .route(
            "/verification",
            get(pages::verify::check_page).post(pages::verify::check_submit),
        )
        .route(
            "/verification/jobs",
            get(pages::verify::jobs_page).post(pages::verify::jobs_submit),
        )
        .route("/verification/log", get(pages::verify::log_page))
        .route("/admin", get(pages::team::admin_page))
        .route("/admin/orgs/{id}/plan", post(pages::team::plan_submit))
        .route(
            "/admin/users/{id}/disabled",
            post(pages::team::disabled_submit),
        )
        .route("/admin/users/{id}/unlock", post(pages::team::unlock_submit))
        .route("/security/delete", post(pages::security::delete_submit))
        .route("/security/2fa/setup", post(pages::two_factor::setup_submit))
        .route(
            "/security/2fa/confirm",
            post(pages::two_factor::confirm_submit),
        )
        .route(
            "/security/2fa/backup-codes",
            post(pages::two_factor::backup_codes_submit),
        )
        .route(
            "/security/2fa/disable",
            post(pages::two_factor::disable_submit),
        )
        .route(
            "/security/trusted-devices/{id}/revoke",
            post(pages::two_factor::forget_device_submit),
        )
        .route_layer(from_fn_with_state(
            state.clone(),
            principal::guard_browser_requests,
        ));
    Router::new()
        .merge(guarded)
        // Browsers send violation reports on their own, with whatever headers they choose.
        .route(CSP_REPORT_PATH, post(csp_report::receive))
        .route("/v1/auth/verify-email", moved_to("/v1/auth/confirm-email"))
        .route("/verify", moved_to("/confirm"))
        .route("/verify/resend", moved_to("/confirm/resend"))
        .fallback(|| async { crate::ApiError::not_found() })
        // Every route above, and the fallback; a route allowed larger bodies is merged after
        // this, with a limit layer of its own.
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT_BYTES))
        .merge(uploads)
}

/// Routes API keys may call, as `keyed` are, with a body limit of their own.
fn keyed_with_body_limit(
    state: &AppState,
    routes: Router<AppState>,
    limit: usize,
) -> Router<AppState> {
    routes
        .route_layer(from_fn_with_state(
            state.clone(),
            limits::keys::limit_api_keys,
        ))
        .route_layer(from_fn_with_state(
            state.clone(),
            principal::guard_browser_requests,
        ))
        .layer(RequestBodyLimitLayer::new(limit))
}

/// A path that moved: 308 to its new place with the same query. Unlike 301, a 308 keeps the
/// method and the body, so a client's POST arrives whole. The sign-up's confirmation moved
/// from "verify" (which now means address verification only); the old paths answer this for
/// a release.
fn moved_to(to: &'static str) -> MethodRouter<AppState> {
    any(move |uri: Uri| async move {
        let location = match uri.query() {
            Some(query) => format!("{to}?{query}"),
            None => to.to_owned(),
        };
        (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
    })
}
