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
            source_line: lines.line(pos.line).to_owned(),
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
