//! The scenario text as a tree of YAML nodes that remember where they were written.
//!
//! serde-saphyr 0.0.10, the release in use, has no `Spanned<T>` and reports no position for
//! serde's own errors such as `unknown field`. (Later releases have `Spanned<T>`, from 0.0.13,
//! and releases up to 1.1.0 build with this workspace's Rust 1.88; the README's design notes say
//! why sipcheck stays on 0.0.10.) So positions come from a second, independent look at the same
//! text: [`parse`] runs `saphyr-parser` (the event parser under serde-saphyr) and keeps each node's start and end. Validation then asks for the
//! position of a *key path* such as `roles.caller.steps.2.call.to` ([`Node::walk`]), and the
//! loader finds the key an `unknown field` error is about ([`Node::find_key`]). The overrides
//! (`--set`) splice replacement text at these positions.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// A position in the text: line and column are 1-based, the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub(crate) line: u32,
    pub(crate) col: u32,
    pub(crate) byte: usize,
}

/// What a node holds.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Scalar {
        value: String,
    },
    Seq {
        items: Vec<Node>,
    },
    Map {
        entries: Vec<(Node, Node)>,
        flow: bool,
    },
}

/// A YAML node and the span of text it was written in.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) start: Pos,
    pub(crate) end: Pos,
    pub(crate) kind: Kind,
}

/// One step of a key path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A key path from the document root, such as `roles.caller.steps.2`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Path(pub(crate) Vec<Seg>);

impl Path {
    pub(crate) fn root() -> Self {
        Self(Vec::new())
    }

    /// This path followed by a mapping key.
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_owned()));
        p
    }

    /// This path followed by a sequence index.
    pub(crate) fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match seg {
                Seg::Key(k) if k.contains('.') => write!(f, "\"{k}\"")?,
                Seg::Key(k) => f.write_str(k)?,
                Seg::Index(n) => write!(f, "{n}")?,
            }
        }
        Ok(())
    }
}

/// Where a path ends in the tree.
pub(crate) struct Walk<'a> {
    /// How many segments were found.
    pub(crate) depth: usize,
    /// The key node of the last segment found, when it was a mapping key.
    pub(crate) key: Option<&'a Node>,
    /// The deepest node found (the root when nothing was).
    pub(crate) node: &'a Node,
}

impl Node {
    /// The scalar's text, if this is a scalar.
    pub(crate) fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The byte just after the node's text, without the line breaks and indentation a block
    /// node's span runs on into.
    pub(crate) fn text_end(&self, text: &str) -> usize {
        let (s, e) = (self.start.byte, self.end.byte.max(self.start.byte));
        s + text[s..e].trim_end().len()
    }

    /// The node's text, indented as in the file, so that it parses alone as it did in place.
    pub(crate) fn snippet(&self, text: &str) -> String {
        let indent = " ".repeat(self.start.col.saturating_sub(1) as usize);
        format!("{indent}{}", &text[self.start.byte..self.text_end(text)])
    }

    /// The key and value for one segment below this node.
    pub(crate) fn child(&self, seg: &Seg) -> Option<(Option<&Node>, &Node)> {
        match (&self.kind, seg) {
            (Kind::Map { entries, .. }, Seg::Key(k)) => entries
                .iter()
                .find(|(key, _)| key.scalar() == Some(k.as_str()))
                .map(|(key, value)| (Some(key), value)),
            (Kind::Seq { items, .. }, Seg::Index(i)) => items.get(*i).map(|v| (None, v)),
            _ => None,
        }
    }

