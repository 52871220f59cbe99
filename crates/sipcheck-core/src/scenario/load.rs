//! Loading: YAML syntax → strict structure (serde) → validation, each error at its position.

use super::diag::{backticked, parse_unknown, serde_diag, syntax_diag};
use super::error::{mask_secrets, ScenarioError};
use super::model::Scenario;
use super::overrides::{self, Origin};
use super::raw::RawScenario;
use super::source::{self, LineIndex, Node, Path, Pos};
use super::validate::{validate, At, Inputs, Issue};

/// The longest scenario text read: a thousand times a large real one.
pub const MAX_SCENARIO_BYTES: u64 = 1 << 20;

/// Loads a scenario from its text.
///
/// `file_name` is only used in messages. `env` looks up environment variables for `${VAR}`
/// (pass `|_| None` for none). `files` reads the files a scenario names (a `csv:` of accounts,
/// a `wav:` to play), relative paths as written; its error is a reason, shown as is.
///
/// A YAML syntax error stops loading and is reported alone. Otherwise every problem is
/// reported, in the order of the file: every unknown key and unknown step, and every
/// validation problem of the rest (a structural error that cannot be set aside, such as a list
/// where a mapping belongs, ends the search there).
///
/// # Errors
/// Every problem found, each with `file:line:col`.
pub fn load(
    file_name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    files: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Scenario, Vec<ScenarioError>> {
    if text.len() as u64 > MAX_SCENARIO_BYTES {
        let e = ScenarioError::at(
            file_name,
            "",
            LineIndex::new("").pos(0),
            format!(
                "the scenario is {} bytes, more than the {} MiB a scenario may be",
                text.len(),
                MAX_SCENARIO_BYTES >> 20
            ),
        );
        return Err(vec![e]);
    }
    let root = match source::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let d = syntax_diag(text, &e);
            return Err(vec![
                ScenarioError::at(file_name, text, d.pos, d.message).with_hint(d.hint)
            ]);
        }
    };
    if root.is_none() {
        let e = ScenarioError::at(
            file_name,
            text,
            LineIndex::new(text).pos(0),
            "the scenario is empty",
        );
        return Err(vec![e.with_hint(Some(
            "a scenario needs `name`, `target`, `accounts` and `roles`; see scenarios/selftest.yaml".into(),
        ))]);
    }
    match serde_saphyr::from_str::<RawScenario>(text) {
        Ok(raw) => validated(file_name, text, root.as_ref(), &raw, env, files),
        Err(e) => Err(structural_errors(file_name, text, root, e, env, files)),
    }
}

