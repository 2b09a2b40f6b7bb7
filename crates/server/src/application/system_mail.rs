//! mailroom's own mail (codes, invitations, alerts) as work for the queue.

use mailroom_mail::queued::MailMessage;

use crate::state::AppState;
use crate::work_queue::mail_job;

/// Queues a system mail: once this returns, a crash loses it no more, and the runner sends it
/// (tried again on failure). A mail that cannot be queued is logged, never the request's
/// failure: the change that caused it stands.
pub async fn send(state: &AppState, to: &str, message: MailMessage) {
    match state.database.enqueue(mail_job(to, message)).await {
        Ok(_) => state.queue.wake(),
        Err(error) => tracing::warn!(%error, "system mail could not be queued"),
    }
}