    /// Follows `path` as far as it exists.
    pub(crate) fn walk(&self, path: &Path) -> Walk<'_> {
        let mut walk = Walk {
            depth: 0,
            key: None,
            node: self,
        };
        for seg in &path.0 {
            match walk.node.child(seg) {
                Some((key, value)) => {
                    walk.depth += 1;
                    walk.key = key;
                    walk.node = value;
                }
                None => break,
            }
        }
        walk
    }

    /// The first mapping key (in document order) named `name` whose sibling keys all satisfy
    /// `siblings_ok`.
    pub(crate) fn find_key(&self, name: &str, siblings_ok: &dyn Fn(&str) -> bool) -> Option<&Node> {
        match &self.kind {
            Kind::Scalar { .. } => None,
            Kind::Seq { items, .. } => items.iter().find_map(|n| n.find_key(name, siblings_ok)),
            Kind::Map { entries, .. } => {
                let here = entries.iter().find(|(k, _)| k.scalar() == Some(name));
                if let Some((key, _)) = here {
                    let all_ok = entries
                        .iter()
                        .filter_map(|(k, _)| k.scalar())
                        .all(|k| k == name || siblings_ok(k));
                    if all_ok {
                        return Some(key);
                    }
                }
                entries
                    .iter()
                    .find_map(|(_, v)| v.find_key(name, siblings_ok))
            }
        }
    }

    /// The entry of the first mapping key named `name`, in document order, whose sibling keys
    /// all satisfy `siblings_ok`; failing that (a mapping may hold several unknown keys), the
    /// first key named `name` at all. Returns the key, its value and whether the mapping is
    /// written in flow style (`{ a: 1 }`).
    pub(crate) fn find_entry(
        &self,
        name: &str,
        siblings_ok: &dyn Fn(&str) -> bool,
    ) -> Option<(&Node, &Node, bool)> {
        self.entry_where(name, Some(siblings_ok))
            .or_else(|| self.entry_where(name, None))
    }

    fn entry_where(
        &self,
        name: &str,
        siblings_ok: Option<&dyn Fn(&str) -> bool>,
    ) -> Option<(&Node, &Node, bool)> {
        match &self.kind {
            Kind::Scalar { .. } => None,
            Kind::Seq { items, .. } => items.iter().find_map(|n| n.entry_where(name, siblings_ok)),
            Kind::Map { entries, flow } => {
                let here = entries.iter().find(|(k, _)| k.scalar() == Some(name));
                if let Some((key, value)) = here {
                    let all_ok = siblings_ok.is_none_or(|ok| {
                        entries
                            .iter()
                            .filter_map(|(k, _)| k.scalar())
                            .all(|k| k == name || ok(k))
                    });
                    if all_ok {
                        return Some((key, value, *flow));
                    }
                }
                entries
                    .iter()
                    .find_map(|(_, v)| v.entry_where(name, siblings_ok))
            }
        }
    }

    /// The innermost sequence item whose text holds the byte `byte`.
    pub(crate) fn item_holding(&self, byte: usize) -> Option<&Node> {
        let holds = |n: &Node| n.start.byte <= byte && byte < n.end.byte.max(n.start.byte + 1);
        match &self.kind {
            Kind::Scalar { .. } => None,
            Kind::Seq { items } => items
                .iter()
                .find(|n| holds(n))
                .map(|item| item.item_holding(byte).unwrap_or(item)),
            Kind::Map { entries, .. } => entries
                .iter()
                .map(|(_, v)| v)
                .find(|v| holds(v))
                .and_then(|v| v.item_holding(byte)),
        }
    }

    /// The first scalar item of a sequence (in document order) whose text is `name`.
    pub(crate) fn find_seq_scalar(&self, name: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Scalar { .. } => None,
            Kind::Seq { items, .. } => items.iter().find_map(|n| {
                if n.scalar() == Some(name) {
                    Some(n)
                } else {
                    n.find_seq_scalar(name)
                }
            }),
            Kind::Map { entries, .. } => entries.iter().find_map(|(_, v)| v.find_seq_scalar(name)),
        }
    }
}

/// A YAML syntax error.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub(crate) pos: Pos,
    pub(crate) message: String,
}

/// Maps character indices and byte offsets to lines and columns.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    /// The byte offset at which each line starts.
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, line_starts }
    }

    /// The position of a byte offset (clamped to the text).
    pub(crate) fn pos(&self, byte: usize) -> Pos {
        let byte = byte.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= byte) - 1;
        let start = self.line_starts[line];
        let col = self.text[start..byte].chars().count();
        Pos {
            line: (line + 1) as u32,
            col: (col + 1) as u32,
            byte,
        }
    }

    /// The position of a line and 1-based column.
    pub(crate) fn pos_at(&self, line: u32, col: u32) -> Pos {
        let l = (line.max(1) as usize - 1).min(self.line_starts.len() - 1);
        let start = self.line_starts[l];
        let line_text = self.line(l as u32 + 1);
        let byte = line_text
            .char_indices()
            .nth(col.max(1) as usize - 1)
            .map_or(start + line_text.len(), |(i, _)| start + i);
        Pos {
            line: l as u32 + 1,
            col: col.max(1),
            byte,
        }
    }

    /// The text of a 1-based line, without its line end.
    pub(crate) fn line(&self, line: u32) -> &'a str {
        let l = line.max(1) as usize - 1;
        let Some(&start) = self.line_starts.get(l) else {
            return "";
        };
        let end = self
            .line_starts
            .get(l + 1)
            .map_or(self.text.len(), |&e| e - 1);
        self.text[start..end.max(start)].trim_end_matches('\r')
    }
}

