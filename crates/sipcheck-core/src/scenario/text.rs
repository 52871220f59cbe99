//! Text helpers: "did you mean" suggestions, `${ENV}` substitution and `{placeholder}`
//! templates.

use std::fmt;

use thiserror::Error;

/// The optimal-string-alignment distance between `a` and `b`: insertions, deletions,
/// substitutions and swaps of two neighbours each cost one (`rign` is one from `ring`).
#[must_use]
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a likely typo (one edit for
/// short words, up to a third of the word's length for longer ones).
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let len = word.chars().count();
    let limit = (len / 3).max(1);
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        // The distance is at least the difference in length: skip the quadratic work for
        // candidates that cannot be within the limit (a long junk word against short names).
        .filter(|c| len.abs_diff(c.chars().count()) <= limit)
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|&(d, c)| d <= limit && c != word)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `did you mean `x`?` for the closest candidate.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// Why `${...}` substitution failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvError {
    /// A variable with no value and no default.
    #[error("environment variable `{0}` is not set and has no default")]
    Unset(String),
    /// `${` without its `}`.
    #[error("`${{` without a closing `}}` in '{0}'")]
    Unterminated(String),
    /// A name that is not a variable name.
    #[error("'{0}' is not an environment variable name (letters, digits and _, not starting with a digit)")]
    BadName(String),
}

/// Replaces `${NAME}` with the variable's value and `${NAME:-default}` with its value, or the
/// default when it is unset or empty (as a POSIX shell does); `$$` is a literal `$`. A `$` that
/// starts neither is kept.
pub(crate) fn expand_env(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, EnvError> {
    if !s.contains('$') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| EnvError::Unterminated(s.to_owned()))?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(EnvError::BadName(name.to_owned()));
            }
            match (
                env(name).filter(|v| !v.is_empty() || default.is_none()),
                default,
            ) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(EnvError::Unset(name.to_owned())),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Why a template was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    /// A placeholder this template does not offer.
    #[error("unknown placeholder `{{{name}}}`: this value can use {allowed}")]
    Unknown {
        /// The placeholder's name.
        name: String,
        /// The placeholders that are allowed, formatted.
        allowed: String,
    },
    /// `{` without `}`.
    #[error("`{{` without a closing `}}` in '{0}'")]
    Unterminated(String),
}

/// A placeholder in a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placeholder {
    /// `{user}`: the account running the step.
    User,
    /// `{peer}`: the account of the paired role.
    Peer,
    /// `{domain}`: the account's domain.
    Domain,
}

impl Placeholder {
    fn name(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Peer => "peer",
            Self::Domain => "domain",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::User, Self::Peer, Self::Domain]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text copied as is.
    Literal(String),
    /// A value filled in for each account.
    Placeholder(Placeholder),
}

/// A string with `{user}`, `{peer}` or `{domain}` placeholders, such as
/// `sip:{peer}@{domain}` or `pw{user}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The values placeholders are replaced with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fill<'a> {
    /// For `{user}`.
    pub user: &'a str,
    /// For `{peer}`.
    pub peer: &'a str,
    /// For `{domain}`.
    pub domain: &'a str,
}

impl Template {
    /// Parses `s`, accepting only the placeholders in `allowed`.
    ///
    /// # Errors
    /// [`TemplateError`] for an unknown placeholder or an unclosed `{`.
    pub fn parse(s: &str, allowed: &[Placeholder]) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find('{') {
            if i > 0 {
                parts.push(Part::Literal(rest[..i].to_owned()));
            }
            let end = rest[i..]
                .find('}')
                .ok_or_else(|| TemplateError::Unterminated(s.to_owned()))?;
            let name = &rest[i + 1..i + end];
            match Placeholder::from_name(name).filter(|p| allowed.contains(p)) {
                Some(p) => parts.push(Part::Placeholder(p)),
                None => {
                    let allowed = allowed
                        .iter()
                        .map(|p| format!("`{{{}}}`", p.name()))
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(TemplateError::Unknown {
                        name: name.to_owned(),
                        allowed,
                    });
                }
            }
            rest = &rest[i + end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The template's pieces.
    #[must_use]
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Whether the template uses `p`.
    #[must_use]
    pub fn uses(&self, p: Placeholder) -> bool {
        self.parts.contains(&Part::Placeholder(p))
    }

    /// The text with every placeholder filled in.
    #[must_use]
    pub fn render(&self, fill: Fill<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Placeholder(Placeholder::User) => out.push_str(fill.user),
                Part::Placeholder(Placeholder::Peer) => out.push_str(fill.peer),
                Part::Placeholder(Placeholder::Domain) => out.push_str(fill.domain),
            }
        }
        out
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(s) => f.write_str(s)?,
                Part::Placeholder(p) => write!(f, "{{{}}}", p.name())?,
            }
        }
        Ok(())
    }
}

