//! Accounts: numbered ranges, CSV files, and the selectors roles pick them with.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::sip::auth::Password;

use super::error::ScenarioError;
use super::model::Account;
use super::text::{Fill, Template};

/// `count` users numbered from `from`; `from` written with leading zeros (`0100`) keeps its
/// width (`0100`, `0101`, …).
#[must_use]
pub fn numbered_users(from: &str, count: u64) -> Option<Vec<String>> {
    let start: u64 = from.parse().ok()?;
    let width = if from.len() > 1 && from.starts_with('0') {
        from.len()
    } else {
        0
    };
    (0..count)
        .map(|i| start.checked_add(i).map(|n| format!("{n:0width$}")))
        .collect()
}

/// Numbered accounts with a password template over `{user}` and `{domain}`.
#[must_use]
pub fn range_accounts(users: Vec<String>, password: &Template, domain: &str) -> Vec<Account> {
    users
        .into_iter()
        .map(|user| Account {
            password: Password::new(password.render(Fill {
                user: &user,
                peer: "",
                domain,
            })),
            domain: domain.to_owned(),
            user,
        })
        .collect()
}

/// An account read from a CSV line, and where.
#[derive(Debug, Clone)]
pub struct CsvAccount {
    /// The account.
    pub account: Account,
    /// The 1-based line it was on.
    pub line: u32,
    /// The line with its password masked, for messages.
    pub masked: String,
}

/// Parses `user,password[,domain]` lines: blank lines and `#` comments are skipped, a first
/// line `user,password[,domain]` is a header; fields are trimmed unless double-quoted
/// (`"a,b"`, `""` for a quote inside quotes). Every bad line is reported, at its line, with its password masked.
///
/// # Errors
/// One [`ScenarioError`] (in `file`) per bad line.
pub fn parse_csv(
    file: &str,
    contents: &str,
    default_domain: &str,
) -> Result<Vec<CsvAccount>, Vec<ScenarioError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut first = true;
    for (i, raw_line) in contents.lines().enumerate() {
        let line_no = (i + 1) as u32;
        let line = raw_line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let is_first = std::mem::replace(&mut first, false);
        let fields = match split_csv(line) {
            Ok(f) => f,
            Err(col) => {
                errors.push(csv_error(
                    file,
                    line_no,
                    col,
                    // Only the user is shown: where the fields end is unknown.
                    match line.split_once(',') {
                        Some((user, _)) => format!("{user},***"),
                        None => "***".to_owned(),
                    },
                    "unterminated quoted field",
                ));
                continue;
            }
        };
        if is_first
            && fields
                .first()
                .is_some_and(|f| f.trim().eq_ignore_ascii_case("user"))
        {
            continue;
        }
        let masked = mask(&fields);
        if !(2..=3).contains(&fields.len()) {
            errors.push(csv_error(
                file,
                line_no,
                1,
                masked,
                &format!(
                    "expected user,password[,domain]; found {} fields",
                    fields.len()
                ),
            ));
            continue;
        }
        let user = fields[0].trim();
        if user.is_empty() {
            errors.push(csv_error(file, line_no, 1, masked, "the user is empty"));
            continue;
        }
        let domain = fields.get(2).map_or(default_domain, |d| d.trim());
        out.push(CsvAccount {
            account: Account {
                user: user.to_owned(),
                password: Password::new(fields[1].clone()),
                domain: domain.to_owned(),
            },
            line: line_no,
            masked,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn csv_error(file: &str, line: u32, col: u32, source_line: String, message: &str) -> ScenarioError {
    ScenarioError {
        file: file.to_owned(),
        line,
        col,
        message: message.to_owned(),
        source_line,
        hint: None,
    }
}

/// The line with its second field (the password) shown as `***`.
fn mask(fields: &[String]) -> String {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| if i == 1 { "***".to_owned() } else { f.clone() })
        .collect::<Vec<_>>()
        .join(",")
}

/// Splits a CSV line; `Err(column)` for an unterminated quote.
fn split_csv(line: &str) -> Result<Vec<String>, u32> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    let mut col = 0u32;
    loop {
        let mut field = String::new();
        let mut quoted = false;
        while chars.peek() == Some(&' ') {
            chars.next();
            col += 1;
        }
        if chars.peek() == Some(&'"') {
            quoted = true;
            let start = col + 1;
            chars.next();
            col += 1;
            loop {
                match chars.next() {
                    None => return Err(start),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        col += 2;
                        field.push('"');
                    }
                    Some('"') => {
                        col += 1;
                        break;
                    }
                    Some(c) => {
                        col += 1;
                        field.push(c);
                    }
                }
            }
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                chars.next();
                col += 1;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                field.push(c);
                chars.next();
                col += 1;
            }
        }
        if !quoted {
            field.truncate(field.trim_end().len());
        }
        fields.push(field);
        if chars.next().is_none() {
            return Ok(fields);
        }
        col += 1;
    }
}

/// One item of a role's `accounts:` selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `1000..1049`: numeric users from..=to.
    Range {
        /// First user number.
        from: u64,
        /// Last user number (inclusive).
        to: u64,
    },
    /// `alice` or `1000`: one user.
    User(String),
}

