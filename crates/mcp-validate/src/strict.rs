//! JSON parsing that refuses duplicate keys.
//!
//! `serde_json::Value` keeps the last of two equal keys, and other parsers
//! keep the first: a proxy and a server can then disagree about what a body
//! says. Duplicates are refused instead.

use std::fmt;

use mcp_core::Problem;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Parses `body` into a value, refusing duplicate keys: `400
/// malformed_json` with line and column otherwise.
pub(crate) fn parse(body: &[u8]) -> Result<Value, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = Strict::deserialize(&mut deserializer).and_then(|value| {
        deserializer.end()?;
        Ok(value)
    });
    match parsed {
        Ok(Strict(value)) => Ok(value),
        Err(error) => {
            let what = match error.classify() {
                serde_json::error::Category::Eof => "the body ends too early".to_owned(),
                serde_json::error::Category::Syntax | serde_json::error::Category::Data => {
                    // Describe the error without the input it quotes.
                    let text = error.to_string();
                    let text = text.split(" at line ").next().unwrap_or("invalid JSON");
                    if text.starts_with("duplicate key") {
                        "a key appears twice in one object".to_owned()
                    } else {
                        text.to_owned()
                    }
                }
                serde_json::error::Category::Io => "the body could not be read".to_owned(),
            };
            Err(Problem::malformed_json(format!(
                "{what} (line {}, column {})",
                error.line(),
                error.column()
            ))
            .with_extension("line", error.line())
            .with_extension("column", error.column()))
        }
    }
}
