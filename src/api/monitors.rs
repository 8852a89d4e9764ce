//! `/api/v1/monitors`: synthetic HTTP monitors and push monitors (SPEC 7): create, list,
//! show, edit, delete, their recorded checks and their SLA, and a push monitor's ping URL
//! (reveal, rotate). Every change tells the scheduler. The monitor's, check's and SLA's wire
//! shapes are defined here.

use serde_json::{Value, json};

use super::fields::{self, Object};
use super::{Api, ApiError, Page, Reply, Req, Result};
use crate::event::{SEVERITIES, Severity};
use crate::monitor::rules::{self, Expected, Kind};
use crate::sla;
use crate::store::{CheckRow, MonitorPatch, MonitorRow, MonitorSettings, Refusal};
use crate::time::{now_ms, rfc3339, rfc3339_ms};

pub(super) const KEYS: [&str; 16] = [
    "name",
    "kind",
    "grace_secs",
    "url",
    "method",
    "interval_secs",
    "timeout_ms",
    "expected_status",
    "failures_before_down",
    "successes_before_up",
    "component_id",
    "auto_incident",
    "severity",
    "sla_target",
    "sla_window_days",
    "enabled",
];

/// The fields `rotate-ping-url` takes: none (an action route's body is `{}`).
pub(super) const ROTATE_PING_KEYS: &[&str] = &[];

fn find(api: &Api, id: &str) -> Result<MonitorRow> {
    api.store
        .monitor(id)?
        .ok_or_else(|| ApiError::not_found("monitor"))
}

/// A monitor as the API shows it. A push monitor has no `url`, `method`, `timeout_ms` or
/// `expected_status` (null), and an HTTP monitor no `grace_secs`; the ping URL is a secret
/// and is added only by create, reveal and rotate (`with_ping_url`).
pub fn render(m: &MonitorRow) -> Value {
    let s = &m.settings;
    let http = s.kind == Kind::Http;
    json!({
        "id": m.id,
        "name": s.name,
        "kind": s.kind.as_str(),
        "url": http.then_some(&s.url),
        "method": http.then_some(&s.method),
        "interval_secs": sla::number(s.interval_ms as f64 / 1000.0),
        "grace_secs": (!http).then_some(s.grace_ms / 1000),
        "timeout_ms": http.then_some(s.timeout_ms),
        "expected_status": http.then_some(&s.expected_status),
        "failures_before_down": s.failures_before_down,
        "successes_before_up": s.successes_before_up,
        "component_id": s.component_id,
        "auto_incident": s.auto_incident,
        "severity": s.severity.as_str(),
        "sla_target": s.sla_target.map(sla::number),
        "sla_window_days": sla::number(s.sla_window_days),
        "enabled": s.enabled,
        "status": m.state.status.as_str(),
        "consecutive_failures": m.state.failures,
        "consecutive_successes": m.state.successes,
        "incident_id": m.incident_id,
        "last_checked_at": m.last_checked_at.map(rfc3339_ms),
        "created_at": rfc3339(m.created_at),
        "updated_at": rfc3339(m.updated_at),
    })
}

/// The URL a push monitor is pinged at, on the host and scheme the request came through
/// (a proxy in front says `X-Forwarded-Proto: https`), since the appliance does not know
/// the name it is reached by.
fn ping_url(api: &Api, req: &Req, token: &str) -> String {
    let host = req
        .header("host")
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map_or_else(|| api.config.server.listen.to_string(), str::to_string);
    let scheme = match req.header("x-forwarded-proto") {
        Some(p) if p.trim().eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}/ping/{token}")
}

/// `render(m)` with its `ping_url`, for the answers that may show the secret.
fn with_ping_url(api: &Api, req: &Req, m: &MonitorRow) -> Value {
    let mut v = render(m);
    if let Some(token) = &m.push_token {
        v["ping_url"] = Value::from(ping_url(api, req, token));
    }
    v
}

fn render_check(c: &CheckRow) -> Value {
    json!({
        "at": rfc3339_ms(c.at),
        "ok": c.ok,
        "status_code": c.status_code,
        "response_time_ms": c.response_time_ms,
        "first_byte_ms": c.first_byte_ms,
        "error": c.error,
        "timings": c.timings.as_ref().map(crate::net::Timings::as_json),
    })
}

/// A number, strictly between `min` and `max` or up to `max` inclusive.
fn number(obj: &Object, key: &str, min: f64, max: f64, max_inclusive: bool) -> Result<Option<f64>> {
    let wrong = || {
        let upper = if max_inclusive { "at most" } else { "below" };
        ApiError::field(
            key,
            format!("{key} must be a number above {min} and {upper} {max}"),
        )
    };
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v > min && (v < max || (max_inclusive && v == max)) => Ok(Some(v)),
            _ => Err(wrong()),
        },
        Some(_) => Err(wrong()),
    }
}

