//! The data-classification policy: which fields are public, internal or regulated, and
//! what the ops stream may carry.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, quote};

/// How sensitive a field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum Classification {
    /// Fit for any reader of the ops stream: an HTTP method, a status code, a duration.
    Public,
    /// The vendor's own operational detail: written to the ops stream unless the policy is
    /// in [`Mode::AllowList`].
    Internal,
    /// The tenant's regulated content: never written to the ops stream; written, whole, to
    /// the tenant's own sink.
    Regulated,
}

/// What the ops stream does with fields the policy does not mark public.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
#[non_exhaustive]
pub enum Mode {
    /// Redact the fields classified [`Classification::Regulated`]; write the rest, including
    /// fields the policy does not name.
    #[default]
    DenyList,
    /// Redact every field not classified [`Classification::Public`]: internal fields,
    /// regulated fields, and every field the policy does not name (a new field is redacted
    /// until someone classifies it). The message is a field called `message`: classify it
    /// public to keep messages, and mark the values they interpolate with
    /// [`Regulated`](crate::Regulated).
    AllowList,
}

/// A data-classification policy: field names, or patterns, each with a
/// [`Classification`], and a [`Mode`].
///
/// Field names are the names given in `tracing` macros (`capa.title`, `error`, `message`).
/// A pattern may use `*` for any run of characters: `capa.*`, `*.description`, `*password*`.
/// When several rules match a field, the strictest classification wins, so a broad
/// `regulated` pattern cannot be undone by a narrower `public` one.
///
/// Three names are made by this crate rather than by a macro: `message` (an event's
/// formatted message), `<name>.sources` (the source chain of an error recorded as `<name>`;
/// redacted when either `<name>` or `<name>.sources` is), and the panic hook's
/// `panic.location` and `panic.thread` (its payload is always [`Regulated`](crate::Regulated)).
///
/// ```
/// use tenancy_log::{Classification, Mode, Policy};
///
/// let policy = Policy::builder()
///     .regulated("capa.title")
///     .regulated("capa.description")
///     .regulated("*.sources")
///     .public("http.*")
///     .build()?;
/// assert_eq!(policy.classify("capa.title"), Some(Classification::Regulated));
/// assert!(policy.redacts("capa.title"));
/// assert!(policy.redacts("db.error.sources"));
/// assert!(!policy.redacts("http.status"));
/// assert!(!policy.redacts("elapsed_ms"), "not named: written in deny-list mode");
///
/// let strict = Policy::builder().mode(Mode::AllowList).public("http.*").build()?;
/// assert!(strict.redacts("elapsed_ms"), "not named: redacted in allow-list mode");
/// # Ok::<(), tenancy_log::Error>(())
/// ```
#[derive(Clone)]
pub struct Policy(Arc<PolicyInner>);

struct PolicyInner {
    mode: Mode,
    exact: HashMap<Box<str>, Classification>,
    patterns: Vec<(Glob, Classification)>,
    rules: usize,
}

impl Default for Policy {
    /// Deny-list mode with no rules: nothing is redacted but [`Regulated`](crate::Regulated)
    /// values.
    fn default() -> Self {
        Policy(Arc::new(PolicyInner {
            mode: Mode::DenyList,
            exact: HashMap::new(),
            patterns: Vec::new(),
            rules: 0,
        }))
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.0.exact.iter().collect();
        names.sort();
        f.debug_struct("Policy")
            .field("mode", &self.0.mode)
            .field("names", &names)
            .field(
                "patterns",
                &self
                    .0
                    .patterns
                    .iter()
                    .map(|(glob, class)| (&*glob.source, class))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Policy {
    /// A policy built rule by rule.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            mode: Mode::DenyList,
            rules: Vec::new(),
        }
    }

    /// The policy a [`PolicyConfig`] describes.
    pub fn from_config(config: &PolicyConfig) -> Result<Policy, Error> {
        let mut builder = Policy::builder().mode(config.mode);
        for (patterns, class) in [
            (&config.public, Classification::Public),
            (&config.internal, Classification::Internal),
            (&config.regulated, Classification::Regulated),
        ] {
            for pattern in patterns {
                builder = builder.classify(pattern, class);
            }
        }
        builder.build()
    }

    /// The policy's mode.
    pub fn mode(&self) -> Mode {
        self.0.mode
    }

    /// How the policy classifies a field: the strictest of the rules that match it, or
    /// `None` when none does.
    pub fn classify(&self, field: &str) -> Option<Classification> {
        let mut strictest = self.0.exact.get(field).copied();
        for (glob, class) in &self.0.patterns {
            if strictest == Some(Classification::Regulated) {
                break;
            }
            if glob.matches(field) {
                strictest = strictest.max(Some(*class));
            }
        }
        strictest
    }

    /// Whether the ops stream gets a placeholder instead of this field's value.
    pub fn redacts(&self, field: &str) -> bool {
        match (self.classify(field), self.0.mode) {
            (Some(Classification::Regulated), _) => true,
            (Some(Classification::Public), _) => false,
            (_, Mode::DenyList) => false,
            (_, Mode::AllowList) => true,
        }
    }

    /// How many rules the policy has.
    pub fn len(&self) -> usize {
        self.0.rules
    }

    /// Whether the policy has no rules.
    pub fn is_empty(&self) -> bool {
        self.0.rules == 0
    }
}

/// Builds a [`Policy`]; made by [`Policy::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PolicyBuilder {
    mode: Mode,
    rules: Vec<(String, Classification)>,
}

