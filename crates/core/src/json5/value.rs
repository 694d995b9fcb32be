//! The parsed tree: values with the byte span they were read from.

/// A half-open byte range `[start, end)` in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }
}

/// A JSON5 number, kept as its source text so integers never lose precision.
#[derive(Debug, Clone, PartialEq)]
pub struct Number {
    /// The literal as written, e.g. `0x1F`, `-.5`, `+Infinity`.
    pub text: String,
    /// The value as a float (hexadecimal and special values included).
    pub float: f64,
    /// The value as an integer, when the literal is one and it fits.
    pub int: Option<i128>,
}

/// A value in the tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Node>),
    /// Members in source order. Keys are unique (the parser rejects duplicates).
    Object(Vec<(Key, Node)>),
}

/// An object key and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

/// A value and the span of its source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

impl Node {
    /// A short name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    /// The member `name` of an object node.
    pub fn get(&self, name: &str) -> Option<&Node> {
        match &self.value {
            Value::Object(members) => members.iter().find(|(k, _)| k.name == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node at a dotted path (`gateway.auth.token`; array items by index, `models.0.id`).
    /// The empty path is the node itself.
    pub fn at_path(&self, path: &str) -> Option<&Node> {
        self.at_segments(&split_path(path))
    }

    /// The node at a path given as its segments (keys may contain `.`); no segments is the node
    /// itself.
    pub fn at_segments<S: AsRef<str>>(&self, segments: &[S]) -> Option<&Node> {
        let mut node = self;
        for segment in segments {
            let segment = segment.as_ref();
            node = match &node.value {
                Value::Object(_) => node.get(segment)?,
                Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The key span of the member at `path`, when the path ends in an object member.
    pub fn key_span_at_path(&self, path: &str) -> Option<Span> {
        let segments = split_path(path);
        let (last, init) = segments.split_last()?;
        let mut parent = self;
        for segment in init {
            parent = match &parent.value {
                Value::Object(_) => parent.get(segment)?,
                Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        let last = *last;
        match &parent.value {
            Value::Object(members) => members.iter().find(|(k, _)| k.name == last).map(|(k, _)| k.span),
            _ => None,
        }
    }

    /// Converts to a `serde_json::Value` (non-finite numbers become null).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Number(n) => match n.int {
                Some(i) if i >= i64::MIN as i128 && i <= i64::MAX as i128 => J::from(i as i64),
                Some(i) if i >= 0 && i <= u64::MAX as i128 => J::from(i as u64),
                _ => serde_json::Number::from_f64(n.float).map_or(J::Null, J::Number),
            },
            Value::String(s) => J::String(s.clone()),
            Value::Array(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Object(members) => J::Object(members.iter().map(|(k, v)| (k.name.clone(), v.to_json())).collect()),
        }
    }
}

/// Splits a key path into segments: `a.b[2].c` and `a.b.2.c` both give `a`, `b`, `2`, `c`.
pub fn split_path(path: &str) -> Vec<&str> {
    path.split(['.', '[', ']']).filter(|s| !s.is_empty()).collect()
}
