//! The one error type of this crate.
//!
//! Every failure is an [`Error`] whose [`ErrorKind`] says what went wrong in a way code can
//! match on, and whose message says it in a way a person can act on. Messages quote at most
//! the offending value (escaped and shortened), never anything else from the request.

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A string is not a valid [`TenantId`](crate::TenantId).
    InvalidTenantId,
    /// An actor id or display name is empty, too long, or contains control characters.
    InvalidActor,
    /// A correlation id is empty, too long, or has characters outside `[A-Za-z0-9._:-]`.
    InvalidCorrelationId,
    /// A naming prefix or server name is not valid.
    InvalidName,
    /// [`TenantContext::current`](crate::TenantContext::current) was called outside a scope.
    NoCurrentTenant,
    /// No resolver found a tenant in the request.
    MissingTenant,
    /// The request names a tenant in a malformed or suspicious way (duplicate `Host`,
    /// userinfo, unexpected port, IP literal, trailing dot, ...).
    MalformedRequest,
    /// Two resolvers found two different tenants in the same request.
    ConflictingTenants,
    /// The catalog has no tenant with this id.
    UnknownTenant,
    /// The tenant exists but is suspended.
    TenantSuspended,
    /// The tenant exists but is archived.
    TenantArchived,
    /// The catalog already has a tenant with this id.
    TenantExists,
    /// The catalog could not be reached or failed; the source says why.
    CatalogUnavailable,
    /// The request names no authenticated actor where one is required.
    Unauthenticated,
    /// The authenticated actor is not a member of the tenant the request is for.
    NotAMember,
    /// A membership check could not be made; the source says why.
    MembershipUnavailable,
    /// The catalog records no database placement for a tenant a database layer was asked
    /// to serve.
    NoPlacement,
}

/// The shape of every `tenancy` crate's error, written once: an opaque struct with a
/// `kind()` to match on, a message for people that describes its own layer only, and the
/// cause reached through [`std::error::Error::source`] alone, so that a chain printed by
/// `anyhow` or `tracing` shows each cause once.
///
/// Each crate invokes it once for its `Error`, naming its `#[non_exhaustive]` kind enum
/// and who may construct errors (`constructors: pub fn;` for `tenancy-core`, whose catalog
/// trait others implement; `constructors: pub(crate) fn;` elsewhere). Not part of the
/// stable API.
#[doc(hidden)]
#[macro_export]
macro_rules! error_type {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($kind:ty);
        constructors: $constructors:vis fn;
    ) => {
        $(#[$meta])*
        pub struct $name {
            kind: $kind,
            message: ::std::boxed::Box<str>,
            source: ::std::option::Option<
                ::std::boxed::Box<dyn ::std::error::Error + ::std::marker::Send + ::std::marker::Sync>,
            >,
        }

        impl $name {
            /// An error of `kind` with a message for people.
            $constructors fn new(kind: $kind, message: impl ::std::convert::Into<::std::string::String>) -> Self {
                $name {
                    kind,
                    message: message.into().into_boxed_str(),
                    source: ::std::option::Option::None,
                }
            }

            /// An error of `kind` caused by `source`; the message says what failed at this
            /// layer, the source why.
            $constructors fn with_source(
                kind: $kind,
                message: impl ::std::convert::Into<::std::string::String>,
                source: impl ::std::convert::Into<
                    ::std::boxed::Box<dyn ::std::error::Error + ::std::marker::Send + ::std::marker::Sync>,
                >,
            ) -> Self {
                $name {
                    kind,
                    message: message.into().into_boxed_str(),
                    source: ::std::option::Option::Some(source.into()),
                }
            }

            /// What kind of failure this is.
            pub fn kind(&self) -> $kind {
                self.kind
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                let mut d = f.debug_struct(::std::stringify!($name));
                d.field("kind", &self.kind).field("message", &self.message);
                if let ::std::option::Option::Some(source) = &self.source {
                    d.field("source", source);
                }
                d.finish()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.message)
            }
        }

        impl ::std::error::Error for $name {
            fn source(&self) -> ::std::option::Option<&(dyn ::std::error::Error + 'static)> {
                self.source
                    .as_deref()
                    .map(|source| source as &(dyn ::std::error::Error + 'static))
            }
        }
    };
}

error_type! {
    /// The error type of `tenancy-core`.
    ///
    /// Match on [`Error::kind`]; print it with `Display` for a message that says what was
    /// wrong and what to do. A backend failure (a catalog's database, say) is reached
    /// through [`std::error::Error::source`].
    pub struct Error(ErrorKind);
    constructors: pub fn;
}

/// Quotes an untrusted value for an error message: control and non-ASCII characters are
/// escaped (a right-to-left override cannot reorder the message) and long values are cut,
/// so a message never carries more than a short, inert rendering of what was sent. Every
/// `tenancy` crate quotes what it did not make with this.
///
/// ```
/// assert_eq!(tenancy_core::quote("a\u{202e}b"), "`a\\u{202e}b`");
/// ```
pub fn quote(value: &str) -> String {
    const MAX_CHARS: usize = 48;
    let mut out = String::with_capacity(value.len().min(MAX_CHARS) + 8);
    out.push('`');
    for (n, c) in value.chars().enumerate() {
        if n == MAX_CHARS {
            out.push_str("`… (");
            out.push_str(&value.chars().count().to_string());
            out.push_str(" characters)");
            return out;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out.push('`');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_controls_and_lookalikes() {
        assert_eq!(quote("ab"), "`ab`");
        assert_eq!(quote("a\u{202e}b"), "`a\\u{202e}b`");
        assert_eq!(quote("\r\n"), "`\\r\\n`");
        assert_eq!(quote("\u{0430}"), "`\\u{430}`");
    }

    /// The skeleton every crate's error shares: the message is this layer's alone, the cause
    /// is reached through `source()` only, so a printed chain shows each cause once.
    #[test]
    fn the_cause_is_reached_through_source_only() {
        use std::error::Error as _;
        let io = std::io::Error::other("disk on fire");
        let err = Error::with_source(
            ErrorKind::CatalogUnavailable,
            "reading the catalog failed",
            io,
        );
        assert_eq!(err.to_string(), "reading the catalog failed");
        assert_eq!(err.source().unwrap().to_string(), "disk on fire");
        assert_eq!(err.kind(), ErrorKind::CatalogUnavailable);
        assert!(format!("{err:?}").contains("disk on fire"));
    }

    #[test]
    fn quote_cuts_long_values() {
        let long = "a".repeat(1000);
        let quoted = quote(&long);
        assert!(quoted.len() < 80, "{quoted}");
        assert!(quoted.ends_with("(1000 characters)"));
    }
}