enum Frame {
    Seq {
        start: Pos,
        flow: bool,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: Pos,
        flow: bool,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

/// The most nodes a scenario's tree may hold, aliases expanded: far above any real scenario
/// (a 1,000-step role is some 5,000 nodes), far below what an alias bomb (`&a [*b, *b, …]`
/// nested) expands to.
pub(crate) const MAX_NODES: usize = 200_000;

impl Node {
    /// How many nodes this one is, itself included.
    fn size(&self) -> usize {
        1 + match &self.kind {
            Kind::Scalar { .. } => 0,
            Kind::Seq { items } => items.iter().map(Node::size).sum(),
            Kind::Map { entries, .. } => entries.iter().map(|(k, v)| k.size() + v.size()).sum(),
        }
    }
}

/// Parses the first YAML document of `text` into a tree (`None` for an empty document).
///
/// Refuses a document that holds more than [`MAX_NODES`] nodes once its aliases are expanded.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let lines = LineIndex::new(text);
    // saphyr-parser counts characters; keep a table from character index to byte offset.
    let mut char_bytes: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    char_bytes.push(text.len());
    let at = |index: usize| lines.pos(char_bytes[index.min(char_bytes.len() - 1)]);

    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    // Each anchor's node and its size in nodes.
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut nodes: usize = 0;

    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| SyntaxError {
            pos: lines.pos_at(e.marker().line() as u32, e.marker().col() as u32 + 1),
            message: e.info().to_owned(),
        })?;
        let start = at(span.start.index());
        let end = at(span.end.index());
        // A tag of the core schema (`!!str`) is plain YAML; any other (`!Ref`, `!include`)
        // would ask for something a scenario does not do: refused, not silently ignored.
        if let Event::Scalar(_, _, _, Some(tag))
        | Event::SequenceStart(_, Some(tag))
        | Event::MappingStart(_, Some(tag)) = &event
        {
            if !tag.is_yaml_core_schema() {
                // The event starts at its value; the tag is written before it.
                let written = tag.to_string();
                let pos = text[..start.byte]
                    .rfind(written.as_str())
                    .map_or(start, |b| lines.pos(b));
                return Err(SyntaxError {
                    pos,
                    message: format!(
                        "the tag `{tag}` means nothing in a scenario: write the value without it"
                    ),
                });
            }
        }
        let complete: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => None,
            Event::DocumentEnd | Event::StreamEnd => break,
            Event::Alias(id) => match anchors.get(&id) {
                Some((node, size)) => {
                    nodes = nodes.saturating_add(*size);
                    if nodes > MAX_NODES {
                        return Err(SyntaxError {
                            pos: start,
                            message: format!(
                                "the document expands to more than {MAX_NODES} nodes with its aliases: refused"
                            ),
                        });
                    }
                    Some((
                        Node {
                            start,
                            end,
                            kind: node.kind.clone(),
                        },
                        0,
                    ))
                }
                None => {
                    return Err(SyntaxError {
                        pos: start,
                        message: "alias to an unknown anchor".into(),
                    })
                }
            },
            Event::Scalar(value, style, anchor, _) => {
                nodes += 1;
                let start = match style {
                    ScalarStyle::Literal | ScalarStyle::Folded => {
                        // The span starts at the content; the node starts at its `|` or `>`.
                        let header = text[..start.byte].rfind(['|', '>']).unwrap_or(start.byte);
                        lines.pos(header)
                    }
                    _ => start,
                };
                Some((
                    Node {
                        start,
                        end,
                        kind: Kind::Scalar {
                            value: value.into_owned(),
                        },
                    },
                    anchor,
                ))
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq {
                    start,
                    flow: span.start.index() != span.end.index(),
                    anchor,
                    items: Vec::new(),
                });
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map {
                    start,
                    flow: span.start.index() != span.end.index(),
                    anchor,
                    entries: Vec::new(),
                    key: None,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    start: s,
                    flow,
                    anchor,
                    items,
                }) => {
                    // (a flow sequence ends at its `]`, a block one at its last item)
                    let e = if flow {
                        end
                    } else {
                        items.last().map_or(s, |n| n.end)
                    };
                    Some((
                        Node {
                            start: s,
                            end: e,
                            kind: Kind::Seq { items },
                        },
                        anchor,
                    ))
                }
                _ => None,
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    start: s,
                    flow,
                    anchor,
                    entries,
                    ..
                }) => {
                    let e = if flow {
                        end
                    } else {
                        entries.last().map_or(s, |(_, v)| v.end)
                    };
                    Some((
                        Node {
                            start: s,
                            end: e,
                            kind: Kind::Map { entries, flow },
                        },
                        anchor,
                    ))
                }
                _ => None,
            },
        };
        if let Some((node, anchor)) = complete {
            if anchor != 0 {
                let size = node.size();
                anchors.insert(anchor, (node.clone(), size));
            }
            match stack.last_mut() {
                None => root = Some(node),
                Some(Frame::Seq { items, .. }) => items.push(node),
                Some(Frame::Map { entries, key, .. }) => match key.take() {
                    None => *key = Some(node),
                    Some(k) => entries.push((k, node)),
                },
            }
        }
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Path {
        Path(
            s.split('.')
                .map(|p| match p.parse() {
                    Ok(i) => Seg::Index(i),
                    Err(_) => Seg::Key(p.to_owned()),
                })
                .collect(),
        )
    }

    const DOC: &str = "\
name: x
roles:
  callee:
    steps:
      - register: { expires: 300 }
      - answer: {ring: 500ms}
      - hangup
  caller:
    steps:
      - call:
          to: \"sip:{peer}@pbx.test\"
