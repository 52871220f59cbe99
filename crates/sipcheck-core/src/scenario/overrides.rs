//! `--set key=value`: change any value of a scenario from the command line, for CI.
//!
//! The override is spliced into the YAML *text*, at the position of the value it replaces (or
//! as a new `key: value` line at the end of the mapping it extends), so that everything else
//! keeps its line and column and its comments. Keys are dotted paths:
//!
//! ```text
//! load.rate=50/s
//! target.server=10.0.0.1:5060
//! roles.caller.steps.2.call.timeout=5s        # list items by index, from 0
//! thresholds."invite_to_200.p99"=< 400ms       # quotes keep a dotted name in one piece
//! media.codecs=[PCMA]                          # a value starting with [ or { is YAML
//! ```
//!
//! Any other value is inserted as a quoted string (the scenario checks units itself). A path
//! that leads nowhere in the schema is reported against the override, with a suggestion.

use super::diag::{serde_diag, syntax_diag};
use super::error::ScenarioError;
use super::raw::RawScenario;
use super::source::{self, Kind, Node};

/// One change made to the text.
#[derive(Debug, Clone)]
pub(crate) struct Splice {
    /// Where, in the text as it was when this splice was made.
    at: usize,
    removed: usize,
    inserted: usize,
    /// Which override made it.
    index: usize,
}

/// The text after the overrides, and how to map positions back.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    pub(crate) text: String,
    splices: Vec<Splice>,
}

/// Where a byte of the overridden text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// This byte of the original text.
    File(usize),
    /// The text written by this override.
    Override(usize),
}

impl Applied {
    pub(crate) fn origin(&self, byte: usize) -> Origin {
        let mut b = byte;
        for s in self.splices.iter().rev() {
            if b >= s.at + s.inserted {
                b = b - s.inserted + s.removed;
            } else if b >= s.at {
                return Origin::Override(s.index);
            }
        }
        Origin::File(b)
    }
}

/// Splits a `--set` argument, `key=value`, at its first `=`.
///
/// # Errors
/// A [`ScenarioError`] in `--set` when there is no `=` or no key.
pub fn parse_override(arg: &str) -> Result<(String, String), ScenarioError> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(ScenarioError {
            file: "--set".into(),
            line: 1,
            col: 1,
            message: format!("'{arg}' is not an override: expected key=value, like load.rate=50/s"),
            source_line: arg.to_owned(),
            hint: None,
        }),
    }
}

/// Splits every `--set` argument ([`parse_override`]), reporting all bad ones, each with its
/// number as the line.
///
/// # Errors
/// One [`ScenarioError`] per argument without `key=`.
pub fn parse_overrides<S: AsRef<str>>(
    args: &[S],
) -> Result<Vec<(String, String)>, Vec<ScenarioError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        match parse_override(arg.as_ref()) {
            Ok(pair) => out.push(pair),
            Err(e) => errors.push(ScenarioError {
                line: (i + 1) as u32,
                ..e
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Applies `overrides` (in order; a later one wins) to the scenario `text` and returns the
/// new text, ready for [`super::load`].
///
/// # Errors
/// One [`ScenarioError`] per override that cannot apply (file `--set`, line = the override's
/// number from 1): a path through a single value or past the end of a list, a value that is not
/// YAML, or a key the schema does not have.
pub fn apply_overrides(
    text: &str,
    overrides: &[(String, String)],
) -> Result<String, Vec<ScenarioError>> {
    apply(text, overrides).map(|a| a.text)
}

/// An error about override `i`, at `col` of `key=value` (default: the value).
pub(crate) fn error_for(
    overrides: &[(String, String)],
    i: usize,
    col: Option<u32>,
    message: String,
) -> ScenarioError {
    let (k, v) = &overrides[i];
    ScenarioError {
        file: "--set".into(),
        line: (i + 1) as u32,
        col: col.unwrap_or(k.chars().count() as u32 + 2),
        message,
        source_line: super::error::mask_secrets(&format!("{k}={v}")),
        hint: None,
    }
}

/// One segment of a dotted key and its column in the argument.
#[derive(Debug, Clone)]
struct Seg {
    text: String,
    col: u32,
}

fn split_key(key: &str) -> Result<Vec<Seg>, (u32, String)> {
    let chars: Vec<char> = key.chars().collect();
    let mut segs = Vec::new();
    let mut i = 0;
    loop {
        let col = (i + 1) as u32;
        let mut text = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err((col, format!("`{key}` has a `\"` without its closing `\"`")))
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        text.push(c);
                        i += 1;
                    }
                }
            }
            if !matches!(chars.get(i), None | Some('.')) {
                return Err((
                    (i + 1) as u32,
                    format!("`{key}`: expected `.` after a quoted name"),
                ));
            }
        } else {
            while let Some(&c) = chars.get(i).filter(|&&c| c != '.') {
                text.push(c);
                i += 1;
            }
        }
        if text.is_empty() {
            return Err((col, format!("`{key}` has an empty name")));
        }
        segs.push(Seg { text, col });
        if i >= chars.len() {
            return Ok(segs);
        }
        i += 1;
    }
}

