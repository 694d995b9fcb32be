//! serde deserialization from a parsed [`Node`] tree, with errors that carry a span and a key path.
//!
//! Every error is attached to the innermost node it concerns: an unknown key points at the key,
//! a wrong type or value at the value, a missing field at the object that lacks it. Callers turn
//! the span into "file:line:column" and print the path (`models.providers.openai.api`).

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::value::{Node, Span, Value};

/// A deserialization error located in the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeError {
    pub message: String,
    /// Where the offending key or value was written, when known.
    pub span: Option<Span>,
    /// The dotted key path of the offending key or value (`gateway.auth.token`, `a.list[2]`).
    pub path: String,
}

impl DeError {
    fn locate(mut self, span: Span, path: &str) -> Self {
        if self.span.is_none() {
            self.span = Some(span);
            self.path = path.to_string();
        }
        self
    }
}

impl de::Error for DeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        DeError { message: msg.to_string(), span: None, path: String::new() }
    }
}

/// Deserializes `T` from a node. Unknown keys are errors only where `T` says so
/// (`#[serde(deny_unknown_fields)]`).
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDe { node, path: String::new() })
}

/// Joins a key path and a member name.
pub(crate) fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> NodeDe<'a> {
    fn located<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.locate(self.node.span, &self.path))
    }
}

macro_rules! forward_to_any {
    ($($name:ident)*) => {
        $(fn $name<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.deserialize_any(visitor)
        })*
    };
}

impl<'de, 'a> de::Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => match n.int {
                Some(i) if i >= i64::MIN as i128 && i <= i64::MAX as i128 => visitor.visit_i64(i as i64),
                Some(i) if i >= 0 && i <= u64::MAX as i128 => visitor.visit_u64(i as u64),
                _ => visitor.visit_f64(n.float),
            },
            Value::String(s) => visitor.visit_str(s),
            Value::Array(items) => {
                visitor.visit_seq(Seq { items: items.iter().enumerate(), path: &self.path, len: items.len() })
            }
            Value::Object(members) => visitor.visit_map(Map { members: members.iter(), path: &self.path, value: None }),
        };
        self.located(r)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if matches!(self.node.value, Value::Null) {
            let r = visitor.visit_none();
            self.located(r)
        } else {
            let span = self.node.span;
            let path = self.path.clone();
            visitor.visit_some(self).map_err(|e| e.locate(span, &path))
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::String(s) => visitor.visit_enum(IntoDeserializer::<DeError>::into_deserializer(s.as_str())),
            _ => Err(de::Error::custom(format!("expected a string, found {}", self.node.type_name()))),
        };
        self.located(r)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        let span = self.node.span;
        let path = self.path.clone();
        visitor.visit_newtype_struct(self).map_err(|e| e.locate(span, &path))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    forward_to_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Object(_) => self.deserialize_any(visitor),
            _ => {
                let r = Err(de::Error::custom(format!("expected an object, found {}", self.node.type_name())));
                self.located(r)
            }
        }
    }
}

struct Seq<'a, I> {
    items: I,
    path: &'a str,
    len: usize,
}

impl<'de, 'a, I: Iterator<Item = (usize, &'a Node)>> SeqAccess<'de> for Seq<'a, I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((i, node)) => {
                let path = format!("{}[{i}]", self.path);
                seed.deserialize(NodeDe { node, path }).map(Some)
            }
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len)
    }
}

struct Map<'a, I> {
    members: I,
    path: &'a str,
    value: Option<(&'a Node, String)>,
}

impl<'de, 'a, I: Iterator<Item = &'a (super::value::Key, Node)>> MapAccess<'de> for Map<'a, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        match self.members.next() {
            Some((key, node)) => {
                let path = child_path(self.path, &key.name);
                let k = seed
                    .deserialize(IntoDeserializer::<DeError>::into_deserializer(key.name.as_str()))
                    .map_err(|e| e.locate(key.span, &path))?;
                self.value = Some((node, path));
                Ok(Some(k))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some((node, path)) => seed.deserialize(NodeDe { node, path }),
            None => Err(de::Error::custom("value requested before key")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json5::{line_col, parse};
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Gateway {
        port: u16,
        #[serde(default)]
        bind_host: Option<String>,
        auth: Auth,
        #[serde(default)]
        list: Vec<u8>,
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Auth {
        token: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Local,
        Remote,
    }

    fn err_at(src: &str) -> (String, String, String) {
        let node = parse(src).unwrap();
        let e = from_node::<Gateway>(&node).unwrap_err();
        let span = e.span.expect("located");
        let lc = line_col(src, span.start);
        (e.message, e.path, format!("{}:{}", lc.line, lc.column))
    }

    #[test]
    fn reads_typed_structs() {
        let node = parse("{ port: 80, auth: { token: 't' }, list: [1,2], mode: 'remote' }").unwrap();
        let g: Gateway = from_node(&node).unwrap();
        assert_eq!(g.port, 80);
        assert_eq!(g.list, vec![1, 2]);
        assert_eq!(g.mode, Some(Mode::Remote));
    }

    #[test]
    fn unknown_key_points_at_the_key() {
        let (m, path, at) = err_at("{\n  port: 80,\n  auth: {\n    token: 't',\n    tokn: 'x',\n  },\n}");
        assert!(m.contains("unknown field `tokn`"), "{m}");
        assert_eq!(path, "auth.tokn");
        assert_eq!(at, "5:5");
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let (m, path, at) = err_at("{ port: 'eighty', auth: { token: 't' } }");
        assert!(m.contains("invalid type: string \"eighty\""), "{m}");
        assert_eq!(path, "port");
        assert_eq!(at, "1:9");

        let (m, path, _) = err_at("{ port: 70000, auth: { token: 't' } }");
        assert!(m.contains("70000"), "{m}");
        assert_eq!(path, "port");

        let (m, path, _) = err_at("{ port: 1, auth: { token: 't' }, list: [1, 'x'] }");
        assert!(m.contains("invalid type"), "{m}");
        assert_eq!(path, "list[1]");

        let (m, path, _) = err_at("{ port: 1, auth: { token: 't' }, mode: 'cloud' }");
        assert!(m.contains("unknown variant `cloud`"), "{m}");
        assert_eq!(path, "mode");

        let (m, path, _) = err_at("{ port: 1, auth: 'token' }");
        assert!(m.contains("expected an object"), "{m}");
        assert_eq!(path, "auth");
    }

    #[test]
    fn missing_field_points_at_the_object() {
        let (m, path, at) = err_at("{ port: 1,\n auth: {} }");
        assert!(m.contains("missing field `token`"), "{m}");
        assert_eq!(path, "auth");
        assert_eq!(at, "2:8");
    }
}
