//! Attachments of CAPAs, in the tenant's own bucket (tenancy-storage), streamed in and
//! out: a body is never held whole in memory.
//!
//! - `PUT /api/capas/{id}/attachments/{name}` stores the request body under
//!   `capas/{id}/attachments/{name}` in the tenant's bucket (201), with the request's
//!   `content-type`; `GET` on the same path streams it back; `GET
//!   /api/capas/{id}/attachments` lists the CAPA's attachments (name and size).
//! - The CAPA must exist in the request's tenant (404 otherwise, nothing written): the key
//!   is made from an id read back from the tenant's own database, never from the URL alone.
//! - `name` is one path segment: a name with `/` is refused (400), and the key is checked
//!   by tenancy-storage (`..`, `.`, control characters, percent-encoded traversal: 400).
//!
//! Where the buckets are is configuration ([`crate::Config::storage`]): a directory per tenant under
//! `{data dir}/attachments` by default, S3 when `EQMS_S3_URL` is set.

use std::path::Path;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tenancy_core::TenantContext;
use tenancy_storage::{ListRequest, PutOptions, StorageConfig};

use crate::{ApiError, Eqms};

/// The directory under the data directory that holds the tenants' buckets by default.
pub const LOCAL_DIR: &str = "attachments";

/// One attachment of a CAPA, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Its name (the last segment of its URL).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The embedded default: a directory per tenant under `{data_dir}/attachments`.
pub fn local_storage(data_dir: &Path) -> StorageConfig {
    StorageConfig::local(data_dir.join(LOCAL_DIR)).naming_prefix("eqms")
}

/// The key prefix of a CAPA's attachments, once the CAPA is known to be the tenant's.
async fn capa_prefix(app: &Eqms, ctx: &TenantContext, id: &str) -> Result<String, ApiError> {
    let mut tx = app.db.transaction(ctx).await?;
    let row = tx
        .query_one("SELECT id FROM capas WHERE id = $1", &[id.into()])
        .await?;
    let id: String = row.try_get(0)?;
    tx.commit().await?;
    Ok(format!("capas/{id}/attachments/"))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.contains('/') {
        return Err(ApiError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// Streams `body` into the tenant's bucket as the attachment `name` of the CAPA `id`.
pub(crate) async fn store<S, E>(
    app: &Eqms,
    ctx: &TenantContext,
    id: &str,
    name: &str,
    content_type: Option<&str>,
    body: S,
) -> Result<Attachment, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    check_name(name)?;
    let key = format!("{}{name}", capa_prefix(app, ctx, id).await?);
    let content_type = content_type.unwrap_or("application/octet-stream");
    let options = PutOptions::new().content_type(content_type);
    let bucket = app.storage.bucket(ctx)?;
    bucket.put_stream(&key, body, &options).await?;
    let size = bucket.head(&key).await?.size;
    Ok(Attachment {
        name: name.to_owned(),
        size,
    })
}

/// `PUT /api/capas/{id}/attachments/{name}`: streams the body into the tenant's bucket.
pub(crate) async fn put(
    State(app): State<Eqms>,
    ctx: TenantContext,
    UrlPath((id, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Attachment>), ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let attachment = store(
        &app,
        &ctx,
        &id,
        &name,
        content_type,
        body.into_data_stream(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(attachment)))
}

/// `GET /api/capas/{id}/attachments/{name}`: streams the attachment back.
pub(crate) async fn get(
    State(app): State<Eqms>,
    ctx: TenantContext,
    UrlPath((id, name)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    check_name(&name)?;
    let key = format!("{}{name}", capa_prefix(&app, &ctx, &id).await?);
    let (info, body) = app.storage.bucket(&ctx)?.get(&key).await?.into_parts();
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    let content_type = info
        .content_type
        .as_deref()
        .and_then(|value| HeaderValue::from_str(value).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(info.size));
    Ok(response)
}

/// `GET /api/capas/{id}/attachments`: the CAPA's attachments, by name.
pub(crate) async fn list(
    State(app): State<Eqms>,
    ctx: TenantContext,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Vec<Attachment>>, ApiError> {
    Ok(Json(attachments_of(&app, &ctx, &id).await?))
}

/// The attachments of the CAPA `id`, by name; 404 when the tenant has no such CAPA.
pub(crate) async fn attachments_of(
    app: &Eqms,
    ctx: &TenantContext,
    id: &str,
) -> Result<Vec<Attachment>, ApiError> {
    let prefix = capa_prefix(app, ctx, id).await?;
    let bucket = app.storage.bucket(ctx)?;
    let mut request = ListRequest::prefix(prefix.as_str());
    let mut attachments = Vec::new();
    loop {
        let page = bucket.list(&request).await?;
        for object in page.objects {
            if let Some(name) = object.key.strip_prefix(&prefix) {
                attachments.push(Attachment {
                    name: name.to_owned(),
                    size: object.size,
                });
            }
        }
        match page.next {
            Some(after) => request = ListRequest::prefix(prefix.as_str()).after(after),
            None => break,
        }
    }
    Ok(attachments)
}
