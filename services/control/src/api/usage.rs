//! A tenant's usage per UTC hour, as the broker reported it to the store.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use super::tenants::TenantWith;
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::scopes::need;
use crate::store::{self, UsageRow};

/// The range when `from` is absent: the last 24 hours.
pub const DEFAULT_USAGE_RANGE: time::Duration = time::Duration::hours(24);
/// The longest range one request may ask for.
pub const MAX_USAGE_RANGE: time::Duration = time::Duration::days(31);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Start (RFC 3339); taken to the start of its UTC hour. `to` minus 24 hours if absent.
    #[param(example = "2026-11-01T00:00:00Z")]
    from: Option<String>,
    /// End, exclusive (RFC 3339); now if absent. At most 31 days after `from`.
    #[param(example = "2026-11-02T00:00:00Z")]
    to: Option<String>,
}

/// Counters of one hour, or of the whole range.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct UsageCounters {
    /// Time clients of the tenant were connected, summed over clients
    /// (minutes, two decimals).
    connection_minutes: f64,
    messages_in: i64,
    messages_out: i64,
    bytes_in: i64,
    bytes_out: i64,
}

/// One UTC hour of usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageHour {
    /// The start of the UTC hour.
    #[serde(with = "time::serde::rfc3339")]
    hour: OffsetDateTime,
    #[serde(flatten)]
    counters: UsageCounters,
}

/// The tenant's usage in `[from, to)`: the hours with any activity, and totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    #[serde(with = "time::serde::rfc3339")]
    from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    to: OffsetDateTime,
    /// Oldest first; hours without activity are left out.
    hours: Vec<UsageHour>,
    totals: UsageCounters,
}

fn minutes(seconds: i64) -> f64 {
    (seconds as f64 / 60.0 * 100.0).round() / 100.0
}

fn counters(r: &UsageRow) -> UsageCounters {
    UsageCounters {
        connection_minutes: minutes(r.connection_seconds),
        messages_in: r.messages_in,
        messages_out: r.messages_out,
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
    }
}

fn time_param(value: Option<String>, name: &str) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .map(|v| {
            OffsetDateTime::parse(&v, &Rfc3339).map_err(|_| {
                ApiError::Invalid(format!(
                    "`{name}` must be an RFC 3339 time such as 2026-11-01T00:00:00Z"
                ))
            })
        })
        .transpose()
}

/// The tenant's usage per UTC hour, with totals.
///
/// Connection time, messages and bytes in and out, as the broker reports
/// them; the last 24 hours unless `from` and `to` say otherwise.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/usage",
    tag = "usage",
    params(("tid" = String, Path, description = "Tenant id"), UsageQuery),
    responses(
        (status = 200, description = "Usage per hour and totals", body = UsageReport),
        (status = 400, description = "`from` or `to` is not an RFC 3339 time, `from` is not before `to`, \
                                      or the range is longer than 31 days",
         body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn usage(
    State(state): State<AppState>,
    TenantWith { tenant, .. }: TenantWith<need::Usage>,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<UsageReport>, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::Invalid(r.body_text()))?;
    let to = time_param(query.to, "to")?.unwrap_or_else(store::now);
    let from = time_param(query.from, "from")?.unwrap_or(to - DEFAULT_USAGE_RANGE);
    if from >= to {
        return Err(ApiError::Invalid("`from` must be before `to`".into()));
    }
    if to - from > MAX_USAGE_RANGE {
        return Err(ApiError::Invalid(format!(
            "the range may be at most {} days",
            MAX_USAGE_RANGE.whole_days()
        )));
    }
    let from = store::start_of_hour(from);
    let rows = state.store().usage(&tenant.id, from, to).await?;
    let mut total = UsageRow {
        tenant_id: tenant.id.clone(),
        hour: from,
        connection_seconds: 0,
        messages_in: 0,
        messages_out: 0,
        bytes_in: 0,
        bytes_out: 0,
    };
    let hours = rows
        .iter()
        .map(|r| {
            total.connection_seconds += r.connection_seconds;
            total.messages_in += r.messages_in;
            total.messages_out += r.messages_out;
            total.bytes_in += r.bytes_in;
            total.bytes_out += r.bytes_out;
            UsageHour {
                hour: r.hour,
                counters: counters(r),
            }
        })
        .collect();
    Ok(Json(UsageReport {
        from,
        to: to.to_offset(time::UtcOffset::UTC),
        hours,
        totals: counters(&total),
    }))
}