/// The monitor fields of a create or a patch, each checked on its own, with the `kind` if
/// one was sent.
fn read(api: &Api, obj: &Object) -> Result<(Option<Kind>, MonitorPatch)> {
    fields::only_keys(obj, &KEYS)?;
    let name = match fields::string(obj, "name")? {
        Some(n) if n.trim().is_empty() || n.len() > rules::MAX_NAME => {
            return Err(ApiError::field(
                "name",
                format!("name must be 1 to {} bytes, not blank", rules::MAX_NAME),
            ));
        }
        other => other.map(str::to_string),
    };
    let url = match fields::string(obj, "url")? {
        Some(u) => {
            crate::endpoint::validate_url(u, &api.config.network.policy)
                .map_err(|m| ApiError::field("url", m))?;
            Some(u.to_string())
        }
        None => None,
    };
    let method = match fields::string(obj, "method")? {
        // Method names are case-sensitive (RFC 9110), and the document lists these two.
        Some(m @ ("GET" | "HEAD")) => Some(m.to_string()),
        Some(_) => return Err(ApiError::field("method", "method must be GET or HEAD")),
        None => None,
    };
    let expected_status = match fields::string(obj, "expected_status")? {
        Some(e) => Some(
            Expected::parse(e)
                .map_err(|m| ApiError::field("expected_status", m))?
                .to_string(),
        ),
        None => None,
    };
    let severity = match fields::string(obj, "severity")? {
        Some(s) => Some(Severity::parse(s).ok_or_else(|| {
            ApiError::field(
                "severity",
                format!("severity must be one of {}", SEVERITIES.join(", ")),
            )
        })?),
        None => None,
    };
    let component_id = match obj.get("component_id") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => {
            return Err(ApiError::field(
                "component_id",
                "component_id must be a component's id or null",
            ));
        }
    };
    let kind = match fields::string(obj, "kind")? {
        Some(k) => Some(
            Kind::parse(k)
                .ok_or_else(|| ApiError::field("kind", "kind must be \"http\" or \"push\""))?,
        ),
        None => None,
    };
    let sla_target = match obj.get("sla_target") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(_) => Some(number(obj, "sla_target", 0.0, 100.0, false)?),
    };
    Ok(MonitorPatch {
        name,
        url,
        method,
        interval_ms: fields::integer(obj, "interval_secs", 1, rules::MAX_INTERVAL_SECS)?
            .map(|s| s * 1000),
        timeout_ms: fields::integer(obj, "timeout_ms", 1, rules::MAX_TIMEOUT_MS)?,
        expected_status,
        failures_before_down: fields::integer(
            obj,
            "failures_before_down",
            1,
            rules::MAX_THRESHOLD,
        )?,
        successes_before_up: fields::integer(obj, "successes_before_up", 1, rules::MAX_THRESHOLD)?,
        component_id,
        auto_incident: fields::boolean(obj, "auto_incident")?,
        severity,
        sla_target,
        sla_window_days: number(obj, "sla_window_days", 0.0, rules::MAX_WINDOW_DAYS, true)?,
        enabled: fields::boolean(obj, "enabled")?,
        grace_ms: fields::integer(obj, "grace_secs", 0, rules::MAX_GRACE_SECS)?.map(|s| s * 1000),
    })
    .map(|p| (kind, p))
}

/// The rule between fields, on the settings a create or patch would leave.
fn cross_check(s: &MonitorSettings) -> std::result::Result<(), Refusal> {
    match s.kind {
        Kind::Http => {
            rules::check_timeout(s.timeout_ms, s.interval_ms).map_err(|message| Refusal::Invalid {
                field: "timeout_ms".into(),
                message,
            })
        }
        Kind::Push => Ok(()),
    }
}

/// The fields only one kind of monitor takes, refused when sent for the other: a push
/// monitor is told its state by pings, so it has nothing to request and no timeout.
fn kind_fields(kind: Kind, obj: &Object) -> Result<()> {
    let foreign: &[&str] = match kind {
        Kind::Http => &["grace_secs"],
        Kind::Push => &["url", "method", "timeout_ms", "expected_status"],
    };
    match foreign
        .iter()
        .find(|k| obj.get(**k).is_some_and(|v| !v.is_null()))
    {
        Some(key) => Err(ApiError::field(
            *key,
            format!("{key} does not apply to a {} monitor", kind.as_str()),
        )),
        None => Ok(()),
    }
}

