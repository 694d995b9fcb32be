//! Generators shared by the property tests of the stream parsers.

use proptest::prelude::*;

/// JSON values shaped like provider stream events: the field names and type tags the parsers
/// look for, nested in arbitrary ways, mixed with arbitrary other values.
pub fn event_json() -> impl Strategy<Value = serde_json::Value> {
    let tag = prop_oneof![
        Just("message_start".to_string()),
        Just("content_block_start".to_string()),
        Just("content_block_delta".to_string()),
        Just("message_delta".to_string()),
        Just("text_delta".to_string()),
        Just("input_json_delta".to_string()),
        Just("tool_use".to_string()),
        Just("message_stop".to_string()),
        Just("error".to_string()),
        Just("text".to_string()),
        "[a-z_]{0,10}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        tag.prop_map(serde_json::Value::String),
    ];
    let key = prop_oneof![
        Just("type".to_string()),
        Just("index".to_string()),
        Just("delta".to_string()),
        Just("choices".to_string()),
        Just("content_block".to_string()),
        Just("usage".to_string()),
        Just("tool_calls".to_string()),
        Just("function".to_string()),
        Just("arguments".to_string()),
        Just("finish_reason".to_string()),
        Just("content".to_string()),
        Just("error".to_string()),
        "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(4, 40, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