/// Why a selector was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorError {
    /// An empty item.
    #[error("an empty item in the account list '{0}'")]
    Empty(String),
    /// A range whose ends are not numbers.
    #[error("'{0}' is not a range of user numbers: expected FIRST..LAST, like 1000..1049")]
    BadRange(String),
    /// A range whose end is before its start.
    #[error("'{0}' is reversed: the first user must not be above the last")]
    Reversed(String),
}

/// A list of selectors: `1000..1049, alice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selectors(pub Vec<Selector>);

impl FromStr for Selectors {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, SelectorError> {
        let mut out = Vec::new();
        for item in s.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(SelectorError::Empty(s.to_owned()));
            }
            if let Some((a, b)) = item.split_once("..") {
                let num = |x: &str| -> Option<u64> {
                    let x = x.trim();
                    (!x.is_empty() && x.bytes().all(|c| c.is_ascii_digit()))
                        .then(|| x.parse().ok())
                        .flatten()
                };
                let (Some(from), Some(to)) = (num(a), num(b.trim_start_matches('='))) else {
                    return Err(SelectorError::BadRange(item.to_owned()));
                };
                if from > to {
                    return Err(SelectorError::Reversed(item.to_owned()));
                }
                out.push(Selector::Range { from, to });
            } else {
                out.push(Selector::User(item.to_owned()));
            }
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Range { from, to } => write!(f, "{from}..{to}"),
            Self::User(u) => f.write_str(u),
        }
    }
}

impl Selector {
    /// Whether `user` is selected.
    #[must_use]
    pub fn matches(&self, user: &str) -> bool {
        match self {
            Self::User(u) => u == user,
            Self::Range { from, to } => {
                !user.is_empty()
                    && user.bytes().all(|b| b.is_ascii_digit())
                    && user
                        .parse::<u64>()
                        .is_ok_and(|n| (*from..=*to).contains(&n))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::text::Placeholder;

    #[test]
    fn numbered_users_keep_leading_zeros() {
        assert_eq!(numbered_users("1000", 3).unwrap(), ["1000", "1001", "1002"]);
        assert_eq!(numbered_users("0098", 3).unwrap(), ["0098", "0099", "0100"]);
        assert_eq!(numbered_users("0", 2).unwrap(), ["0", "1"]);
        assert!(numbered_users("x", 2).is_none());
    }

    #[test]
    fn range_accounts_fill_the_password_template() {
        let t = Template::parse("pw{user}", &[Placeholder::User, Placeholder::Domain]).unwrap();
        let a = range_accounts(vec!["1000".into()], &t, "pbx.test");
        assert_eq!(a[0].password.expose(), "pw1000");
        assert_eq!(a[0].domain, "pbx.test");
    }

    #[test]
    fn csv_lines_with_header_comments_quotes_and_domains() {
        let csv = "user,password,domain\n# staff\n\nalice,\"se,cret\"\nbob,pw\"\"x,other.test\n  carol , p3 \n";
        let a = parse_csv("u.csv", csv, "pbx.test").unwrap();
        let users: Vec<&str> = a.iter().map(|c| c.account.user.as_str()).collect();
        assert_eq!(users, ["alice", "bob", "carol"]);
        assert_eq!(a[0].account.password.expose(), "se,cret");
        assert_eq!(a[0].account.domain, "pbx.test");
        assert_eq!(a[1].account.password.expose(), "pw\"\"x");
        assert_eq!(a[1].account.domain, "other.test");
        assert_eq!(a[2].account.password.expose(), "p3");
        assert_eq!(a[0].line, 4);
        assert_eq!(a[0].masked, "alice,***");
    }

    #[test]
    fn every_bad_csv_line_is_reported_without_its_password() {
        let csv = "alice\nbob,pw,d,extra\n,pw\ncarol,\"open\n";
        let e = parse_csv("u.csv", csv, "d").unwrap_err();
        let lines: Vec<u32> = e.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 2, 3, 4]);
        assert_eq!(
            e[0].message,
            "expected user,password[,domain]; found 1 fields"
        );
        assert_eq!(e[1].source_line, "bob,***,d,extra");
        assert_eq!(e[2].message, "the user is empty");
        assert_eq!(
            (e[3].message.as_str(), e[3].col),
            ("unterminated quoted field", 7)
        );
        assert_eq!(
            e[3].source_line, "carol,***",
            "the open quote's password is not quoted"
        );
        assert!(e.iter().all(|e| e.file == "u.csv"));
    }

    #[test]
    fn selectors_ranges_users_and_lists() {
        let s: Selectors = "1000..1049, alice".parse().unwrap();
        assert_eq!(
            s.0,
            [
                Selector::Range {
                    from: 1000,
                    to: 1049
                },
                Selector::User("alice".into())
            ]
        );
        assert!(s.0[0].matches("1049"));
        assert!(!s.0[0].matches("1050"));
        assert!(!s.0[0].matches("alice"));
        assert!(s.0[1].matches("alice"));
        assert_eq!("1000..=1002".parse::<Selectors>().unwrap().0.len(), 1);
    }

    #[test]
    fn selector_errors() {
        assert_eq!(
            "1049..1000".parse::<Selectors>(),
            Err(SelectorError::Reversed("1049..1000".into()))
        );
        assert!(matches!(
            "a..b".parse::<Selectors>(),
            Err(SelectorError::BadRange(_))
        ));
        assert!(matches!(
            "1000,,1001".parse::<Selectors>(),
            Err(SelectorError::Empty(_))
        ));
    }
}
