//! The verification pages: check one address (the result told in words, the details below),
//! bulk jobs (upload, live progress, downloads), and the log with its filters. Usage against
//! the quota is `/usage`.

use axum::extract::{Extension, Form, Query, State};
use axum::response::{IntoResponse, Response};
use mailroom_core::{ApiKeyId, VerificationId};
use maud::{Markup, html};
use serde::Deserialize;

use crate::application::actor::Caller;
use crate::application::{keys, verify};
use crate::extract::Principal;
use crate::listing::next_cursor;
use crate::pages::{Notice, NoticeQuery, SignedIn, after, titled, when};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::views::CspNonce;
use mailroom_storage::verifications::LogQuery;
use mailroom_verify::{Reason, Verdict, Verification};

const LOG_PAGE: i64 = 50;
const LISTED_JOBS: i64 = 20;

/// The links between the verification pages.
fn tabs() -> Markup {
    html! {
        nav.tabs aria-label="Verification" {
            a href="/verification" { "Check an address" } " "
            a href="/verification/jobs" { "Bulk jobs" } " "
            a href="/verification/log" { "Log" } " "
            a href="/usage" { "Usage" }
        }
    }
}

#[derive(Deserialize)]
pub struct CheckForm {
    email: String,
    /// A checkbox: present when ticked.
    smtp: Option<String>,
}

/// `GET /verification`
pub async fn check_page(Extension(nonce): Extension<CspNonce>, _signed_in: SignedIn) -> Response {
    titled(
        &nonce,
        "Verify an address",
        None,
        None,
        check_form("", true),
    )
}

/// `POST /verification`
pub async fn check_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    SignedIn(principal): SignedIn,
    Form(form): Form<CheckForm>,
) -> Response {
    let smtp = form.smtp.is_some();
    let email = form.email.trim().to_owned();
    let caller = Caller::Account(principal);
    match verify::check(&state, &caller, vec![email.clone()], smtp, "email").await {
        Ok(mut answers) => match answers.pop() {
            Some(answer) => titled(
                &nonce,
                "Verify an address",
                None,
                None,
                html! { (check_form(&email, smtp)) (explained(&answer.result)) },
            ),
            None => ApiError::internal(anyhow::anyhow!("no result")).into_response(),
        },
        Err(error) => titled(
            &nonce,
            "Verify an address",
            None,
            Some(&ApiError::from(error)),
            check_form(&email, smtp),
        ),
    }
}

fn check_form(email: &str, smtp: bool) -> Markup {
    html! {
        (tabs())
        form #verify-one method="post" action="/verification" {
            label for="verify-email" { "Email address" }
            input #verify-email type="text" name="email" value=(email) required autocomplete="off" spellcheck="false";
            label.checkbox {
                input type="checkbox" name="smtp" value="on" checked[smtp];
                " Ask the mail server (SMTP probe)"
            }
            button type="submit" { "Verify" }
        }
    }
}

