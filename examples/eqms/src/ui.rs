//! The web UI: pages built in Rust from plain HTML forms, a little inline CSS, no
//! JavaScript. Every value is escaped ([`esc`]). The pages sit behind the same tenant
//! layers as the JSON API (the tenant from the subdomain, the user from the session
//! cookie, membership checked before any handler), and call the same functions the API's
//! handlers do, so the rules are one set.
//!
//! | Page | What |
//! |---|---|
//! | `GET /login`, `POST /login`, `POST /logout` | sign in and out (outside the membership check) |
//! | `GET /capas` | the tenant's CAPAs, the recent-activity widget, the form to open one, the export link |
//! | `GET /capas/{id}` | one CAPA: its signatures, the status form (with a reason), the sign form, attachments, its audit history |
//! | `GET /widgets/activity` | the recent-activity widget (an `iframe` of `/capas`), cached per tenant and user |
//! | `GET /inspector` | the QA lead's view: the trail, its verification, the export |

use std::fmt::Write as _;

use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use futures::TryStreamExt as _;
use serde::Deserialize;
use tenancy_core::TenantContext;
use tenancy_core::http::HttpError as _;

use crate::accounts::{self, SessionToken};
use crate::signatures::{self, Meaning, SignRequest};
use crate::{
    ApiError, Capa, CapaStatus, Eqms, NewCapa, StatusChange, activity, attachments, audit,
};

/// The largest attachment the upload form takes.
pub const ATTACHMENT_LIMIT: usize = 25 * 1024 * 1024;

/// The sign-in pages: under the tenant layer, outside the membership check.
pub(crate) fn sign_in_routes() -> Router<Eqms> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

/// The pages for the tenant's members.
pub(crate) fn member_routes(cache: &tenancy_cache::Cache) -> Router<Eqms> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/capas") }))
        .route("/capas", get(capas_page).post(create))
        .route("/capas/{id}", get(capa_page))
        .route("/capas/{id}/status", post(change_status))
        .route("/capas/{id}/sign", post(sign))
        .route(
            "/capas/{id}/attachments",
            post(upload).layer(DefaultBodyLimit::max(ATTACHMENT_LIMIT)),
        )
        .route(
            "/widgets/activity",
            get(activity_widget).layer(activity::cache_layer(cache)),
        )
        .route("/inspector", get(inspector))
}

/// `value` escaped for HTML text and quoted attributes (tenancy-core's, shared with the
/// audit export's page and the refusal pages).
pub fn esc(value: &str) -> String {
    tenancy_core::escape_html(value)
}

