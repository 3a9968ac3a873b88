//! Canaries: unique values written as one tenant, then searched for in everything another
//! tenant can read. A canary found there is a leak, whatever path it took.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::tenants::run_id;

/// Canary values planted for one tenant, and the check that another tenant saw none.
///
/// A canary is `canary-{owner}-{run}-{n}z`: lowercase ASCII letters, digits and `-`, so it
/// comes through JSON, HTML, URL and SQL escaping and upper-casing unchanged (the search
/// ignores ASCII case); unique per run and process, so it matches nothing by chance; and
/// the trailing `z` keeps `…-1z` from matching inside `…-12z`.
///
/// ```
/// use tenancy_test::Canaries;
///
/// let mut globex = Canaries::new("globex");
/// let title = globex.plant();
/// // ... write `title` as tenant globex, then read everything tenant acme can ...
/// let seen_by_acme = r#"[{"id":1,"title":"acme's own record"}]"#;
/// globex.assert_unseen("acme's record list", seen_by_acme);
/// ```
#[derive(Debug, Clone)]
pub struct Canaries {
    owner: String,
    planted: Vec<String>,
}

impl Canaries {
    /// No canaries yet, for the tenant `owner` names (a label for messages: `globex`).
    pub fn new(owner: &str) -> Self {
        Canaries {
            owner: owner
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect(),
            planted: Vec::new(),
        }
    }

    /// A new canary, remembered: write it as the owner (a title, a file name, a header).
    pub fn plant(&mut self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let canary = format!(
            "canary-{}-{}-{}z",
            self.owner,
            run_id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.planted.push(canary.clone());
        canary
    }

    /// Every canary planted so far.
    pub fn planted(&self) -> &[String] {
        &self.planted
    }

    /// The first canary found in `seen` (ignoring ASCII case), with where it was.
    pub fn find_in(&self, seen: impl AsRef<[u8]>) -> Option<(&str, usize)> {
        let seen = seen.as_ref().to_ascii_lowercase();
        self.planted.iter().find_map(|canary| {
            seen.windows(canary.len())
                .position(|window| window == canary.as_bytes())
                .map(|at| (canary.as_str(), at))
        })
    }

    /// Checks that `seen`, everything one observer could read (`what` says what it is, for
    /// the message: "acme's GET /capas"), holds none of these canaries.
    ///
    /// # Panics
    ///
    /// When no canary was planted (the check would prove nothing), or when one is found:
    /// the message names the canary, its owner, the observer and the text around it.
    pub fn assert_unseen(&self, what: &str, seen: impl AsRef<[u8]>) {
        assert!(
            !self.planted.is_empty(),
            "no canary of {} was planted: plant some (and write them as {}) before checking {what}",
            self.owner,
            self.owner
        );
        let seen = seen.as_ref();
        if let Some((canary, at)) = self.find_in(seen) {
            let start = at.saturating_sub(60);
            let end = (at + canary.len() + 60).min(seen.len());
            panic!(
                "{what} holds {owner}'s canary {canary}: another tenant's data leaked into it. \
                 Around it: {context:?}",
                owner = self.owner,
                context = String::from_utf8_lossy(&seen[start..end]),
            );
        }
    }

    /// Like [`Canaries::assert_unseen`] for many observations at once: `(what, seen)` pairs.
    ///
    /// # Panics
    ///
    /// As [`Canaries::assert_unseen`], at the first observation that holds a canary.
    pub fn assert_unseen_in_all<W: AsRef<str>, S: AsRef<[u8]>>(
        &self,
        observations: impl IntoIterator<Item = (W, S)>,
    ) {
        for (what, seen) in observations {
            self.assert_unseen(what.as_ref(), seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canaries_never_contain_one_another() {
        let mut canaries = Canaries::new("globex");
        let all: Vec<String> = (0..200).map(|_| canaries.plant()).collect();
        for (i, a) in all.iter().enumerate() {
            for (j, b) in all.iter().enumerate() {
                assert!(i == j || !a.contains(b.as_str()), "{a} contains {b}");
            }
        }
    }

    #[test]
    fn a_canary_is_found_through_case_and_escaping() {
        let mut canaries = Canaries::new("Globex Corp");
        let canary = canaries.plant();
        assert!(canary.starts_with("canary-globex-corp-"), "{canary}");
        let json = serde_like_json(&canary.to_uppercase());
        assert!(canaries.find_in(&json).is_some(), "{json}");
        let html = format!("<td title=\"{canary}\">&lt;{canary}&gt;</td>");
        assert!(canaries.find_in(html).is_some());
        assert!(canaries.find_in("nothing of globex here").is_none());
    }

    fn serde_like_json(value: &str) -> String {
        format!("{{\"title\":\"{value}\"}}")
    }

    #[test]
    #[should_panic(expected = "acme's list holds globex's canary canary-globex-")]
    fn a_found_canary_fails_the_test_naming_it() {
        let mut canaries = Canaries::new("globex");
        let canary = canaries.plant();
        canaries.assert_unseen("acme's list", format!("[\"mine\", \"{canary}\"]"));
    }

    #[test]
    #[should_panic(expected = "no canary of globex was planted")]
    fn a_check_without_canaries_fails() {
        Canaries::new("globex").assert_unseen("acme's list", "anything");
    }

    #[test]
    fn unseen_canaries_pass_every_observation() {
        let mut canaries = Canaries::new("globex");
        canaries.plant();
        canaries.assert_unseen_in_all([("list", "[]"), ("record", "{\"id\":1}")]);
    }
}
