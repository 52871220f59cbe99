//! The error a scenario is rejected with: `file:line:col: message`, the source line, a caret
//! and sometimes a hint.

use std::fmt;

use super::source::{LineIndex, Pos};

/// One problem in a scenario, with where it was written.
///
/// Displayed as
///
/// ```text
/// scenarios/x.yaml:14:19: unknown field `rign`, expected `ring`
///    14 |       - answer: { rign: 500ms }
///       |                   ^
///    hint: did you mean `ring`?
/// ```
///
/// `line` and `col` are 1-based (the column counts characters); both are 0 when the problem
/// has no place in a file. For a `--set` override, `file` is `--set`, `line` is the override's
/// number (1 for the first) and `source_line` is the override as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file the problem is in: the scenario, a CSV file it names, or `--set`.
    pub file: String,
    /// 1-based line (0: unknown).
    pub line: u32,
    /// 1-based column in characters (0: unknown).
    pub col: u32,
    /// What is wrong, lowercase.
    pub message: String,
    /// The text of the line, for the snippet.
    pub source_line: String,
    /// What to do about it, when there is a likely fix.
    pub hint: Option<String>,
}

impl ScenarioError {
    /// An error at `pos` in `text`.
    pub(crate) fn at(file: &str, text: &str, pos: Pos, message: impl Into<String>) -> Self {
        let lines = LineIndex::new(text);
        Self {
            file: file.to_owned(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
            source_line: mask_secrets(lines.line(pos.line)),
            hint: None,
        }
    }

    /// The same error with a hint.
    #[must_use]
    pub(crate) fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

/// Whether a key (its last dotted segment) may hold a secret: `password`, misspellings such
/// as `pasword` or `passwd`, `pw`, `secret`, `token`. Masking too much is harmless; too little
/// is not.
fn secret_key(key: &str) -> bool {
    let key = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    ["pas", "pw", "secret", "token", "credential"]
        .iter()
        .any(|s| key.contains(s))
}

/// `line` with the value of every key that may hold a secret shown as `***`, for quoting a
/// scenario or `--set` line in an error: `  password: s3cret` → `  password: ***`, `{ user:
/// a, pasword: x }` → `{ user: a, pasword: *** }`, `accounts.password=x` → `accounts.password=***`.
pub(crate) fn mask_secrets(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    let mut depth = 0usize;
    while let Some(sep) = rest.find([':', '=']) {
        let before = &rest[..sep];
        depth += before.matches('{').count();
        depth = depth.saturating_sub(before.matches('}').count());
        let key_start = before
            .rfind(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .map_or(0, |i| {
                i + before[i..].chars().next().map_or(1, char::len_utf8)
            });
        let key = &before[key_start..];
        out.push_str(&rest[..=sep]);
        rest = &rest[sep + 1..];
        if !key.is_empty() && secret_key(key) {
            // The value runs to the end of its flow entry, or of the line.
            let end = if depth > 0 {
                rest.find([',', '}']).unwrap_or(rest.len())
            } else {
                rest.len()
            };
            let lead = rest.len() - rest.trim_start().len();
            if rest[..end].trim().is_empty() {
                continue;
            }
            out.push_str(&rest[..lead.min(end)]);
            out.push_str("***");
            let value = &rest[..end];
            // Keep the spaces before a `}` or `,`.
            out.push_str(&value[value.trim_end().len()..]);
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.col, self.message
            )?;
            let number = self.line.to_string();
            let gutter = " ".repeat(number.len());
            write!(f, "\n   {number} | {}", self.source_line)?;
            // Keep tabs so that the caret lines up under the character it points at.
            let pad: String = self
                .source_line
                .chars()
                .take(self.col.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n   {gutter} | {pad}^")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n   hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

/// All `errors`, each followed by a blank line, and a count: what a command line prints.
#[must_use]
pub fn report(errors: &[ScenarioError]) -> String {
    let mut out = String::new();
    for e in errors {
        out.push_str(&e.to_string());
        out.push_str("\n\n");
    }
    match errors.len() {
        0 => {}
        1 => out.push_str("1 error\n"),
        n => out.push_str(&format!("{n} errors\n")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_quoted_lines_are_masked() {
        for (line, masked) in [
            ("  password: s3cret", "  password: ***"),
            ("  pasword: SuperSecret99", "  pasword: ***"),
            ("  passwd: \"a b\"  # comment", "  passwd: ***"),
            (
                "accounts: { csv: a.csv, password: x, domain: d }",
                "accounts: { csv: a.csv, password: ***, domain: d }",
            ),
            ("{ pw: 0 }", "{ pw: *** }"),
            ("accounts.password=lab", "accounts.password=***"),
            ("  password:", "  password:"),
            ("  server: 127.0.0.1:5060", "  server: 127.0.0.1:5060"),
            (
                "      - answer: { ring: 500ms }",
                "      - answer: { ring: 500ms }",
            ),
        ] {
            assert_eq!(mask_secrets(line), masked, "{line}");
        }
    }

    #[test]
    fn displays_position_source_line_caret_and_hint() {
        let text = "roles:\n  a:\n    steps:\n      - answer: { rign: 500ms }\n";
        let e = ScenarioError::at(
            "scenarios/x.yaml",
            text,
            LineIndex::new(text).pos_at(4, 19),
            "unknown field `rign`, expected `ring`",
        )
        .with_hint(Some("did you mean `ring`?".into()));
        assert_eq!(
            e.to_string(),
            "scenarios/x.yaml:4:19: unknown field `rign`, expected `ring`\n   \
             4 |       - answer: { rign: 500ms }\n   \
             \x20 |                   ^\n   \
             hint: did you mean `ring`?"
        );
    }

    #[test]
    fn the_gutter_is_as_wide_as_the_line_number() {
        let text = "\n".repeat(13) + "x: 1\n";
        let e = ScenarioError::at("f", &text, LineIndex::new(&text).pos_at(14, 1), "bad");
        let shown = e.to_string();
        assert!(shown.contains("\n   14 | x: 1\n      | ^"), "{shown}");
    }

    #[test]
    fn an_error_without_a_position_has_no_snippet() {
        let e = ScenarioError {
            file: "f".into(),
            line: 0,
            col: 0,
            message: "empty".into(),
            source_line: String::new(),
            hint: None,
        };
        assert_eq!(e.to_string(), "f: empty");
    }

    #[test]
    fn report_counts_errors() {
        let e = ScenarioError::at(
            "f",
            "a: 1\n",
            Pos {
                line: 1,
                col: 1,
                byte: 0,
            },
            "bad",
        );
        let r = report(&[e.clone(), e]);
        assert!(r.ends_with("\n\n2 errors\n"), "{r}");
    }
}