/// A value as YAML: `[…]` and `{…}` as written, anything else as a double-quoted string.
fn render_value(v: &str) -> String {
    let t = v.trim_start();
    if t.starts_with('[') || t.starts_with('{') {
        return v.trim().to_owned();
    }
    quote(v)
}

fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn render_key(k: &str) -> String {
    let plain = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        k.to_owned()
    } else {
        quote(k)
    }
}

/// What one override does to the text: replace `start..end` with `with`.
struct Edit {
    start: usize,
    end: usize,
    with: String,
}

fn plan_edit(text: &str, root: &Node, segs: &[Seg], value: &str) -> Result<Edit, (u32, String)> {
    let mut node = root;
    let mut i = 0;
    let mut walked: Vec<String> = Vec::new();
    let shown = |walked: &[String]| {
        if walked.is_empty() {
            "the scenario".to_owned()
        } else {
            format!("`{}`", walked.join("."))
        }
    };
    while i < segs.len() {
        match &node.kind {
            Kind::Map { entries, flow } => {
                // The longest run of segments that names an existing key (`invite_to_200.p99`).
                let found = (i + 1..=segs.len()).rev().find_map(|j| {
                    let name = segs[i..j]
                        .iter()
                        .map(|s| s.text.as_str())
                        .collect::<Vec<_>>()
                        .join(".");
                    entries
                        .iter()
                        .find(|(k, _)| k.scalar() == Some(name.as_str()))
                        .map(|(_, v)| (j, name, v))
                });
                if let Some((j, name, v)) = found {
                    walked.push(name);
                    node = v;
                    i = j;
                    continue;
                }
                // A new key. Under `thresholds` a dotted name is one key.
                let (key, rest) = if walked == ["thresholds"] {
                    let all = segs[i..]
                        .iter()
                        .map(|s| s.text.as_str())
                        .collect::<Vec<_>>()
                        .join(".");
                    (all, &segs[segs.len()..])
                } else {
                    (segs[i].text.clone(), &segs[i + 1..])
                };
                let mut nested = render_value(value);
                if walked.is_empty() && key == "thresholds" && !rest.is_empty() {
                    // A new `thresholds`: the rest is one dotted metric name.
                    let name = rest
                        .iter()
                        .map(|s| s.text.as_str())
                        .collect::<Vec<_>>()
                        .join(".");
                    nested = format!("{{{}: {nested}}}", render_key(&name));
                } else {
                    for seg in rest.iter().rev() {
                        nested = format!("{{{}: {nested}}}", render_key(&seg.text));
                    }
                }
                let entry = format!("{}: {nested}", render_key(&key));
                return Ok(if *flow {
                    match entries.last() {
                        None => Edit {
                            start: node.start.byte + 1,
                            end: node.start.byte + 1,
                            with: entry,
                        },
                        Some((_, last)) => {
                            let at = last.text_end(text);
                            Edit {
                                start: at,
                                end: at,
                                with: format!(", {entry}"),
                            }
                        }
                    }
                } else {
                    let last_end = entries
                        .last()
                        .map_or(node.start.byte, |(_, v)| v.text_end(text));
                    let at = text[last_end..]
                        .find('\n')
                        .map_or(text.len(), |o| last_end + o);
                    let indent = " ".repeat(node.start.col.saturating_sub(1) as usize);
                    Edit {
                        start: at,
                        end: at,
                        with: format!("\n{indent}{entry}"),
                    }
                });
            }
            Kind::Seq { items, .. } => {
                let seg = &segs[i];
                match seg.text.parse::<usize>() {
                    Ok(n) if n < items.len() => {
                        walked.push(seg.text.clone());
                        node = &items[n];
                        i += 1;
                    }
                    Ok(n) => {
                        return Err((
                            seg.col,
                            format!(
                                "{} has {} items (from 0): there is no item {n}",
                                shown(&walked),
                                items.len()
                            ),
                        ))
                    }
                    Err(_) => {
                        return Err((
                            seg.col,
                            format!(
                                "{} is a list: `{}` is not an item number",
                                shown(&walked),
                                seg.text
                            ),
                        ))
                    }
                }
            }
            Kind::Scalar { .. } => {
                return Err((
                    segs[i].col,
                    format!(
                        "{} is a single value: it has no `{}`",
                        shown(&walked),
                        segs[i].text
                    ),
                ))
            }
        }
    }
    Ok(Edit {
        start: node.start.byte,
        end: node.text_end(text),
        with: render_value(value),
    })
}

