//! A small JSON-Schema-like validator for request parameters and frames.
//!
//! Every method declares its parameters as a [`Schema`] (usually a closed [`Object`]: unknown
//! keys are refused), and the dispatcher validates before a handler runs, so handlers only see
//! well-formed input. Errors are worded the way OpenClaw's gateway words them (its validator's
//! English messages, joined by `; `), because clients print them verbatim:
//!
//! `invalid chat.history params: must have required property 'sessionKey'; at root: unexpected property 'bogus'`
//!
//! Order of checks inside an object: required properties, then unexpected properties, then each
//! declared property in declaration order. A value of the wrong type yields one error and its
//! inner checks are skipped. This module must stay free of I/O and must never panic on any
//! input (a property test feeds it arbitrary JSON).

use serde_json::Value;

/// What a value must look like.
#[derive(Debug, Clone, Copy)]
pub enum Schema {
    /// Anything, including `null`.
    Any,
    /// Only `null` (with [`Schema::AnyOf`], a value that may be cleared).
    Null,
    Bool,
    /// A string of `min..=max` characters (Unicode scalar values).
    Str {
        min: usize,
        max: Option<usize>,
    },
    /// A whole number within the bounds.
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    /// Any number within the bounds.
    Num {
        min: Option<f64>,
        max: Option<f64>,
    },
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// Exactly this string.
    Const(&'static str),
    Array {
        items: &'static Schema,
        min_items: usize,
        max_items: Option<usize>,
    },
    Object(&'static Object),
    /// An object whose values all match the schema (any keys).
    Map(&'static Schema),
    /// Valid when at least one alternative is.
    AnyOf(&'static [Schema]),
}

/// An object's declared properties.
#[derive(Debug)]
pub struct Object {
    pub props: &'static [Prop],
    /// Refuse properties that are not declared.
    pub closed: bool,
}

/// One declared property.
#[derive(Debug)]
pub struct Prop {
    pub name: &'static str,
    pub schema: Schema,
    pub required: bool,
}

/// A required property.
pub const fn req(name: &'static str, schema: Schema) -> Prop {
    Prop { name, schema, required: true }
}

/// An optional property.
pub const fn opt(name: &'static str, schema: Schema) -> Prop {
    Prop { name, schema, required: false }
}

/// A closed object with no properties: `{}` only.
pub static EMPTY: Object = Object { props: &[], closed: true };

impl Schema {
    /// Any string, including the empty one.
    pub const STRING: Schema = Schema::Str { min: 0, max: None };
    /// A string of at least one character.
    pub const NON_EMPTY: Schema = Schema::Str { min: 1, max: None };
    pub const INT: Schema = Schema::Int { min: None, max: None };
    /// A whole number ≥ 0.
    pub const UINT: Schema = Schema::Int { min: Some(0), max: None };
    /// An array of strings.
    pub const STRINGS: Schema = Schema::Array { items: &Schema::STRING, min_items: 0, max_items: None };
    /// An object with any keys and values.
    pub const OBJECT: Schema = Schema::Map(&Schema::Any);

    pub const fn str_max(max: usize) -> Schema {
        Schema::Str { min: 0, max: Some(max) }
    }

    pub const fn str_range(min: usize, max: usize) -> Schema {
        Schema::Str { min, max: Some(max) }
    }

    pub const fn int_range(min: i64, max: i64) -> Schema {
        Schema::Int { min: Some(min), max: Some(max) }
    }

    pub const fn int_min(min: i64) -> Schema {
        Schema::Int { min: Some(min), max: None }
    }
}

/// One problem found, at a JSON-pointer-like path (`""` is the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub kind: IssueKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueKind {
    Required(String),
    Unexpected(String),
    Other(String),
}

fn is_integer(v: &Value) -> Option<f64> {
    let n = v.as_f64()?;
    (n.fract() == 0.0).then_some(n)
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

struct Checker {
    issues: Vec<Issue>,
}

impl Checker {
    fn other(&mut self, path: &str, message: String) {
        self.issues.push(Issue { path: path.to_string(), kind: IssueKind::Other(message) });
    }

    fn check(&mut self, schema: &Schema, value: &Value, path: &str) {
        match schema {
            Schema::Any => {}
            Schema::Null => {
                if !value.is_null() {
                    self.other(path, "must be null".into());
                }
            }
            Schema::Bool => {
                if !value.is_boolean() {
                    self.other(path, "must be boolean".into());
                }
            }
            Schema::Str { min, max } => {
                let Some(s) = value.as_str() else { return self.other(path, "must be string".into()) };
                let n = s.chars().count();
                if n < *min {
                    self.other(path, format!("must NOT have fewer than {min} characters"));
                }
                if let Some(max) = max
                    && n > *max
                {
                    self.other(path, format!("must NOT have more than {max} characters"));
                }
            }
            Schema::Int { min, max } => {
                let Some(n) = is_integer(value) else { return self.other(path, "must be integer".into()) };
                if let Some(min) = min
                    && n < *min as f64
                {
                    self.other(path, format!("must be >= {min}"));
                }
                if let Some(max) = max
                    && n > *max as f64
                {
                    self.other(path, format!("must be <= {max}"));
                }
            }
            Schema::Num { min, max } => {
                let Some(n) = value.as_f64() else { return self.other(path, "must be number".into()) };
                if let Some(min) = min
                    && n < *min
                {
                    self.other(path, format!("must be >= {min}"));
                }
                if let Some(max) = max
                    && n > *max
                {
                    self.other(path, format!("must be <= {max}"));
                }
            }
            Schema::Enum(allowed) => match value.as_str() {
                Some(s) if allowed.contains(&s) => {}
                Some(_) => self.other(path, "must be equal to one of the allowed values".into()),
                None => self.other(path, "must be string".into()),
            },
            Schema::Const(c) => {
                if value.as_str() != Some(c) {
                    self.other(path, "must be equal to constant".into());
                }
            }
            Schema::Array { items, min_items, max_items } => {
                let Some(list) = value.as_array() else { return self.other(path, "must be array".into()) };
                if list.len() < *min_items {
                    self.other(path, format!("must NOT have fewer than {min_items} items"));
                }
                if let Some(max) = max_items
                    && list.len() > *max
                {
                    self.other(path, format!("must NOT have more than {max} items"));
                }
                for (i, item) in list.iter().enumerate() {
                    self.check(items, item, &format!("{path}/{i}"));
                }
            }
            Schema::Map(values) => {
                let Some(map) = value.as_object() else { return self.other(path, "must be object".into()) };
                for (k, v) in map {
                    self.check(values, v, &format!("{path}/{}", escape(k)));
                }
            }
            Schema::Object(object) => {
                let Some(map) = value.as_object() else { return self.other(path, "must be object".into()) };
                for p in object.props.iter().filter(|p| p.required) {
                    if !map.contains_key(p.name) {
                        self.issues.push(Issue { path: path.to_string(), kind: IssueKind::Required(p.name.into()) });
                    }
                }
                if object.closed {
                    for k in map.keys() {
                        if !object.props.iter().any(|p| p.name == k) {
                            self.issues.push(Issue { path: path.to_string(), kind: IssueKind::Unexpected(k.clone()) });
                        }
                    }
                }
                for p in object.props {
                    if let Some(v) = map.get(p.name) {
                        self.check(&p.schema, v, &format!("{path}/{}", escape(p.name)));
                    }
                }
            }
            Schema::AnyOf(options) => {
                let matched = options.iter().any(|o| {
                    let mut inner = Checker { issues: Vec::new() };
                    inner.check(o, value, path);
                    inner.issues.is_empty()
                });
                if !matched {
                    self.other(path, "must match a schema in anyOf".into());
                }
            }
        }
    }
}

/// Every problem with `value`, in a stable order; empty when it is valid.
pub fn issues(schema: &Schema, value: &Value) -> Vec<Issue> {
    let mut c = Checker { issues: Vec::new() };
    c.check(schema, value, "");
    c.issues
}

/// The issues as one line, in OpenClaw's wording.
pub fn describe(issues: &[Issue]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for i in issues {
        let text = match &i.kind {
            IssueKind::Unexpected(k) => {
                let at = if i.path.is_empty() { "at root".to_string() } else { format!("at {}", i.path) };
                format!("{at}: unexpected property '{k}'")
            }
            IssueKind::Required(k) if i.path.is_empty() => format!("must have required property '{k}'"),
            IssueKind::Required(k) => format!("at {}: must have required property '{k}'", i.path),
            IssueKind::Other(m) if i.path.is_empty() => m.clone(),
            IssueKind::Other(m) => format!("at {}: {m}", i.path),
        };
        if !parts.contains(&text) {
            parts.push(text);
        }
    }
    if parts.is_empty() { "unknown validation error".into() } else { parts.join("; ") }
}

/// Validates and returns the one-line description of what is wrong, if anything.
pub fn validate(schema: &Schema, value: &Value) -> Result<(), String> {
    let found = issues(schema, value);
    if found.is_empty() { Ok(()) } else { Err(describe(&found)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static INNER: Object = Object { props: &[req("id", Schema::NON_EMPTY)], closed: true };
    static SAMPLE: Object = Object {
        props: &[
            req("sessionKey", Schema::str_range(1, 512)),
            opt("limit", Schema::int_range(1, 1000)),
            opt("mode", Schema::Enum(&["now", "next-heartbeat"])),
            opt("client", Schema::Object(&INNER)),
            opt("tags", Schema::STRINGS),
            opt("either", Schema::AnyOf(&[Schema::Bool, Schema::Const("auto")])),
        ],
        closed: true,
    };
    const S: Schema = Schema::Object(&SAMPLE);

    #[test]
    fn words_errors_like_openclaw() {
        assert_eq!(
            validate(&S, &json!({"bogus": 1})).unwrap_err(),
            "must have required property 'sessionKey'; at root: unexpected property 'bogus'"
        );
        assert_eq!(
            validate(&S, &json!({"sessionKey": ""})).unwrap_err(),
            "at /sessionKey: must NOT have fewer than 1 characters"
        );
        assert_eq!(
            validate(&S, &json!({"sessionKey": "k", "limit": 0, "mode": "later"})).unwrap_err(),
            "at /limit: must be >= 1; at /mode: must be equal to one of the allowed values"
        );
        assert_eq!(validate(&S, &json!({"sessionKey": 5})).unwrap_err(), "at /sessionKey: must be string");
        assert_eq!(validate(&S, &json!({"sessionKey": "k", "limit": 1.5})).unwrap_err(), "at /limit: must be integer");
        assert_eq!(
            validate(&S, &json!({"sessionKey": "k", "client": {"x": 1}})).unwrap_err(),
            "at /client: must have required property 'id'; at /client: unexpected property 'x'"
        );
        assert_eq!(
            validate(&S, &json!({"sessionKey": "k", "tags": ["a", 2]})).unwrap_err(),
            "at /tags/1: must be string"
        );
        assert_eq!(
            validate(&S, &json!({"sessionKey": "k", "either": "no"})).unwrap_err(),
            "at /either: must match a schema in anyOf"
        );
        assert_eq!(validate(&S, &json!([])).unwrap_err(), "must be object");
        assert!(
            validate(&S, &json!({"sessionKey": "k", "limit": 10.0, "either": "auto", "client": {"id": "x"}})).is_ok()
        );
        assert_eq!(
            validate(&S, &json!({"sessionKey": "x".repeat(513)})).unwrap_err(),
            "at /sessionKey: must NOT have more than 512 characters"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn arb_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
                "[a-zA-Z/~]{0,8}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                    prop::collection::btree_map(
                        prop_oneof![Just("sessionKey".to_string()), Just("limit".to_string()), "[a-z/~]{1,6}"],
                        inner,
                        0..5
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn never_panics_and_is_consistent(v in arb_json()) {
                let found = issues(&S, &v);
                let text = describe(&found);
                prop_assert_eq!(found.is_empty(), validate(&S, &v).is_ok());
                prop_assert!(!text.is_empty());
            }

            #[test]
            fn valid_values_pass(key in "\\PC{1,40}", limit in 1i64..=1000, tags in prop::collection::vec("\\PC{0,5}", 0..4)) {
                let v = json!({"sessionKey": key, "limit": limit, "tags": tags});
                prop_assert!(validate(&S, &v).is_ok());
            }
        }
    }
}
