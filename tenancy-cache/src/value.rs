//! The envelope every stored value travels in: the full key it was written under (which
//! names its tenant and generation), then the payload.
//!
//! A reader checks the tag against the key it asked for. A value that comes back under
//! another tag, whether another tenant's (a connection that lost track of which reply is
//! whose, as in the 2023 incident where a cancelled command's reply reached the next user)
//! or another key's of the same tenant, is never returned: it is a miss, counted as an
//! alarm in [`CacheStats::tag_mismatches`](crate::CacheStats).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind};

/// The first byte of every envelope: format version 1.
const MAGIC: u8 = 0xC1;

/// `[MAGIC][tag length: u16 big-endian][tag][payload]`.
pub(crate) fn seal(tag: &str, payload: &[u8]) -> Vec<u8> {
    let tag_len = u16::try_from(tag.len()).expect("keys are far shorter than 64 KiB");
    let mut out = Vec::with_capacity(3 + tag.len() + payload.len());
    out.push(MAGIC);
    out.extend_from_slice(&tag_len.to_be_bytes());
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// What a stored value turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opened<'a> {
    /// Written under the key that was read: the payload.
    Ours(&'a [u8]),
    /// Written under another key: another tenant's, or another of this tenant's.
    Foreign,
    /// Not an envelope at all.
    Malformed,
}

pub(crate) fn open<'a>(tag: &str, stored: &'a [u8]) -> Opened<'a> {
    let [magic, hi, lo, rest @ ..] = stored else {
        return Opened::Malformed;
    };
    if *magic != MAGIC {
        return Opened::Malformed;
    }
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    if rest.len() < len {
        return Opened::Malformed;
    }
    let (stored_tag, payload) = rest.split_at(len);
    if stored_tag == tag.as_bytes() {
        Opened::Ours(payload)
    } else {
        Opened::Foreign
    }
}

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|error| {
        Error::with_source(
            ErrorKind::Serialization,
            "the value could not be serialized to JSON for the cache",
            error,
        )
    })
}

pub(crate) fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(payload).map_err(|error| {
        Error::with_source(
            ErrorKind::Serialization,
            format!(
                "a cached value could not be read as {}: it was written as another type; \
                 delete the key or change its name when the type changes",
                std::any::type_name::<T>()
            ),
            error,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_under_its_own_tag() {
        let sealed = seal("tt:acme:g1:app:k", b"42");
        assert_eq!(open("tt:acme:g1:app:k", &sealed), Opened::Ours(b"42"));
        assert_eq!(open("tt:beta:g1:app:k", &sealed), Opened::Foreign);
        assert_eq!(open("tt:acme:g1:app:other", &sealed), Opened::Foreign);
        assert_eq!(open("tt:acme:g2:app:k", &sealed), Opened::Foreign);
    }

    #[test]
    fn truncated_and_raw_values_are_malformed() {
        let sealed = seal("tt:acme:g1:app:k", b"42");
        assert_eq!(open("tt:acme:g1:app:k", &sealed[..5]), Opened::Malformed);
        assert_eq!(open("tt:acme:g1:app:k", b"42"), Opened::Malformed);
        assert_eq!(open("tt:acme:g1:app:k", b""), Opened::Malformed);
    }
}