impl PolicyBuilder {
    /// Sets the mode ([`Mode::DenyList`] unless set).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Classifies the fields `pattern` matches.
    pub fn classify(mut self, pattern: &str, class: Classification) -> Self {
        self.rules.push((pattern.to_owned(), class));
        self
    }

    /// Classifies the fields `pattern` matches as [`Classification::Public`].
    pub fn public(self, pattern: &str) -> Self {
        self.classify(pattern, Classification::Public)
    }

    /// Classifies the fields `pattern` matches as [`Classification::Internal`].
    pub fn internal(self, pattern: &str) -> Self {
        self.classify(pattern, Classification::Internal)
    }

    /// Classifies the fields `pattern` matches as [`Classification::Regulated`].
    pub fn regulated(self, pattern: &str) -> Self {
        self.classify(pattern, Classification::Regulated)
    }

    /// Checks every pattern and builds the policy.
    ///
    /// A pattern must be 1 to 256 bytes without control characters or whitespace.
    pub fn build(self) -> Result<Policy, Error> {
        let mut exact: HashMap<Box<str>, Classification> = HashMap::new();
        let mut patterns = Vec::new();
        let rules = self.rules.len();
        for (pattern, class) in self.rules {
            check_pattern(&pattern)?;
            if pattern.contains('*') {
                patterns.push((Glob::new(&pattern), class));
            } else {
                let entry = exact.entry(pattern.into_boxed_str()).or_insert(class);
                *entry = (*entry).max(class);
            }
        }
        // Regulated patterns first, so a lookup can stop at the first regulated match.
        patterns.sort_by_key(|(_, class)| std::cmp::Reverse(*class));
        Ok(Policy(Arc::new(PolicyInner {
            mode: self.mode,
            exact,
            patterns,
            rules,
        })))
    }
}

const MAX_PATTERN_LEN: usize = 256;

fn check_pattern(pattern: &str) -> Result<(), Error> {
    if pattern.is_empty()
        || pattern.len() > MAX_PATTERN_LEN
        || pattern.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Error::new(
            ErrorKind::InvalidPolicy,
            format!(
                "field pattern {} is invalid: use 1 to {MAX_PATTERN_LEN} bytes without \
                 whitespace or control characters (`*` matches any run of characters)",
                quote(pattern)
            ),
        ));
    }
    Ok(())
}

/// A field-name pattern where `*` matches any run of characters.
#[derive(Debug)]
struct Glob {
    source: Box<str>,
    /// The literal pieces between the stars.
    pieces: Vec<Box<str>>,
    starts_with_star: bool,
    ends_with_star: bool,
}

impl Glob {
    fn new(pattern: &str) -> Glob {
        Glob {
            source: pattern.into(),
            pieces: pattern
                .split('*')
                .filter(|piece| !piece.is_empty())
                .map(Into::into)
                .collect(),
            starts_with_star: pattern.starts_with('*'),
            ends_with_star: pattern.ends_with('*'),
        }
    }