";

    #[test]
    fn walks_key_paths_to_their_line_and_column() {
        let root = parse(DOC).unwrap().unwrap();
        let w = root.walk(&path("roles.callee.steps.1.answer.ring"));
        assert_eq!(w.depth, 6);
        assert_eq!((w.node.start.line, w.node.start.col), (6, 24));
        assert_eq!(w.key.map(|k| (k.start.line, k.start.col)), Some((6, 18)));
        let w = root.walk(&path("roles.caller.steps.0.call.to"));
        assert_eq!((w.node.start.line, w.node.start.col), (11, 15));
        assert_eq!(w.node.scalar(), Some("sip:{peer}@pbx.test"));
    }

    #[test]
    fn a_missing_path_stops_at_the_deepest_node_found() {
        let root = parse(DOC).unwrap().unwrap();
        let w = root.walk(&path("roles.callee.steps.2.hangup.after"));
        assert_eq!(w.depth, 4);
        assert_eq!(w.node.scalar(), Some("hangup"));
        assert_eq!((w.node.start.line, w.node.start.col), (7, 9));
    }

    #[test]
    fn finds_the_key_an_error_is_about_by_its_siblings() {
        let doc = "a:\n  rign: 1\n  other: 1\nb:\n  ring: 2\n  rign: 3\n";
        let root = parse(doc).unwrap().unwrap();
        let k = root.find_key("rign", &|s| s == "ring").unwrap();
        assert_eq!((k.start.line, k.start.col), (6, 3));
        assert!(root.find_key("nope", &|_| true).is_none());
    }

    #[test]
    fn flow_and_block_collections_have_spans() {
        let root = parse("a: {b: 1, c: [x, y]}\nd:\n  - 1\n  - 2\n")
            .unwrap()
            .unwrap();
        let a = root.walk(&path("a")).node;
        assert!(matches!(a.kind, Kind::Map { flow: true, .. }));
        assert_eq!((a.start.col, a.end.col), (4, 21));
        let d = root.walk(&path("d")).node;
        assert!(matches!(d.kind, Kind::Seq { .. }));
        assert_eq!((d.start.line, d.end.line, d.end.col), (3, 4, 6));
    }

    #[test]
    fn block_scalars_start_at_their_indicator() {
        let root = parse("d: |\n  text\ne: 1\n").unwrap().unwrap();
        let d = root.walk(&path("d")).node;
        assert_eq!((d.start.line, d.start.col), (1, 4));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let root = parse("name: \"é\"\nx: 1\n").unwrap().unwrap();
        let n = root.walk(&path("name")).node;
        assert_eq!((n.start.col, n.end.col, n.end.byte), (7, 10, 10));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
        assert!(!e.message.is_empty());
    }

    #[test]
    fn aliases_copy_the_anchored_node() {
        let root = parse("a: &x {b: 1}\nc: *x\n").unwrap().unwrap();
        let c = root.walk(&path("c.b")).node;
        assert_eq!(c.scalar(), Some("1"));
    }

    #[test]
    fn line_index_gives_lines_and_positions() {
        let li = LineIndex::new("ab\ncd\r\nef");
        assert_eq!(li.line(2), "cd");
        assert_eq!(li.line(3), "ef");
        assert_eq!(li.line(9), "");
        assert_eq!(
            li.pos(4),
            Pos {
                line: 2,
                col: 2,
                byte: 4
            }
        );
        assert_eq!(li.pos_at(3, 2).byte, 8);
    }
}
