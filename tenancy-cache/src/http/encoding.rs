//! How a response is stored: status, headers and body in a compact binary form.
//!
//! `[status: u16][header count: u16]([name length: u16][name][value length: u32][value])*[body]`,
//! all big-endian. Hop-by-hop headers and the cache's own status header are left out.

use bytes::Bytes;
use http::header::{CONNECTION, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, Response, StatusCode};

use super::CACHE_STATUS_HEADER;

fn stored(name: &HeaderName) -> bool {
    *name != CONNECTION
        && *name != TRANSFER_ENCODING
        && *name != CACHE_STATUS_HEADER
        && name.as_str() != "keep-alive"
}

pub(super) fn encode(response: &Response<Bytes>) -> Vec<u8> {
    let body = response.body();
    let mut out = Vec::with_capacity(4 + body.len() + 64 * response.headers().len());
    out.extend_from_slice(&response.status().as_u16().to_be_bytes());
    let headers: Vec<_> = response
        .headers()
        .iter()
        .filter(|(name, _)| stored(name))
        .collect();
    let count = u16::try_from(headers.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for (name, value) in headers.into_iter().take(usize::from(count)) {
        let name = name.as_str().as_bytes();
        out.extend_from_slice(&u16::try_from(name.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(name);
        let value = value.as_bytes();
        out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(body);
    out
}

/// The response stored in `stored`; `None` if it cannot be read (it is then treated as a
/// miss and stored again).
pub(super) fn decode(stored: &Bytes) -> Option<Response<Bytes>> {
    let mut at = 0;
    let mut take = |n: usize| -> Option<&[u8]> {
        let slice = stored.get(at..at + n)?;
        at += n;
        Some(slice)
    };
    let status = StatusCode::from_u16(u16::from_be_bytes(take(2)?.try_into().ok()?)).ok()?;
    let count = u16::from_be_bytes(take(2)?.try_into().ok()?);
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = status;
    for _ in 0..count {
        let len = usize::from(u16::from_be_bytes(take(2)?.try_into().ok()?));
        let name = HeaderName::from_bytes(take(len)?).ok()?;
        let len = usize::try_from(u32::from_be_bytes(take(4)?.try_into().ok()?)).ok()?;
        let value = HeaderValue::from_bytes(take(len)?).ok()?;
        response.headers_mut().append(name, value);
    }
    *response.body_mut() = stored.slice(at..);
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_round_trip() {
        let mut response = Response::new(Bytes::from_static(b"hello"));
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("text/plain"));
        response
            .headers_mut()
            .append("x-multi", HeaderValue::from_static("a"));
        response
            .headers_mut()
            .append("x-multi", HeaderValue::from_static("b"));
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        let decoded = decode(&Bytes::from(encode(&response))).unwrap();
        assert_eq!(decoded.status(), StatusCode::OK);
        assert_eq!(decoded.body(), "hello");
        assert_eq!(decoded.headers().get_all("x-multi").iter().count(), 2);
        assert!(decoded.headers().get(CONNECTION).is_none());
    }

    #[test]
    fn truncated_entries_do_not_decode() {
        let response = Response::new(Bytes::from_static(b"hello"));
        let encoded = encode(&response);
        assert!(decode(&Bytes::copy_from_slice(&encoded[..3])).is_none());
    }
}