/// The verdict in a sentence, each reason in words, then every sub-result.
fn explained(result: &Verification) -> Markup {
    let headline = match result.verdict {
        Verdict::Deliverable => "Deliverable: mail sent to this address should arrive.",
        Verdict::Undeliverable => "Undeliverable: mail sent to this address would bounce.",
        Verdict::Risky => "Risky: the address may work, but sending to it carries a risk.",
        Verdict::Unknown => "Unknown: what would happen to mail sent here could not be learned.",
    };
    let domain = result.syntax.domain.as_deref().unwrap_or("the domain");
    html! {
        section #verify-result aria-labelledby="verdict" data-verdict=(result.verdict.as_str()) {
            h2 #verdict { (headline) }
            @if result.cached { p.hint { "Answered from a check made " (when(result.checked_at)) "; not charged again." } }
            ul.reasons {
                @for reason in &result.reasons { li { (in_words(*reason, result, domain)) } }
                @if result.reasons.is_empty() { li { "The mail server for " (domain) " accepted this address." } }
            }
            table {
                tbody {
                    tr { th { "Address" } td { (result.normalized.as_deref().unwrap_or(&result.email)) } }
                    tr { th { "Syntax" } td { @if result.syntax.valid { "valid" } @else { "invalid" } } }
                    tr { th { "Mail hosts" } td {
                        @for host in &result.dns.mx { (host.host) " (" (host.preference) ") " }
                        @if result.dns.mx.is_empty() { "none" }
                    } }
                    tr { th { "Disposable" } td { (yes_no(result.classification.disposable)) } }
                    tr { th { "Free provider" } td { (yes_no(result.classification.free_provider)) } }
                    tr { th { "Role account" } td { (yes_no(result.classification.role_account)) } }
                    tr { th { "Mail server said" } td {
                        @match (&result.smtp.code, &result.smtp.message) {
                            (Some(code), Some(message)) => {
                                code { (code) " " (result.smtp.enhanced_code.as_deref().unwrap_or("")) " " (message) }
                            }
                            _ => "nothing (not asked)",
                        }
                    } }
                    tr { th { "Catch-all domain" } td {
                        (result.smtp.catch_all.map_or("not known", yes_no))
                    } }
                }
            }
        }
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn in_words(reason: Reason, result: &Verification, domain: &str) -> String {
    match reason {
        Reason::InvalidSyntax => format!(
            "This is not a valid email address: {}.",
            result
                .syntax
                .reason
                .map_or_else(|| "it cannot be read".to_owned(), |why| why.to_string())
        ),
        Reason::DomainNotFound => format!("The domain {domain} does not exist."),
        Reason::NoMailServer => format!("The domain {domain} has no mail server."),
        Reason::NullMx => format!("The domain {domain} says it accepts no mail."),
        Reason::DnsFailure => format!("The DNS lookup of {domain} failed; try again later."),
        Reason::Disposable => {
            "The address belongs to a disposable (throwaway) email service.".into()
        }
        Reason::RoleAccount => {
            "It is a role address (such as info@ or sales@), read by a team or by no one.".into()
        }
        Reason::TypoSuggested => format!(
            "The domain looks like a typo: did you mean {}?",
            result
                .classification
                .suggestion
                .as_deref()
                .unwrap_or("another")
        ),
        Reason::MailboxMissing => "The mail server says there is no such mailbox.".into(),
        Reason::MailboxFull => "The mailbox is full.".into(),
        Reason::MailboxDisabled => "The mailbox is disabled.".into(),
        Reason::CatchAll => {
            format!("{domain} accepts mail for any address, so this one may not exist.")
        }
        Reason::Greylisted => "The mail server asked to be asked again later (greylisting).".into(),
        Reason::SmtpTemporaryFailure => "The mail server failed for now; try again later.".into(),
        Reason::SmtpBlocked => "The mail server would not answer, by its policy.".into(),
        Reason::SmtpUnreachable => "The mail server could not be reached.".into(),
        Reason::SmtpTimeout => "The mail server did not answer in time.".into(),
        Reason::SmtpThrottled => {
            "The mail server took no more of our sessions, however long we waited.".into()
        }
        Reason::SmtpRejected => "The mail server refused the address without saying why.".into(),
        Reason::Smtputf8Unsupported => {
            "The mail server cannot take addresses with non-ASCII characters before the @.".into()
        }
        Reason::CatchAllUnknown => {
            "The mail server accepted it, but whether it accepts any address at all is unknown."
                .into()
        }
        Reason::ProviderHidesMailboxes => {
            "The mail provider accepts any address when asked, so whether this one exists \
             cannot be told."
                .into()
        }
        Reason::MailHostNotPublic => {
            "The mail server is on a private network, which is not probed.".into()
        }
        Reason::SmtpNotChecked => "The mail server was not asked.".into(),
    }
}

#[derive(Deserialize)]
pub struct BulkForm {
    /// One address per line.
    emails: String,
    smtp: Option<String>,
}

/// `GET /verification/jobs`: upload, and the jobs with their progress.
pub async fn jobs_page(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    SignedIn(principal): SignedIn,
    Query(query): Query<NoticeQuery>,
) -> Response {
    render_jobs(&state, &nonce, &principal, query.text(), None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /verification/jobs`: the addresses typed or pasted into the page (the script sends
/// a chosen CSV file to the API instead).
pub async fn jobs_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    SignedIn(principal): SignedIn,
    Form(form): Form<BulkForm>,
) -> Response {
    let emails: Vec<String> = form
        .emails
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    let caller = Caller::Account(principal.clone());
    let outcome = verify::queue(&state, &caller, emails, form.smtp.is_some()).await;
    after(
        "/verification/jobs",
        outcome.map(|_| Notice::JobQueued),
        async |error| render_jobs(&state, &nonce, &principal, None, error).await,
    )
    .await
}

async fn render_jobs(
    state: &AppState,
    nonce: &CspNonce,
    principal: &Principal,
    notice: Option<&str>,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let caller = Caller::Account(principal.clone());
    let jobs = verify::jobs(state, &caller, LISTED_JOBS).await?;
    Ok(titled(
        nonce,
        "Bulk verification",
        notice,
        error,
        html! {
            (tabs())
            form #bulk-upload method="post" action="/verification/jobs" {
                label for="bulk-file" { "CSV file with an " code { "email" } " column" }
                input #bulk-file type="file" name="file" accept=".csv,text/csv";
                label for="bulk-emails" { "Or addresses, one per line" }
                textarea #bulk-emails name="emails" rows="6" spellcheck="false" {}
                label.checkbox {
                    input type="checkbox" name="smtp" value="on" checked;
                    " Ask the mail servers (SMTP probe)"
                }
                button type="submit" { "Start the job" }
            }
            table #jobs {
                thead { tr { th { "Started" } th { "Status" } th { "Progress" } th { "Verdicts" } th { "Results" } } }
                tbody {
                    @for job in &jobs {
                        tr data-job=(job.id) data-status=(job.status) {
                            td { (when(job.created_at())) }
                            td.status { (job.status) @if let Some(error) = &job.error { " (" (error) ")" } }
                            td {
                                progress value=(job.done) max=(job.total) { (job.done) " of " (job.total) }
                                " " span.done { (job.done) " of " (job.total) }
                            }
                            td.counts {
                                (job.deliverable) " deliverable, " (job.undeliverable) " undeliverable, "
                                (job.risky) " risky, " (job.unknown) " unknown"
                            }
                            td {
                                a href={ "/v1/verify/jobs/" (job.id) "/results?format=csv" } download { "CSV" }
                                " "
                                a href={ "/v1/verify/jobs/" (job.id) "/results?format=json" } download { "JSON" }
                            }
                        }
                    }
                }
            }
            @if jobs.is_empty() { p.hint { "No jobs yet." } }
        },
    ))
}

#[derive(Deserialize)]
pub struct LogFilter {
    verdict: Option<String>,
    api_key_id: Option<String>,
    cursor: Option<VerificationId>,
}

/// `GET /verification/log`: newest first, filtered by verdict and key.
pub async fn log_page(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    SignedIn(principal): SignedIn,
    Query(filter): Query<LogFilter>,
) -> Response {
    let org_id = principal.user.org_id;
    let rendered = async {
        let verdict = filter
            .verdict
            .as_deref()
            .and_then(Verdict::parse)
            .map(|verdict| verdict.as_str().to_owned());
        let api_key_id = filter
            .api_key_id
            .as_deref()
            .and_then(|id| id.parse::<ApiKeyId>().ok());
        let query = LogQuery {
            before: filter.cursor,
            verdict: verdict.clone(),
            api_key_id,
            limit: LOG_PAGE,
        };
        let caller = Caller::Account(principal.clone());
        let lines = verify::log(&state, &caller, &query).await?;
        let keys = keys::list(&state, org_id).await?;
        let next = next_cursor(
            &lines,
            usize::try_from(LOG_PAGE).unwrap_or(usize::MAX),
            |line| line.id,
        );
        let older = next.map(|cursor| {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("cursor", &cursor.to_string());
            if let Some(verdict) = &verdict {
                query.append_pair("verdict", verdict);
            }
            if let Some(key) = api_key_id {
                query.append_pair("api_key_id", &key.to_string());
            }
            format!("/verification/log?{}", query.finish())
        });
        Ok::<_, ApiError>(titled(
            &nonce,
            "Verification log",
            None,
            None,
            html! {
                (tabs())
                form #log-filter method="get" action="/verification/log" {
                    label for="log-verdict" { "Verdict" }
                    select #log-verdict name="verdict" {
                        option value="" { "any" }
                        @for choice in Verdict::ALL {
                            option value=(choice.as_str()) selected[verdict.as_deref() == Some(choice.as_str())] { (choice.as_str()) }
                        }
                    }
                    label for="log-key" { "API key" }
                    select #log-key name="api_key_id" {
                        option value="" { "any" }
                        @for key in &keys {
                            option value=(key.id) selected[api_key_id == Some(key.id)] { (key.name) }
                        }
                    }
                    button.secondary type="submit" { "Filter" }
                }
                table #verification-log {
                    thead { tr { th { "When" } th { "Address" } th { "Verdict" } th { "By" } } }
                    tbody {
                        @for line in &lines {
                            tr {
                                td { (when(line.created_at)) }
                                td { (line.address) }
                                td { (line.verdict) @if line.cached { " (cached)" } }
                                td {
                                    @if let Some(key) = line.api_key_id {
                                        "key " (keys.iter().find(|k| k.id == key).map_or("(revoked)", |k| k.name.as_str()))
                                    } @else { "you or a teammate" }
                                }
                            }
                        }
                    }
                }
                @if lines.is_empty() { p.hint { "Nothing logged yet." } }
                @if let Some(older) = older { p { a href=(older) { "Older" } } }
            },
        ))
    };
    rendered.await.unwrap_or_else(IntoResponse::into_response)
}