/// Validates what serde read, each problem placed in `text`.
fn validated(
    file_name: &str,
    text: &str,
    root: Option<&Node>,
    raw: &RawScenario,
    env: &dyn Fn(&str) -> Option<String>,
    files: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Scenario, Vec<ScenarioError>> {
    let lines = LineIndex::new(text);
    let locate = |path: &Path| -> (u32, u32) {
        let pos = place(root, &At::Value(path.clone()), &lines);
        (pos.line, pos.col)
    };
    let inputs = Inputs {
        env,
        files,
        locate: &locate,
    };
    validate(raw, &inputs).map_err(|issues| issues_to_errors(file_name, text, root, issues))
}

/// The most structural errors (unknown keys, unknown steps) one load reports.
const MAX_STRUCTURAL_ERRORS: usize = 100;

/// Every structural error at once, and the validation problems of the rest.
///
/// serde stops at its first error. So the key (or step) an `unknown field`/`unknown variant`
/// error is about is blanked out of a copy of the text — replaced by spaces, so that every
/// byte, line and column keeps its place — and the copy is read again, until it reads (then
/// it is validated too, and its problems join the list) or an error cannot be blanked out
/// (a list where a mapping belongs: reported, and the reading stops there).
fn structural_errors(
    file_name: &str,
    text: &str,
    root: Option<Node>,
    first: serde_saphyr::Error,
    env: &dyn Fn(&str) -> Option<String>,
    files: &dyn Fn(&str) -> Result<String, String>,
) -> Vec<ScenarioError> {
    let lines = LineIndex::new(text);
    let mut current = text.to_owned();
    let mut tree = root;
    let mut error = first;
    let mut out: Vec<ScenarioError> = Vec::new();
    loop {
        let d = serde_diag(&current, tree.as_ref(), &error);
        let e = ScenarioError::at(file_name, text, lines.pos(d.pos.byte), d.message.clone())
            .with_hint(d.hint);
        if out.contains(&e) || out.len() >= MAX_STRUCTURAL_ERRORS {
            break;
        }
        out.push(e);
        let Some((from, to)) = tree
            .as_ref()
            .and_then(|t| blank_span(&current, t, &d.message))
        else {
            break;
        };
        blank(&mut current, from, to);
        tree = match source::parse(&current) {
            Ok(Some(t)) => Some(t),
            Ok(None) | Err(_) => break,
        };
        match serde_saphyr::from_str::<RawScenario>(&current) {
            Ok(raw) => {
                if let Err(more) = validated(file_name, &current, tree.as_ref(), &raw, env, files) {
                    // A key misspelt is also a key missing: that consequence (`the scenario
                    // needs `roles``, after `rolse:` was reported with its hint `roles`) is
                    // not reported twice.
                    let hinted: Vec<String> = out
                        .iter()
                        .filter_map(|e| e.hint.as_deref())
                        .flat_map(backticked)
                        .map(|n| {
                            // `server: host:port` names `server`.
                            let end = n
                                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                                .unwrap_or(n.len());
                            n[..end].to_owned()
                        })
                        .collect();
                    out.extend(
                        more.into_iter()
                            .filter(|e| !backticked(&e.message).iter().any(|n| hinted.contains(n)))
                            .map(|e| ScenarioError {
                                source_line: mask_secrets(lines.line(e.line)),
                                ..e
                            }),
                    );
                }
                break;
            }
            Err(e) => error = e,
        }
    }
    out.sort_by_key(|e| (e.file != file_name, e.line, e.col));
    out.dedup();
    out
}

/// The bytes to blank out for the structural error `message`: the entry of an unknown key,
/// or the list item of an unknown step (with its `-`, or a comma of a flow collection).
fn blank_span(text: &str, root: &Node, message: &str) -> Option<(usize, usize)> {
    let end_of = |n: &Node| n.text_end(text).max(n.start.byte);
    let (from, to, flow) = if let Some((name, expected)) = parse_unknown(message, "unknown field `")
    {
        let (key, value, flow) = root.find_entry(&name, &|s| expected.iter().any(|x| x == s))?;
        (key.start.byte, end_of(key).max(end_of(value)), flow)
    } else if let Some((name, _)) = parse_unknown(message, "unknown variant `") {
        let node = root
            .find_key(&name, &|_| true)
            .or_else(|| root.find_seq_scalar(&name))?;
        let item = root.item_holding(node.start.byte)?;
        let before = text[..item.start.byte].trim_end_matches([' ', '\t']);
        if before.ends_with('-') {
            (before.len() - 1, end_of(item), false)
        } else {
            (item.start.byte, end_of(item), true)
        }
    } else {
        return None;
    };
    if !flow {
        return Some((from, to));
    }
    // In `{ a: 1, b: 2 }` or `[a, b]` a comma goes with the entry: the one after it, or, for
    // the last entry, the one before it.
    let after = &text[to..];
    let skipped = after.len() - after.trim_start().len();
    if after.trim_start().starts_with(',') {
        return Some((from, to + skipped + 1));
    }
    let before = text[..from].trim_end();
    if before.ends_with(',') {
        return Some((before.len() - 1, to));
    }
    Some((from, to))
}

/// Replaces `text[from..to]` with spaces, keeping line ends and the length in bytes.
fn blank(text: &mut String, from: usize, to: usize) {
    let blanked: String = text[from..to]
        .chars()
        .flat_map(|c| {
            let n = if c == '\n' || c == '\r' {
                0
            } else {
                c.len_utf8()
            };
            std::iter::repeat_n(' ', n).chain((n == 0).then_some(c))
        })
        .collect();
    text.replace_range(from..to, &blanked);
}

/// [`load`] after applying `--set key=value` overrides ([`super::apply_overrides`]). An error
/// in an overridden value is reported against the override (file `--set`); every other error
/// keeps its line and column in the original text.
///
/// # Errors
/// As [`load`], and for an override whose path does not exist in the schema.
pub fn load_with_overrides(
    file_name: &str,
    text: &str,
    overrides: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
    files: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Scenario, Vec<ScenarioError>> {
    let applied = overrides::apply(text, overrides)?;
    load(file_name, &applied.text, env, files)
        .map_err(|errors| {
            let new_lines = LineIndex::new(&applied.text);
            let old_lines = LineIndex::new(text);
            errors
                .into_iter()
                .map(|e| {
                    if e.file != file_name || e.line == 0 {
                        return e;
                    }
                    let byte = new_lines.pos_at(e.line, e.col).byte;
                    match applied.origin(byte) {
                        Origin::Override(i) => {
                            overrides::error_for(overrides, i, None, e.message).with_hint(e.hint)
                        }
                        Origin::File(b) => {
                            let pos = old_lines.pos(b);
                            ScenarioError {
                                line: pos.line,
                                col: pos.col,
                                source_line: mask_secrets(old_lines.line(pos.line)),
                                ..e
                            }
                        }
                    }
                })
                .collect::<Vec<_>>()
        })
        .map_err(|mut errors| {
            // The file's errors in file order, then the overrides'.
            errors.sort_by_key(|e| (e.file != file_name, e.file == "--set", e.line, e.col));
            errors
        })
}

fn issues_to_errors(
    file: &str,
    text: &str,
    root: Option<&Node>,
    issues: Vec<Issue>,
) -> Vec<ScenarioError> {
    let lines = LineIndex::new(text);
    let mut out: Vec<ScenarioError> = issues
        .into_iter()
        .map(|issue| match issue.at {
            At::Placed(e) => *e,
            at => ScenarioError::at(file, text, place(root, &at, &lines), issue.message)
                .with_hint(issue.hint),
        })
        .collect();
    out.sort_by_key(|e| (e.file != file, e.line, e.col));
    out.dedup();
    out
}

/// Where an issue points: the value (or key) at the end of its path, or as deep as the path
/// exists.
fn place(root: Option<&Node>, at: &At, lines: &LineIndex<'_>) -> Pos {
    let Some(root) = root else {
        return lines.pos(0);
    };
    match at {
        At::Placed(e) => lines.pos_at(e.line, e.col),
        At::Value(path) => root.walk(path).node.start,
        At::Key(path) => {
            if path.0.is_empty() {
                return match &root.kind {
                    source::Kind::Map { entries, .. } => {
                        entries.first().map_or(root.start, |(k, _)| k.start)
                    }
                    _ => root.start,
                };
            }
            let w = root.walk(path);
            w.key.map_or(w.node.start, |k| k.start)
        }
    }
}
