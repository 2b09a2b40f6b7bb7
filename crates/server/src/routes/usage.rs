//! `GET /v1/usage` (docs/security.md#quotas): the organization's quota this month, what is used, what is
//! left, and when it resets. Any member, and any of the organization's keys, may look.

use axum::Json;
use axum::extract::State;
use mailroom_core::usage::{Metric, month_of};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::application::actor::Caller;
use crate::application::verify;
use crate::problem::ApiError;
use crate::state::AppState;

pub async fn usage(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let org_id = caller.org_id();
    let (start, resets_at) = month_of(OffsetDateTime::now_utc());
    let when = |time: OffsetDateTime| time.format(&Rfc3339).unwrap_or_default();
    let mut plan_id = None;
    let mut metrics = Vec::new();
    for metric in [Metric::Verifications, Metric::Emails] {
        let (plan, used) = verify::usage(&state, org_id, metric, start).await?;
        let quota = plan.quota_of(metric);
        metrics.push(json!({
            "metric": metric.as_str(),
            "quota": quota,
            "used": used,
            "remaining": (quota - used).max(0),
            "period_start": when(start),
            "resets_at": when(resets_at),
        }));
        plan_id = Some(plan.id);
    }
    Ok(Json(json!({
        "plan": plan_id,
        "metrics": metrics,
    })))
}