/// The names of all placeholders, for suggestions.
pub(crate) const PLACEHOLDER_NAMES: [&str; 3] = ["user", "peer", "domain"];

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SIP_SERVER" => Some("10.0.0.1:5060".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn edit_distance_counts_swaps_as_one() {
        assert_eq!(edit_distance("rign", "ring"), 1);
        assert_eq!(edit_distance("anwser", "answer"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn suggests_only_close_candidates() {
        let fields = ["ring", "code", "expires"];
        assert_eq!(closest("rign", fields), Some("ring"));
        assert_eq!(closest("expries", fields), Some("expires"));
        assert_eq!(closest("zzzz", fields), None);
        assert_eq!(
            did_you_mean("calee", ["callee", "caller"]).as_deref(),
            Some("did you mean `callee`?")
        );
    }

    #[test]
    fn env_values_defaults_and_escapes() {
        assert_eq!(expand_env("${SIP_SERVER}", &env).unwrap(), "10.0.0.1:5060");
        assert_eq!(
            expand_env("${NOPE:-127.0.0.1:5060}", &env).unwrap(),
            "127.0.0.1:5060"
        );
        assert_eq!(
            expand_env("${SIP_SERVER:-x}", &env).unwrap(),
            "10.0.0.1:5060"
        );
        assert_eq!(expand_env("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(expand_env("${EMPTY}", &env).unwrap(), "");
        assert_eq!(expand_env("${NOPE:-pw}{user}", &env).unwrap(), "pw{user}");
        assert_eq!(expand_env("a$$b $x", &env).unwrap(), "a$b $x");
        assert_eq!(expand_env("no vars", &env).unwrap(), "no vars");
    }

    #[test]
    fn env_errors_name_the_variable() {
        assert_eq!(
            expand_env("${SIP_PASSWORD}", &env),
            Err(EnvError::Unset("SIP_PASSWORD".into()))
        );
        assert_eq!(
            expand_env("${SIP_PASSWORD}", &env).unwrap_err().to_string(),
            "environment variable `SIP_PASSWORD` is not set and has no default"
        );
        assert!(matches!(
            expand_env("${OPEN", &env),
            Err(EnvError::Unterminated(_))
        ));
        assert!(matches!(
            expand_env("${1X}", &env),
            Err(EnvError::BadName(_))
        ));
    }

    #[test]
    fn templates_fill_placeholders() {
        let t = Template::parse(
            "sip:{peer}@{domain}",
            &[Placeholder::Peer, Placeholder::Domain],
        )
        .unwrap();
        assert!(t.uses(Placeholder::Peer));
        assert!(!t.uses(Placeholder::User));
        let fill = Fill {
            user: "1050",
            peer: "1000",
            domain: "pbx.test",
        };
        assert_eq!(t.render(fill), "sip:1000@pbx.test");
        assert_eq!(t.to_string(), "sip:{peer}@{domain}");
    }

    #[test]
    fn templates_reject_unknown_placeholders() {
        let e = Template::parse("pw{peer}", &[Placeholder::User]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown placeholder `{peer}`: this value can use `{user}`"
        );
        assert!(matches!(
            Template::parse("pw{user", &[Placeholder::User]),
            Err(TemplateError::Unterminated(_))
        ));
    }
}
