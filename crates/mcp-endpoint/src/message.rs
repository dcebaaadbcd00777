//! What the policy reads of a JSON-RPC body: each message's method and the
//! name it acts on, and whether it is a JSON-RPC 2.0 message at all, read
//! in one pass over the bytes.
//!
//! A `serde_json::Value` of the body was a map per object and a string per
//! key and value, built and dropped for every call (9,800 of the 15,800
//! instructions `AuthorizeMcp` spent on a `tools/call`); this reads only
//! the fields the policy needs, borrowing their text, and skips the rest
//! (the arguments) without keeping it. Keys repeated in an object are read
//! as a `Value` reads them, the last one wins, so the policy never sees
//! another message than the one the same bytes make as a `Value` (a
//! property test holds the two equal).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Answers every value that is not a map or a sequence with `$value`.
macro_rules! other_values {
    ($value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// The messages of one JSON-RPC body: one message or a batch.
///
/// ```
/// let body = br#"[
///     {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "greet"}},
///     {"jsonrpc": "2.0", "id": 7, "result": {}}
/// ]"#;
/// let messages = mcp_endpoint::Messages::from_slice(body).unwrap();
/// assert_eq!(
///     messages.pairs(),
///     [("tools/call", Some("greet")), ("response", None)]
/// );
/// assert!(messages.not_json_rpc().is_empty());
/// ```
#[derive(Debug, Default)]
pub struct Messages<'a> {
    shape: Shape,
    items: Vec<Item<'a>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Neither an object nor an array.
    #[default]
    Other,
    Single,
    Batch,
}

/// A field read leniently: absent, a string, or anything else.
#[derive(Debug, Default)]
enum Field<'a> {
    #[default]
    Absent,
    Text(Cow<'a, str>),
    Other,
}

impl Field<'_> {
    fn text(&self) -> Option<&str> {
        match self {
            Field::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// One item of the body, as much of it as the policy reads.
#[derive(Debug, Default)]
struct Item<'a> {
    object: bool,
    jsonrpc: Field<'a>,
    method: Field<'a>,
    id: bool,
    outcome: bool,
    /// `params.name`, `params.uri`, `params.taskId`: which one names the
    /// message depends on its method, which may come after its params.
    name: Field<'a>,
    uri: Field<'a>,
    task_id: Field<'a>,
}

impl<'a> Messages<'a> {
    /// The messages of `body`, an error when it is not JSON.
    pub fn from_slice(body: &'a [u8]) -> Result<Messages<'a>, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let messages = Body.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(messages)
    }

    /// The messages of a parsed body.
    pub fn from_value(value: &'a serde_json::Value) -> Messages<'a> {
        // Reading a `Value` with visitors that take any value cannot fail.
        Body.deserialize(value).unwrap_or_default()
    }

    /// The method and name of each message. A response (no string
    /// `method`) is the pseudo-method `response`; a body that is neither
    /// an object nor an array has none. The name is where the method keeps
    /// it (`name` of a tool or prompt, `uri` of a resource, `taskId` of a
    /// task); other methods have none, so a rule naming one cannot be met
    /// by a `name` the client slips into their params.
    pub fn pairs(&self) -> Vec<(&str, Option<&str>)> {
        self.items
            .iter()
            .map(|item| {
                let method = item.method.text().unwrap_or("response");
                let name = match method {
                    "tools/call" | "prompts/get" => item.name.text(),
                    "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                        item.uri.text()
                    }
                    "tasks/get" | "tasks/update" | "tasks/cancel" => item.task_id.text(),
                    _ => None,
                };
                (method, name)
            })
            .collect()
    }

    /// Where the body is not JSON-RPC 2.0: `""` for the whole body (a bare
    /// value, an empty batch, a single item that is no message), `"[i]"`
    /// for each item of a batch that is no request, notification or
    /// response (`jsonrpc: "2.0"` with a string `method`, or an `id` with a
    /// `result` or an `error`). Empty when every message is one.
    pub fn not_json_rpc(&self) -> Vec<String> {
        let is_message = |item: &Item<'_>| {
            item.object
                && item.jsonrpc.text() == Some("2.0")
                && match item.method {
                    Field::Text(_) => true,
                    Field::Other => false,
                    Field::Absent => item.id && item.outcome,
                }
        };
        match self.shape {
            Shape::Batch if self.items.is_empty() => vec![String::new()],
            Shape::Batch => self
                .items
                .iter()
                .enumerate()
                .filter(|(_, item)| !is_message(item))
                .map(|(i, _)| format!("[{i}]"))
                .collect(),
            Shape::Single if self.items.iter().all(is_message) => Vec::new(),
            Shape::Single | Shape::Other => vec![String::new()],
        }
    }
}

/// The whole body: an object, an array of items, or anything else.
struct Body;

impl<'de> DeserializeSeed<'de> for Body {
    type Value = Messages<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Body {
    type Value = Messages<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message or batch")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(Messages {
            shape: Shape::Single,
            items: vec![ItemVisitor.visit_map(map)?],
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(ItemVisitor)? {
            items.push(item);
        }
        Ok(Messages {
            shape: Shape::Batch,
            items,
        })
    }

    other_values!(Messages::default());
}

/// One item: an object read for its fields, anything else kept as "not an
/// object".
struct ItemVisitor;

impl<'de> DeserializeSeed<'de> for ItemVisitor {
    type Value = Item<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut item = Item {
            object: true,
            ..Item::default()
        };
        while let Some(key) = map.next_key_seed(Key)? {
            match &*key {
                "jsonrpc" => item.jsonrpc = map.next_value_seed(Lenient)?,
                "method" => item.method = map.next_value_seed(Lenient)?,
                "id" => {
                    map.next_value::<IgnoredAny>()?;
                    item.id = true;
                }
                "result" | "error" => {
                    map.next_value::<IgnoredAny>()?;
                    item.outcome = true;
                }
                "params" => {
                    // A later `params` replaces an earlier one whole.
                    let params = map.next_value_seed(ParamsVisitor)?;
                    item.name = params.name;
                    item.uri = params.uri;
                    item.task_id = params.task_id;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(item)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Item::default())
    }

    other_values!(Item::default());
}

#[derive(Default)]
struct Params<'a> {
    name: Field<'a>,
    uri: Field<'a>,
    task_id: Field<'a>,
}

/// `params`: its three naming fields when it is an object, nothing else.
struct ParamsVisitor;

impl<'de> DeserializeSeed<'de> for ParamsVisitor {
    type Value = Params<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ParamsVisitor {
    type Value = Params<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("params")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut params = Params::default();
        while let Some(key) = map.next_key_seed(Key)? {
            match &*key {
                "name" => params.name = map.next_value_seed(Lenient)?,
                "uri" => params.uri = map.next_value_seed(Lenient)?,
                "taskId" => params.task_id = map.next_value_seed(Lenient)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(params)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Params::default())
    }

    other_values!(Params::default());
}

/// A key, borrowed from the body unless it holds an escape.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_owned()))
    }

    fn visit_string<E: de::Error>(self, key: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key))
    }
}

/// A value kept when it is a string, skipped otherwise.
struct Lenient;

impl<'de> DeserializeSeed<'de> for Lenient {
    type Value = Field<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Lenient {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Borrowed(text)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Owned(text)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }
}