/// `value` percent-encoded as one URL path segment.
fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2430;background:#f5f6f8}\
header{background:#1f3a5f;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center}\
header a{color:#fff}header form{margin-left:auto}main{padding:1em 1.5em;max-width:72em}\
section{background:#fff;border:1px solid #d8dde5;border-radius:6px;padding:.8em 1.2em;margin:1em 0}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3em .5em;border-bottom:1px solid #e4e7ec;vertical-align:top}\
label{display:block;margin:.4em 0}input,select,textarea{font:inherit;padding:.25em}textarea{width:100%}\
.status{font-weight:600;text-transform:uppercase;font-size:.85em}.ok{color:#176b2c}.bad{color:#a31515}\
.error{background:#fde8e8;border-color:#e7a3a3}.sig{background:#eef6ee;border-left:4px solid #176b2c;padding:.4em .8em;margin:.4em 0}\
iframe{border:0;width:100%;height:14em}";

/// A whole page: the header names the tenant and the signed-in user.
fn page(title: &str, ctx: Option<&TenantContext>, inspector: bool, body: &str) -> Html<String> {
    let mut header = String::new();
    if let Some(ctx) = ctx {
        let _ = write!(
            header,
            "<strong>eQMS · {tenant}</strong><a href=\"/capas\">CAPAs</a>",
            tenant = esc(ctx.tenant().as_str())
        );
        if inspector {
            header.push_str("<a href=\"/inspector\">Inspector's view</a>");
        }
        let _ = write!(
            header,
            "<form method=\"post\" action=\"/logout\">Signed in as {name} \
             <button type=\"submit\">Sign out</button></form>",
            name = esc(ctx.actor().display_name())
        );
    } else {
        header.push_str("<strong>eQMS</strong>");
    }
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title><style>{STYLE}</style></head>\
         <body><header>{header}</header><main><h1>{title}</h1>{body}</main></body></html>\n",
        title = esc(title)
    ))
}

/// An error of a page's action, shown as a page with the status of its class.
#[derive(Debug)]
pub(crate) struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        PageError(error)
    }
}

impl From<tenancy_db::Error> for PageError {
    fn from(error: tenancy_db::Error) -> Self {
        PageError(ApiError::Db(error))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let class = self.0.class();
        if class.status().is_server_error() {
            tracing::error!(error = %self.0, "a page failed");
        }
        let body = format!(
            "<section class=\"error\"><p>{}</p><p><a href=\"/capas\">Back to the CAPAs</a></p></section>",
            esc(&class.public_message(&self.0))
        );
        (class.status(), page("Not done", None, false, &body)).into_response()
    }
}

#[derive(Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

fn login_form(ctx: &TenantContext, message: Option<&str>) -> Html<String> {
    let message = message
        .map(|m| format!("<section class=\"error\"><p>{}</p></section>", esc(m)))
        .unwrap_or_default();
    page(
        &format!("Sign in to {}", ctx.tenant()),
        None,
        false,
        &format!(
            "{message}<section><form method=\"post\" action=\"/login\">\
             <label>User id <input name=\"user\" autocomplete=\"username\" required autofocus></label>\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <button type=\"submit\">Sign in</button></form></section>"
        ),
    )
}

async fn login_page(ctx: TenantContext) -> Html<String> {
    login_form(&ctx, None)
}

/// Opens a session for a member of this tenant whose password is right; the same answer
/// for a wrong password, an unknown user and a user of another tenant.
async fn login(
    State(app): State<Eqms>,
    ctx: TenantContext,
    Form(credentials): Form<Credentials>,
) -> Response {
    let actor = app
        .directory
        .check_password(credentials.user.trim(), &credentials.password)
        .filter(|actor| app.directory.is_member_of(actor.id(), ctx.tenant()));
    match actor {
        Some(actor) => {
            let token = app.sessions.open(actor.id(), ctx.tenant());
            let mut response = Redirect::to("/capas").into_response();
            if let Ok(cookie) = accounts::session_cookie(&token).parse() {
                response.headers_mut().insert(SET_COOKIE, cookie);
            }
            response
        }
        None => (
            StatusCode::UNAUTHORIZED,
            login_form(
                &ctx,
                Some("The user id or password is not right for this firm."),
            ),
        )
            .into_response(),
    }
}

async fn logout(State(app): State<Eqms>, session: Option<Extension<SessionToken>>) -> Response {
    if let Some(Extension(token)) = session {
        app.sessions.close(&token);
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(cookie) = accounts::expired_cookie().parse() {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

fn status_label(status: CapaStatus) -> String {
    format!("<span class=\"status\">{}</span>", status.as_str())
}

async fn capas_page(
    State(app): State<Eqms>,
    ctx: TenantContext,
) -> Result<Html<String>, PageError> {
    let capas = crate::capas(&app, &ctx).await?;
    let mut rows = String::new();
    for capa in &capas {
        let _ = write!(
            rows,
            "<tr><td><a href=\"/capas/{id}\">{reference}</a></td><td>{title}</td><td>{status}</td></tr>",
            id = segment(&capa.id),
            reference = esc(&capa.reference),
            title = esc(&capa.title),
            status = status_label(capa.status),
        );
    }
    let body = format!(
        "<section><h2>Your recent activity</h2>\
         <iframe src=\"/widgets/activity\" title=\"Your recent activity\"></iframe></section>\
         <section><h2>CAPAs</h2><table><tr><th>Reference</th><th>Title</th><th>Status</th></tr>{rows}</table>\
         <p><a href=\"/api/audit/export\">Download the inspection export</a> (a tar file; \
         verify it with <code>tenancy-audit-verify</code>)</p></section>\
         <section><h2>Open a CAPA</h2><form method=\"post\" action=\"/capas\">\
         <label>Reference <input name=\"reference\" required placeholder=\"CAPA-2026-101\"></label>\
         <label>Title <input name=\"title\" required size=\"60\"></label>\
         <label>Description <textarea name=\"description\" rows=\"3\"></textarea></label>\
         <button type=\"submit\">Open CAPA</button></form></section>"
    );
    Ok(page("CAPAs", Some(&ctx), is_qa_lead(&app, &ctx), &body))
}

fn is_qa_lead(app: &Eqms, ctx: &TenantContext) -> bool {
    app.directory.is_qa_lead(ctx.actor().id(), ctx.tenant())
}

async fn create(
    State(app): State<Eqms>,
    ctx: TenantContext,
    Form(capa): Form<NewCapa>,
) -> Result<Redirect, PageError> {
    let created = crate::open_capa(&app, &ctx, &capa).await?;
    Ok(Redirect::to(&format!("/capas/{}", segment(&created.id))))
}

fn capa_details(capa: &Capa) -> String {
    format!(
        "<section><table>\
         <tr><th>Reference</th><td>{reference}</td></tr>\
         <tr><th>Title</th><td>{title}</td></tr>\
         <tr><th>Description</th><td>{description}</td></tr>\
         <tr><th>Status</th><td>{status}</td></tr>\
         <tr><th>Opened by</th><td>{created_by}</td></tr></table></section>",
        reference = esc(&capa.reference),
        title = esc(&capa.title),
        description = esc(&capa.description),
        status = status_label(capa.status),
        created_by = esc(&capa.created_by),
    )
}

async fn capa_page(
    State(app): State<Eqms>,
    ctx: TenantContext,
    session: Option<Extension<SessionToken>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Html<String>, PageError> {
    let capa = crate::capa(&app, &ctx, &id).await?;
    let signatures = signatures::signatures_of(&app, &ctx, &capa).await?;
    let files = attachments::attachments_of(&app, &ctx, &id).await?;
    let history = audit::entries(&app, &ctx, &id).await?;
    let id = segment(&capa.id);
    let mut body = capa_details(&capa);

    // 21 CFR 11.50: the printed name, the date and time, and the meaning, on the record.
    if !signatures.is_empty() {
        body.push_str("<section><h2>Electronic signatures</h2>");
        for checked in &signatures {
            let signature = &checked.signature;
            let statement = Meaning::parse(&signature.meaning)
                .map_or(signature.meaning.as_str(), |m| m.statement());
            let (class, verdict) = if checked.verified {
                ("ok", "verified: bound to this record as it is")
            } else {
                ("bad", "NOT VERIFIED: not bound to this record as it is")
            };
            let _ = write!(
                body,
                "<div class=\"sig\"><strong>{statement} {name}</strong> ({signer})<br>\
                 Signed {at} (UTC) · meaning: {meaning}<br><span class=\"{class}\">{verdict}</span></div>",
                statement = esc(statement),
                name = esc(&signature.signer_name),
                signer = esc(&signature.signer_id),
                at = esc(&signature.signed_at),
                meaning = esc(&signature.meaning),
            );
        }
        body.push_str("</section>");
    }

    if capa.status != CapaStatus::Closed {
        let mut options = String::new();
        for status in CapaStatus::ALL {
            if status != capa.status && status != CapaStatus::Closed {
                let _ = write!(
                    options,
                    "<option value=\"{s}\">{s}</option>",
                    s = status.as_str()
                );
            }
        }
        let _ = write!(
            body,
            "<section><h2>Move</h2><form method=\"post\" action=\"/capas/{id}/status\">\
             <label>New status <select name=\"status\">{options}</select></label>\
             <label>Reason <input name=\"reason\" required size=\"60\"></label>\
             <button type=\"submit\">Move</button></form></section>"
        );
    }
    if capa.status == CapaStatus::Approval {
        let first = session
            .as_ref()
            .is_none_or(|Extension(token)| !app.sessions.has_signed(token));
        let user_field = if first {
            "<label>User id <input name=\"user\" required autocomplete=\"username\"></label>"
        } else {
            ""
        };
        let mut meanings = String::new();
        for meaning in Meaning::ALL {
            let _ = write!(
                meanings,
                "<option value=\"{}\">{}</option>",
                meaning.as_str(),
                meaning.statement()
            );
        }
        let _ = write!(
            body,
            "<section><h2>Sign and close</h2><p>Your signature closes this CAPA. \
             It is bound to the record and recorded in the audit trail.</p>\
             <form method=\"post\" action=\"/capas/{id}/sign\">{user_field}\
             <label>Password <input name=\"password\" type=\"password\" required autocomplete=\"current-password\"></label>\
             <label>Meaning <select name=\"meaning\">{meanings}</select></label>\
             <label>Reason <input name=\"reason\" required size=\"60\"></label>\
             <button type=\"submit\">Sign</button></form></section>"
        );
    }

    body.push_str("<section><h2>Attachments</h2><ul>");
    for file in &files {
        let _ = write!(
            body,
            "<li><a href=\"/api/capas/{id}/attachments/{name_url}\">{name}</a> ({size} bytes)</li>",
            name_url = segment(&file.name),
            name = esc(&file.name),
            size = file.size,
        );
    }
    let _ = write!(
        body,
        "</ul><form method=\"post\" action=\"/capas/{id}/attachments\" enctype=\"multipart/form-data\">\
         <input type=\"file\" name=\"file\" required> <button type=\"submit\">Attach</button></form></section>"
    );

    body.push_str(
        "<section><h2>Audit history</h2><table><tr><th>#</th><th>When (UTC)</th><th>Who</th>\
         <th>What</th><th>Reason</th><th>Signature</th></tr>",
    );
    for entry in &history {
        let _ = write!(
            body,
            "<tr><td>{seq}</td><td>{at}</td><td>{who}</td><td>{action}</td><td>{reason}</td><td>{meaning}</td></tr>",
            seq = entry.seq,
            at = esc(&entry.recorded_at),
            who = esc(&entry.actor_name),
            action = esc(&entry.action),
            reason = esc(entry.reason.as_deref().unwrap_or("")),
            meaning = esc(entry.signature_meaning.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</table></section>");
    Ok(page(
        &format!("{} · {}", capa.reference, capa.title),
        Some(&ctx),
        is_qa_lead(&app, &ctx),
        &body,
    ))
}

async fn change_status(
    State(app): State<Eqms>,
    ctx: TenantContext,
    UrlPath(id): UrlPath<String>,
    Form(change): Form<StatusChange>,
) -> Result<Redirect, PageError> {
    crate::move_capa(&app, &ctx, &id, &change).await?;
    Ok(Redirect::to(&format!("/capas/{}", segment(&id))))
}

async fn sign(
    State(app): State<Eqms>,
    ctx: TenantContext,
    session: Option<Extension<SessionToken>>,
    UrlPath(id): UrlPath<String>,
    Form(request): Form<SignRequest>,
) -> Result<Redirect, PageError> {
    let session = session.map(|Extension(token)| token);
    signatures::sign(&app, &ctx, session.as_ref(), &id, &request).await?;
    Ok(Redirect::to(&format!("/capas/{}", segment(&id))))
}

/// Streams each file of the form into the tenant's bucket.
async fn upload(
    State(app): State<Eqms>,
    ctx: TenantContext,
    UrlPath(id): UrlPath<String>,
    mut form: Multipart,
) -> Result<Redirect, PageError> {
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|error| ApiError::InvalidUpload(error.body_text()))?
    {
        let Some(name) = field.file_name().map(str::to_owned) else {
            continue;
        };
        let content_type = field.content_type().map(str::to_owned);
        let body = field.map_err(|error| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, error.body_text())
        });
        attachments::store(&app, &ctx, &id, &name, content_type.as_deref(), body).await?;
    }
    Ok(Redirect::to(&format!("/capas/{}", segment(&id))))
}

/// The recent-activity widget: a page of its own, framed by `/capas`, behind the response
/// cache (per tenant, per user).
async fn activity_widget(
    State(app): State<Eqms>,
    ctx: TenantContext,
) -> Result<Html<String>, PageError> {
    let entries = activity::entries(&app, &ctx).await?;
    let mut items = String::new();
    for entry in &entries {
        let _ = write!(
            items,
            "<li><a target=\"_top\" href=\"/capas/{id}\">{reference}</a> {title}: {action}</li>",
            id = segment(&entry.capa_id),
            reference = esc(&entry.reference),
            title = esc(&entry.title),
            action = esc(&entry.action),
        );
    }
    if items.is_empty() {
        items.push_str("<li>Nothing yet.</li>");
    }
    Ok(Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><style>{STYLE}</style></head>\
         <body><ul>{items}</ul></body></html>\n"
    )))
}

/// The QA lead's view: the tenant's trail as verified now, and the export to take away.
async fn inspector(State(app): State<Eqms>, ctx: TenantContext) -> Result<Response, PageError> {
    if !is_qa_lead(&app, &ctx) {
        let body = "<section class=\"error\"><p>The inspector's view is for the firm's QA lead.</p></section>";
        return Ok((
            StatusCode::FORBIDDEN,
            page("Inspector's view", Some(&ctx), false, body),
        )
            .into_response());
    }
    let (lines, report) = audit::inspection(&app, &ctx).await?;
    let (class, verdict) = if report.is_ok() {
        ("ok", "Verified")
    } else {
        ("bad", "Verification FAILED")
    };
    let mut body = format!(
        "<section><h2 class=\"{class}\">{verdict}</h2><p>{report}</p>\
         <p>Every entry's hash, every link to the entry before, no gap, up to the chain's head \
         (tenancy-audit's verifier, on the live trail).</p>\
         <p><a href=\"/api/audit/export\">Download the inspection export</a> (a tar file: \
         <code>tar xf</code>, then <code>tenancy-audit-verify audit-{tenant}</code> checks it offline)</p></section>\
         <section><h2>The trail, newest first</h2><table><tr><th>#</th><th>When (UTC)</th><th>Who</th>\
         <th>What</th><th>Record</th><th>Reason</th><th>Signature</th></tr>",
        report = esc(&report.to_string()),
        tenant = esc(ctx.tenant().as_str()),
    );
    for line in &lines {
        // A CAPA's entries lead to its page, where its own history is.
        let record = if line.record_type == audit::RECORD_TYPE {
            format!(
                "<a href=\"/capas/{}\">{}</a>",
                segment(&line.record_id),
                esc(&line.record_id)
            )
        } else {
            esc(&line.record_id)
        };
        let _ = write!(
            body,
            "<tr><td>{seq}</td><td>{at}</td><td>{who}</td><td>{action}</td><td>{record}</td><td>{reason}</td><td>{meaning}</td></tr>",
            seq = line.seq,
            at = esc(&line.recorded_at),
            who = esc(&line.actor_name),
            action = esc(&line.action),
            reason = esc(line.reason.as_deref().unwrap_or("")),
            meaning = esc(line.signature_meaning.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</table></section>");
    Ok(page("Inspector's view", Some(&ctx), true, &body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_for_text_and_attributes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn a_segment_keeps_no_separator() {
        assert_eq!(segment("a b/../c?.txt"), "a%20b%2F..%2Fc%3F.txt");
    }
}
