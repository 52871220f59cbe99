//! Problems found before validation (YAML syntax, the serde model's refusals), placed in the
//! text with a hint where a usual trap explains them; shared by the loader and `--set`.

use super::raw::{OneOrMany, RawStep};
use super::source::{Kind, LineIndex, Node, Pos, Seg, SyntaxError};
use super::text::did_you_mean;

/// A problem found before validation, placed in the text.
pub(crate) struct Diag {
    pub(crate) pos: Pos,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

/// A YAML syntax error, with a hint for the usual trap.
pub(crate) fn syntax_diag(text: &str, e: &SyntaxError) -> Diag {
    let lines = LineIndex::new(text);
    Diag {
        pos: e.pos,
        message: format!("invalid YAML: {}", e.message),
        hint: quote_hint(lines.line(e.pos.line)).or_else(|| {
            e.pos
                .line
                .checked_sub(1)
                .and_then(|l| quote_hint(lines.line(l)))
        }),
    }
}

/// `key: > 99%` is a folded block scalar in YAML, not a comparison.
fn quote_hint(line: &str) -> Option<String> {
    let (_, value) = line.split_once(": ")?;
    let v = value.trim_start();
    let rest = v.strip_prefix('>')?.trim_start_matches('=').trim_start();
    rest.starts_with(|c: char| c.is_ascii_digit()).then(|| {
        format!(
            "quote a condition that starts with `>`: \"{}\"",
            v.trim_end()
        )
    })
}

/// A serde error, placed: serde-saphyr 0.0.10 gives no position for `unknown field`, so the
/// key it names is looked up in the tree (the first one, in document order, whose siblings
/// are all in the expected list).
pub(crate) fn serde_diag(text: &str, root: Option<&Node>, e: &serde_saphyr::Error) -> Diag {
    use serde_saphyr::Error as E;
    let lines = LineIndex::new(text);
    let message = match e {
        E::Message { msg, .. } | E::HookError { msg, .. } => msg.clone(),
        E::Unexpected { expected, .. } => match *expected {
            "mapping start" => "expected a mapping (`key: value` pairs) here".to_owned(),
            "string scalar" => "expected a single value here, not a list or a mapping".to_owned(),
            "sequence start" => "expected a list here".to_owned(),
            other => format!("expected {other} here"),
        },
        E::Eof { .. } => "the file ends too early".to_owned(),
        other => other.to_string(),
    };
    let known = e
        .location()
        .map(|l| lines.pos_at(l.line() as u32, l.column() as u32));
    let mut found: Option<Pos> = None;
    let mut hint: Option<String> = None;

    if let Some((name, expected)) = parse_unknown(&message, "unknown field `") {
        found = root
            .and_then(|r| r.find_key(&name, &|s| expected.iter().any(|x| x == s)))
            .map(|k| k.start);
        hint = special_hint(&name, &expected)
            .or_else(|| did_you_mean(&name, expected.iter().map(String::as_str)));
    } else if let Some((name, expected)) = parse_unknown(&message, "unknown variant `") {
        found = root
            .and_then(|r| {
                r.find_key(&name, &|_| true)
                    .or_else(|| r.find_seq_scalar(&name))
            })
            .map(|k| k.start);
        hint = did_you_mean(&name, expected.iter().map(String::as_str));
    } else if message.starts_with("step `") {
        let names = backticked(&message);
        if message.contains("` also has `") && names.len() >= 2 {
            let (step, extra) = (names[0].clone(), names[1].clone());
            found = root
                .and_then(|r| r.find_key(&extra, &|s| s == step))
                .map(|k| k.start);
        } else if let Some(step) = names.first() {
            found = root.and_then(|r| r.find_seq_scalar(step)).map(|n| n.start);
        }
    }
    let pos = found
        .or(known)
        .or_else(|| root.and_then(|r| locate_by_parts(text, r)))
        .unwrap_or_else(|| lines.pos(0));
    if hint.is_none() {
        hint = quote_hint(lines.line(pos.line));
    }
    Diag { pos, message, hint }
}

/// Where an error serde-saphyr could not place is: errors raised inside the step and list
/// visitors carry no position, so each step (and each threshold) is deserialised again on its
/// own, and the first that fails is the one. Its own error position, if any, is used.
fn locate_by_parts(text: &str, root: &Node) -> Option<Pos> {
    let lines = LineIndex::new(text);
    let child = |n: &'_ Node, k: &str| n.child(&Seg::Key(k.to_owned())).map(|(_, v)| v).cloned();
    if let Some(Node {
        kind: Kind::Map { entries, .. },
        ..
    }) = child(root, "roles")
    {
        for (_, role) in &entries {
            if let Some(Node {
                kind: Kind::Seq { items },
                ..
            }) = child(role, "steps")
            {
                if let Some(pos) = items
                    .iter()
                    .find_map(|s| alone::<RawStep>(text, s, &lines, true))
                {
                    return Some(pos);
                }
            }
        }
    }
    if let Some(Node {
        kind: Kind::Map { entries, .. },
        ..
    }) = child(root, "thresholds")
    {
        return entries
            .iter()
            .find_map(|(_, v)| alone::<OneOrMany<String>>(text, v, &lines, false));
    }
    None
}

/// Where `node` fails to deserialise as a `T` by itself, if it does (for a step, `name:
/// value`, at the value).
fn alone<T: serde::de::DeserializeOwned>(
    text: &str,
    node: &Node,
    lines: &LineIndex<'_>,
    step: bool,
) -> Option<Pos> {
    let e = serde_saphyr::from_str::<T>(&node.snippet(text)).err()?;
    Some(match e.location() {
        Some(l) => lines.pos_at(node.start.line + l.line() as u32 - 1, l.column() as u32),
        // A step is `name: value`: point at the value.
        None => match &node.kind {
            Kind::Map { entries, .. } if step && entries.len() == 1 => entries[0].1.start,
            _ => node.start,
        },
    })
}

/// `unknown field `x`, expected `a` or `b`` → ("x", ["a", "b"]).
pub(crate) fn parse_unknown(message: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(prefix)?;
    let (name, tail) = rest.split_once('`')?;
    Some((name.to_owned(), backticked(tail)))
}

/// Every `quoted` word in `s`.
pub(crate) fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// Hints for keys people bring from elsewhere.
fn special_hint(name: &str, expected: &[String]) -> Option<String> {
    let has = |k: &str| expected.iter().any(|e| e == k);
    match name {
        "proxy" | "registrar" | "host" if has("server") => Some(
            "the registrar / proxy is `server: host:port`; an outbound proxy is `outbound_proxy`"
                .into(),
        ),
        "pcap" if has("junit") => Some(
            "sipcheck writes `junit`, `json`, `calls`, `series`, `metrics` and `html` reports"
                .into(),
        ),
        "users" | "user" if has("accounts") => {
            Some("a role picks its users with `accounts: 1000..1049`".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folded_scalar_trap_gets_a_quote_hint() {
        assert_eq!(
            quote_hint("  audio.verified: > 99.5%").as_deref(),
            Some("quote a condition that starts with `>`: \"> 99.5%\"")
        );
        assert!(quote_hint("  audio.verified: >= 99%").is_some());
        assert_eq!(quote_hint("description: >"), None);
        assert_eq!(quote_hint("rate: 20/s"), None);
    }

    #[test]
    fn unknown_messages_split_into_name_and_expected() {
        let (n, e) =
            parse_unknown("unknown field `rign`, expected `ring`", "unknown field `").unwrap();
        assert_eq!((n.as_str(), e), ("rign", vec!["ring".to_owned()]));
        let (_, e) = parse_unknown(
            "unknown field `x`, expected one of `a`, `b`, `c`",
            "unknown field `",
        )
        .unwrap();
        assert_eq!(e, ["a", "b", "c"]);
    }
}
