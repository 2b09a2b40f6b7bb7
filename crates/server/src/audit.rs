//! Writing the audit log (docs/security.md#audit-events): every entry carries the request's id,
//! client IP and user agent, taken once from the request by the edge
//! ([`crate::edge::context`]) as an [`AuditTrail`].

use mailroom_core::RequestId;
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_storage::Database;
use mailroom_storage::accounts::User;
use time::OffsetDateTime;

use crate::error::DomainError;

/// The request's part of every audit entry it writes.
#[derive(Clone)]
pub struct AuditTrail {
    ip: String,
    user_agent: Option<String>,
    request_id: Option<RequestId>,
}

impl AuditTrail {
    pub fn new(ip: String, user_agent: Option<String>, request_id: Option<RequestId>) -> Self {
        Self {
            ip,
            user_agent,
            request_id,
        }
    }
}

impl AuditTrail {
    /// An event with this request's particulars; callers fill in who and what with struct
    /// update syntax.
    pub fn event(&self, action: Action, outcome: Outcome) -> AuditEvent {
        AuditEvent {
            org_id: None,
            actor: None,
            action,
            outcome,
            target: None,
            subject: None,
            ip: Some(self.ip.clone()),
            user_agent: self.user_agent.clone(),
            session_id: None,
            api_key_id: None,
            request_id: self.request_id,
        }
    }
}

impl AuditTrail {
    /// The client's address, as the edge determined it.
    pub fn ip(&self) -> &str {
        &self.ip
    }

    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// An event of `user`'s, in their organization; callers add what else they know with
    /// struct update syntax.
    pub fn by_user(&self, user: &User, action: Action, outcome: Outcome) -> AuditEvent {
        AuditEvent {
            org_id: Some(user.org_id),
            actor: Some(user.id),
            ..self.event(action, outcome)
        }
    }
}

/// Appends the event. A security event that cannot be recorded fails its request.
pub async fn record(database: &Database, event: AuditEvent) -> Result<(), DomainError> {
    Ok(database
        .audit()
        .append_audit(&event, OffsetDateTime::now_utc())
        .await?)
}