fn refused(r: Refusal) -> ApiError {
    match r {
        Refusal::UnknownComponent { field } => {
            ApiError::field(&field, format!("{field} names no component"))
        }
        Refusal::Invalid { field, message } => ApiError::field(field, message),
        _ => ApiError::conflict("the monitor cannot change"),
    }
}

pub fn create(api: &Api, req: &Req) -> Result<Reply> {
    let obj = fields::object(req.body.as_ref())?;
    let (kind, p) = read(api, obj)?;
    let kind = kind.unwrap_or(Kind::Http);
    kind_fields(kind, obj)?;
    let required = |present: bool, key: &str| {
        if present {
            Ok(())
        } else {
            Err(ApiError::field(key, format!("{key} is required")))
        }
    };
    required(p.name.is_some(), "name")?;
    required(kind == Kind::Push || p.url.is_some(), "url")?;
    required(p.interval_ms.is_some(), "interval_secs")?;
    required(kind == Kind::Push || p.timeout_ms.is_some(), "timeout_ms")?;
    let s = MonitorSettings {
        name: p.name.unwrap_or_default(),
        url: p.url.unwrap_or_default(),
        method: p.method.unwrap_or_else(|| "GET".into()),
        interval_ms: p.interval_ms.unwrap_or_default(),
        timeout_ms: p.timeout_ms.unwrap_or_default(),
        expected_status: p
            .expected_status
            .unwrap_or_else(|| Expected::DEFAULT.into()),
        failures_before_down: p.failures_before_down.unwrap_or(3),
        successes_before_up: p.successes_before_up.unwrap_or(1),
        component_id: p.component_id.flatten(),
        auto_incident: p.auto_incident.unwrap_or(true),
        severity: p.severity.unwrap_or(Severity::Major),
        sla_target: p.sla_target.flatten(),
        sla_window_days: p.sla_window_days.unwrap_or(rules::DEFAULT_WINDOW_DAYS),
        enabled: p.enabled.unwrap_or(true),
        kind,
        grace_ms: match kind {
            Kind::Http => 0,
            Kind::Push => p.grace_ms.unwrap_or(rules::DEFAULT_GRACE_SECS * 1000),
        },
    };
    cross_check(&s).map_err(refused)?;
    let token = (kind == Kind::Push).then(crate::secret::generate_ping_token);
    let row = api
        .store
        .create_monitor(&crate::id::new("mon"), &s, token.as_deref(), now_ms())?
        .map_err(refused)?;
    api.monitors.changed(row.seq);
    log::info!("monitor {} ({}) created", row.id, kind.as_str());
    Ok(Reply::json(201, &with_ping_url(api, req, &row)))
}

pub fn list(api: &Api, req: &Req) -> Result<Reply> {
    let page = Page::from(req)?;
    let rows = api.store.list_monitors(page.cursor, page.limit + 1)?;
    page.wrap(rows, |r| r.seq, |r| Ok(render(r)))
}

pub fn get(api: &Api, id: &str) -> Result<Reply> {
    Ok(Reply::json(200, &render(&find(api, id)?)))
}

pub fn patch(api: &Api, id: &str, req: &Req) -> Result<Reply> {
    let obj = fields::object(req.body.as_ref())?;
    let (kind, patch) = read(api, obj)?;
    let current = find(api, id)?;
    let current_kind = current.settings.kind;
    if kind.is_some_and(|k| k != current_kind) {
        return Err(ApiError::field(
            "kind",
            "kind cannot change; create a monitor of the other kind instead",
        ));
    }
    kind_fields(current_kind, obj)?;
    let row = api
        .store
        .update_monitor(id, &patch, now_ms(), cross_check)?
        .ok_or_else(|| ApiError::not_found("monitor"))?
        .map_err(refused)?;
    api.monitors.changed(row.seq);
    if let Some(enabled) = patch.enabled {
        log::info!(
            "monitor {} {}",
            row.id,
            if enabled { "enabled" } else { "disabled" }
        );
    }
    Ok(Reply::json(200, &render(&row)))
}

pub fn delete(api: &Api, id: &str) -> Result<Reply> {
    let seq = api
        .store
        .delete_monitor(id)?
        .ok_or_else(|| ApiError::not_found("monitor"))?;
    api.monitors.changed(seq);
    log::info!("monitor {id} deleted");
    Ok(Reply::empty(204))
}