pub(crate) fn apply(
    text: &str,
    overrides: &[(String, String)],
) -> Result<Applied, Vec<ScenarioError>> {
    let mut applied = Applied {
        text: text.to_owned(),
        splices: Vec::new(),
    };
    if overrides.is_empty() {
        return Ok(applied);
    }
    let mut errors = Vec::new();
    for (index, (key, value)) in overrides.iter().enumerate() {
        let root = match source::parse(&applied.text) {
            Ok(Some(root)) => root,
            // A broken or empty file: `load` reports it.
            Ok(None) if index == 0 => {
                errors.push(error_for(
                    overrides,
                    index,
                    Some(1),
                    "the scenario is empty: there is nothing to override".into(),
                ));
                break;
            }
            _ => return Ok(applied),
        };
        let edit = split_key(key).and_then(|segs| plan_edit(&applied.text, &root, &segs, value));
        let edit = match edit {
            Ok(e) => e,
            Err((col, message)) => {
                errors.push(error_for(overrides, index, Some(col), message));
                continue;
            }
        };
        let mut next = applied.text.clone();
        next.replace_range(edit.start..edit.end, &edit.with);
        if let Err(e) = source::parse(&next) {
            let d = syntax_diag(&next, &e);
            errors.push(error_for(
                overrides,
                index,
                None,
                format!("the value is not valid here: {}", d.message),
            ));
            continue;
        }
        applied.splices.push(Splice {
            at: edit.start,
            removed: edit.end - edit.start,
            inserted: edit.with.len(),
            index,
        });
        applied.text = next;
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // The structure check: a key the schema does not have, a list where a mapping belongs.
    if let Err(e) = serde_saphyr::from_str::<RawScenario>(&applied.text) {
        let root = source::parse(&applied.text).ok().flatten();
        let d = serde_diag(&applied.text, root.as_ref(), &e);
        if let Origin::Override(i) = applied.origin(d.pos.byte) {
            let col = split_key(&overrides[i].0).ok().and_then(|segs| {
                let name = d.message.split('`').nth(1)?;
                segs.iter().find(|s| s.text == name).map(|s| s.col)
            });
            return Err(vec![
                error_for(overrides, i, col, d.message).with_hint(d.hint)
            ]);
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const DOC: &str = "\
name: t   # a comment
target:
  server: 127.0.0.1:5060
load:
  rate: 20/s
  total_calls: 100
thresholds:
  invite_to_200.p99: < 500ms
roles:
  caller:
    steps:
      - call: { to: \"sip:{peer}@x\", timeout: 10s }
      - hangup
";

    #[test]
    fn splits_keys_with_quoted_names() {
        let segs = split_key("thresholds.\"invite_to_200.p99\"").unwrap();
        let texts: Vec<&str> = segs.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["thresholds", "invite_to_200.p99"]);
        assert_eq!(segs[1].col, 12);
        assert!(split_key("a..b").is_err());
        assert!(split_key("a.\"b").is_err());
    }

    #[test]
    fn replaces_a_value_in_place_and_keeps_the_rest() {
        let out = apply_overrides(DOC, &set(&[("load.rate", "50/s")])).unwrap();
        assert_eq!(out, DOC.replace("rate: 20/s", "rate: \"50/s\""));
        let out = apply_overrides(DOC, &set(&[("target.server", "10.0.0.1:5060")])).unwrap();
        assert!(out.contains("  server: \"10.0.0.1:5060\"\n"), "{out}");
        assert!(out.starts_with("name: t   # a comment\n"));
    }

    #[test]
    fn replaces_inside_flow_mappings_and_list_items() {
        let out =
            apply_overrides(DOC, &set(&[("roles.caller.steps.0.call.timeout", "5s")])).unwrap();
        assert!(
            out.contains("- call: { to: \"sip:{peer}@x\", timeout: \"5s\" }"),
            "{out}"
        );
        let out = apply_overrides(DOC, &set(&[("roles.caller.steps.1", "{hangup: 2s}")])).unwrap();
        assert!(out.contains("      - {hangup: 2s}\n"), "{out}");
    }

    #[test]
    fn dotted_names_match_existing_keys_or_quoted() {
        let out =
            apply_overrides(DOC, &set(&[("thresholds.invite_to_200.p99", "< 400ms")])).unwrap();
        assert!(out.contains("  invite_to_200.p99: \"< 400ms\"\n"), "{out}");
        let out = apply_overrides(DOC, &set(&[("thresholds.\"calls.failed\"", "< 1%")])).unwrap();
        assert!(
            out.contains("  invite_to_200.p99: < 500ms\n  calls.failed: \"< 1%\"\n"),
            "{out}"
        );
        let out = apply_overrides(DOC, &set(&[("thresholds.rtp.loss", "< 1%")])).unwrap();
        assert!(out.contains("\n  rtp.loss: \"< 1%\"\n"), "{out}");
    }

    #[test]
    fn a_threshold_set_in_a_scenario_without_thresholds_keeps_its_dotted_name() {
        let doc = "name: t\nload: { rate: 1/s }\n";
        let out = apply_overrides(doc, &set(&[("thresholds.calls.not_started", "<= 2")])).unwrap();
        assert_eq!(
            out,
            "name: t\nload: { rate: 1/s }\nthresholds: {calls.not_started: \"<= 2\"}\n"
        );
    }

    #[test]
    fn adds_missing_keys_to_block_and_flow_mappings() {
        let out = apply_overrides(DOC, &set(&[("load.ramp_up", "10s")])).unwrap();
        assert!(
            out.contains("  total_calls: 100\n  ramp_up: \"10s\"\nthresholds:"),
            "{out}"
        );
        let out = apply_overrides(DOC, &set(&[("target.transport", "tcp")])).unwrap();
        assert!(
            out.contains("  server: 127.0.0.1:5060\n  transport: \"tcp\"\n"),
            "{out}"
        );
        let out = apply_overrides(DOC, &set(&[("media.ptime", "30ms")])).unwrap();
        assert!(
            out.contains("      - hangup\nmedia: {ptime: \"30ms\"}"),
            "{out}"
        );
        let out =
            apply_overrides(DOC, &set(&[("roles.caller.steps.0.call.peer", "callee")])).unwrap();
        assert!(out.contains("timeout: 10s, peer: \"callee\" }"), "{out}");
    }

    #[test]
    fn an_unknown_path_is_an_error_with_a_suggestion() {
        let e = apply_overrides(DOC, &set(&[("load.rat", "50/s")])).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].file.as_str(), e[0].line, e[0].col), ("--set", 1, 6));
        assert!(
            e[0].message.starts_with("unknown field `rat`"),
            "{}",
            e[0].message
        );
        assert_eq!(e[0].hint.as_deref(), Some("did you mean `rate`?"));
        assert_eq!(e[0].source_line, "load.rat=50/s");
        let e = apply_overrides(DOC, &set(&[("lod.rate", "50/s")])).unwrap_err();
        assert_eq!(e[0].hint.as_deref(), Some("did you mean `load`?"));
    }

    #[test]
    fn paths_through_values_and_past_lists_are_errors() {
        let e = apply_overrides(
            DOC,
            &set(&[
                ("load.rate.x", "1"),
                ("roles.caller.steps.7", "hangup"),
                ("name", "ok"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].message, "`load.rate` is a single value: it has no `x`");
        assert_eq!((e[0].line, e[0].col), (1, 11));
        assert_eq!(
            e[1].message,
            "`roles.caller.steps` has 2 items (from 0): there is no item 7"
        );
        assert_eq!(e[1].line, 2);
    }

    #[test]
    fn a_value_that_breaks_the_yaml_is_an_error() {
        let e = apply_overrides(DOC, &set(&[("media", "[PCMU")])).unwrap_err();
        assert!(
            e[0].message.starts_with("the value is not valid here"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn later_overrides_win() {
        let out =
            apply_overrides(DOC, &set(&[("load.rate", "1/s"), ("load.rate", "2/s")])).unwrap();
        assert!(out.contains("rate: \"2/s\""), "{out}");
    }

    #[test]
    fn positions_map_back_through_the_splices() {
        let a = apply(DOC, &set(&[("load.ramp_up", "10s")])).unwrap();
        let inserted = a.text.find("ramp_up").unwrap();
        assert_eq!(a.origin(inserted), Origin::Override(0));
        let after = a.text.find("thresholds").unwrap();
        assert_eq!(
            a.origin(after),
            Origin::File(DOC.find("thresholds").unwrap())
        );
        assert_eq!(a.origin(0), Origin::File(0));
    }

    #[test]
    fn values_are_quoted_unless_they_are_flow_yaml() {
        assert_eq!(render_value("< 500ms"), "\"< 500ms\"");
        assert_eq!(render_value("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(render_value("[PCMU, PCMA]"), "[PCMU, PCMA]");
        assert_eq!(render_key("invite_to_200.p99"), "invite_to_200.p99");
        assert_eq!(render_key("a b"), "\"a b\"");
    }

    #[test]
    fn override_arguments() {
        assert_eq!(
            parse_override("load.rate=50/s").unwrap(),
            ("load.rate".to_owned(), "50/s".to_owned())
        );
        assert_eq!(parse_override("a=b=c").unwrap().1, "b=c");
        assert!(parse_override("=x").is_err());
        assert!(parse_override("novalue").is_err());
        let e = parse_overrides(&["a=1", "bad", "=x"]).unwrap_err();
        let lines: Vec<u32> = e.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3]);
        assert_eq!(
            e[0].message,
            "'bad' is not an override: expected key=value, like load.rate=50/s"
        );
        assert_eq!(
            parse_overrides(&["a=1"]).unwrap(),
            [("a".to_owned(), "1".to_owned())]
        );
    }
}