    fn matches(&self, name: &str) -> bool {
        let mut rest = name;
        let last = self.pieces.len().saturating_sub(1);
        for (i, piece) in self.pieces.iter().enumerate() {
            if i == 0 && !self.starts_with_star {
                let Some(after) = rest.strip_prefix(&**piece) else {
                    return false;
                };
                rest = after;
                if i == last && !self.ends_with_star {
                    return rest.is_empty();
                }
                continue;
            }
            if i == last && !self.ends_with_star {
                return rest.ends_with(&**piece);
            }
            // Leftmost match: leaves the most room for the pieces after it.
            let Some(at) = rest.find(&**piece) else {
                return false;
            };
            rest = &rest[at + piece.len()..];
        }
        // Only stars (or nothing after the last piece but a star).
        self.ends_with_star || rest.is_empty()
    }
}

/// A [`Policy`] as configuration, for a file or the environment.
///
/// ```
/// use tenancy_log::{Mode, Policy, PolicyConfig};
///
/// let mut config = PolicyConfig::default();
/// config.mode = Mode::AllowList;
/// config.public = vec!["message".into(), "http.*".into()];
/// config.regulated = vec!["capa.title".into(), "capa.description".into()];
/// let policy = Policy::from_config(&config)?;
/// assert!(policy.redacts("capa.title") && policy.redacts("user.email"));
/// # Ok::<(), tenancy_log::Error>(())
/// ```
///
/// With the `serde` feature it deserializes (unknown keys are refused); in TOML:
///
/// ```toml
/// mode = "allow-list"          # or "deny-list", the default
/// public = ["message", "http.*"]
/// internal = ["db.statement"]
/// regulated = ["capa.title", "capa.description", "*.sources"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct PolicyConfig {
    /// What happens to fields not classified public.
    pub mode: Mode,
    /// Patterns of public fields.
    pub public: Vec<String>,
    /// Patterns of internal fields.
    pub internal: Vec<String>,
    /// Patterns of regulated fields.
    pub regulated: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(pattern: &str, name: &str) -> bool {
        Glob::new(pattern).matches(name)
    }

    #[test]
    fn globs_match_like_shell_patterns() {
        assert!(glob("capa.*", "capa.title"));
        assert!(glob("capa.*", "capa."));
        assert!(!glob("capa.*", "capax"));
        assert!(!glob("capa.*", "xcapa.title"));
        assert!(glob("*.description", "deviation.description"));
        assert!(!glob("*.description", "deviation.description.len"));
        assert!(glob("*password*", "db.password_hash"));
        assert!(glob("*", "anything"));
        assert!(glob("**", ""));
        assert!(glob("a*b*c", "abc"));
        assert!(glob("a*b*c", "a-b-b-c"));
        assert!(!glob("a*b*c", "a-c-b"));
        assert!(glob("a*a", "aa"));
        assert!(!glob("a*a", "a"));
        assert!(glob("*.sources", "error.sources"));
    }

    #[test]
    fn the_strictest_rule_wins() {
        let policy = Policy::builder()
            .public("capa.*")
            .regulated("*.title")
            .internal("capa.title")
            .public("capa.title")
            .build()
            .unwrap();
        assert_eq!(
            policy.classify("capa.title"),
            Some(Classification::Regulated)
        );
        assert_eq!(policy.classify("capa.id"), Some(Classification::Public));
        assert_eq!(policy.classify("other"), None);
        assert_eq!(policy.len(), 4);
    }

    #[test]
    fn modes_decide_the_unnamed_and_the_internal() {
        let deny = Policy::builder().internal("db.*").build().unwrap();
        assert!(!deny.redacts("db.statement"));
        assert!(!deny.redacts("unnamed"));
        let allow = Policy::builder()
            .mode(Mode::AllowList)
            .public("http.status")
            .internal("db.*")
            .build()
            .unwrap();
        assert!(allow.redacts("db.statement"));
        assert!(allow.redacts("unnamed"));
        assert!(allow.redacts("message"));
        assert!(!allow.redacts("http.status"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "capa title", "a\nb", &"a".repeat(257)] {
            let err = Policy::builder().regulated(bad).build().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidPolicy);
            assert!(err.to_string().contains("field pattern"), "{err}");
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn config_deserializes_and_refuses_unknown_keys() {
        let config: PolicyConfig = serde_json::from_str(
            r#"{"mode":"allow-list","public":["message"],"regulated":["capa.title"]}"#,
        )
        .unwrap();
        let policy = Policy::from_config(&config).unwrap();
        assert_eq!(policy.mode(), Mode::AllowList);
        assert!(!policy.redacts("message"));
        assert!(policy.redacts("capa.title"));
        assert!(serde_json::from_str::<PolicyConfig>(r#"{"regulatd":["x"]}"#).is_err());
    }
}
