#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
pub mod axum;
mod catalog;
mod context;
#[cfg(feature = "serde")]
mod envelope;
mod error;
mod id;
mod scope;

#[cfg(feature = "http")]
pub mod http;
pub mod naming;

pub use catalog::{
    Catalog, InMemoryCatalog, IsolationMode, Placement, ServerName, SharedCatalog, Tenant,
    TenantStatus,
};
pub use context::{Actor, ActorKind, CorrelationId, PlatformContext, TenantContext};
#[cfg(feature = "serde")]
pub use envelope::Tenanted;
pub use error::{Error, ErrorKind, quote};
pub use id::TenantId;
pub use scope::Scoped;

/// Lowercase hexadecimal of `bytes`: how every `tenancy` crate writes a digest or a MAC
/// (credentials, migration checksums, signed envelopes, audit hashes), so they compare as
/// text.
///
/// ```
/// assert_eq!(tenancy_core::hex(&[0x00, 0xab, 0x7f]), "00ab7f");
/// ```
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped: safe in HTML text and in quoted
/// attributes. For the pages refusals, exports and applications render from values a tenant
/// wrote.
///
/// ```
/// assert_eq!(
///     tenancy_core::escape_html(r#"<a href="x">Tom's & Jerry's</a>"#),
///     "&lt;a href=&quot;x&quot;&gt;Tom&#39;s &amp; Jerry&#39;s&lt;/a&gt;"
/// );
/// ```
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