/// A push monitor of that id: 404 when there is no monitor of that id, 409 when it is an
/// HTTP monitor (it exists, and has no ping URL: a 404 would say the monitor is gone).
fn find_push(api: &Api, id: &str) -> Result<MonitorRow> {
    match find(api, id)? {
        m if m.settings.kind == Kind::Push && m.push_token.is_some() => Ok(m),
        m => Err(ApiError::conflict(format!(
            "monitor {} is an HTTP monitor; only a push monitor has a ping URL",
            m.id
        ))),
    }
}

/// `GET /api/v1/monitors/{id}/ping-url`: reveal a push monitor's ping URL.
pub fn reveal_ping_url(api: &Api, id: &str, req: &Req) -> Result<Reply> {
    let m = find_push(api, id)?;
    let token = m.push_token.as_deref().unwrap_or_default();
    Ok(Reply::json(
        200,
        &json!({"monitor_id": m.id, "ping_url": ping_url(api, req, token)}),
    ))
}

/// `POST /api/v1/monitors/{id}/rotate-ping-url`: a new token; the old URL is 404 at once,
/// since a ping URL that leaked should stop working when it is replaced.
pub fn rotate_ping_url(api: &Api, id: &str, req: &Req) -> Result<Reply> {
    fields::only_keys(fields::object(req.body.as_ref())?, ROTATE_PING_KEYS)?;
    find_push(api, id)?;
    let token = crate::secret::generate_ping_token();
    let m = api
        .store
        .rotate_push_token(id, &token, now_ms())?
        .ok_or_else(|| ApiError::not_found("push monitor"))?;
    log::info!("monitor {}: ping URL rotated", m.id);
    Ok(Reply::json(
        200,
        &json!({"monitor_id": m.id, "ping_url": ping_url(api, req, &token)}),
    ))
}

pub fn checks(api: &Api, id: &str, req: &Req) -> Result<Reply> {
    let page = Page::from(req)?;
    let m = find(api, id)?;
    let rows = api.store.list_checks(m.seq, page.cursor, page.limit + 1)?;
    page.wrap(rows, |r| r.seq, |r| Ok(render_check(r)))
}

fn round(x: f64, places: i32) -> Value {
    let f = 10f64.powi(places);
    sla::number((x * f).round() / f)
}

pub fn sla(api: &Api, id: &str) -> Result<Reply> {
    let m = find(api, id)?;
    let s = &m.settings;
    let now = now_ms();
    let h = crate::monitor::record::sla_history(&api.store, m.seq, s.sla_window_days, now)?;
    let mut v = json!({
        "monitor_id": m.id,
        "sla_target": s.sla_target.map(sla::number),
        "window_days": sla::number(s.sla_window_days),
        "checks": h.window.checks,
        "failed_checks": h.window.failures,
        "current_uptime": h.window.checks.gt(&0).then(|| {
            round((h.window.checks - h.window.failures) as f64 * 100.0 / h.window.checks as f64, 4)
        }),
        "error_budget_secs": Value::Null,
        "error_budget_spent_secs": round(h.spent_secs, 3),
        "error_budget_remaining_secs": Value::Null,
        "error_budget_remaining_pct": Value::Null,
        "failure_ratio_1h": Value::Null,
        "failure_ratio_6h": Value::Null,
        "burn_rate": Value::Null,
        "projected_breach_at": Value::Null,
        "at_risk": false,
        "breached": false,
        "warning_armed": m.arming.armed,
        "horizon_hours": 24,
    });
    if let Some(target) = s.sla_target {
        let a = sla::assess(target, s.sla_window_days, &h);
        v["error_budget_secs"] = round(a.budget_secs, 3);
        v["error_budget_remaining_secs"] = round(a.budget_left_secs.max(0.0), 3);
        v["error_budget_remaining_pct"] = if a.budget_secs > 0.0 {
            round((a.budget_left_secs / a.budget_secs * 100.0).max(0.0), 2)
        } else {
            Value::from(0)
        };
        v["failure_ratio_1h"] = a.ratio_1h.map_or(Value::Null, |r| round(r, 6));
        v["failure_ratio_6h"] = a.ratio_6h.map_or(Value::Null, |r| round(r, 6));
        v["burn_rate"] = a.burn_rate.map_or(Value::Null, |b| round(b, 2));
        v["projected_breach_at"] = a.breach_in_secs.map_or(Value::Null, |secs| {
            Value::from(rfc3339(now + (secs * 1000.0).round() as i64))
        });
        v["at_risk"] = Value::from(a.at_risk);
        v["breached"] = Value::from(a.budget_left_secs <= 0.0);
    }
    Ok(Reply::json(200, &v))
}
