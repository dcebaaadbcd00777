//! Deserializing a parsed body while collecting every failing field.
//!
//! serde stops at the first error. To list them all, the body's
//! [`Value`] is deserialized through a [`Deserializer`] of our own that
//! knows, at every call, what the target type asks for (`deserialize_str`,
//! `deserialize_u32`, `deserialize_struct`, ...). A value that does not fit
//! is recorded with its path and a placeholder that does fit is handed to
//! the visitor instead, so deserialization goes on: one pass, linear in the
//! body, for wrong types, integers out of range and unknown enum variants.
//!
//! Some errors are raised by the target type itself, out of our reach: a
//! missing field (the derived visitor notices at the end of the object), a
//! `deserialize_with` that refuses a value, an enum with a `#[serde(other)]`
//! catch-all we cannot see. Those abort the pass. The place is learned (the
//! struct type and field, the enum type, or the node of the value) and the
//! pass run again, standing in for every such place at once. Each pass
//! learns something new or the collection ends, and passes are capped by
//! [`MAX_PASSES`]: a missing field of a list's element type costs one more
//! pass however long the list is.
//!
//! Field paths and messages are bounded in length and never quote the
//! input, and only the first [`MAX_FIELD_ERRORS`] errors are kept (all are
//! counted), so no body can make the answer large.

use std::collections::HashSet;
use std::fmt::{self, Display, Write};

use mcp_core::{FieldError, MAX_FIELD_ERRORS};
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, Expected, MapAccess,
    SeqAccess, Unexpected, VariantAccess, Visitor,
};
use serde_json::{Map, Number, Value};

/// Most passes over one body: each learns one place where the target type
/// itself refused a value, so this is also the most such places reported.
pub(crate) const MAX_PASSES: usize = 16;
/// Longest field path in an error, in bytes.
pub(crate) const MAX_FIELD_LEN: usize = 200;
/// Longest map key inside a field path, in bytes.
const MAX_KEY_LEN: usize = 64;
/// Longest error message, in bytes.
pub(crate) const MAX_MESSAGE_LEN: usize = 300;
/// How deep placeholders nest: deeper, an `Option` stands in as `None`.
const PLACEHOLDER_DEPTH: usize = 8;

/// The errors found in a body: the first [`MAX_FIELD_ERRORS`], and how many
/// there are in all.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    /// The errors listed in the answer.
    pub listed: Vec<FieldError>,
    /// All errors, listed or not.
    pub total: usize,
    /// The path of every value reported or stood in for, so that rule
    /// errors about a placeholder are not reported too.
    covered: HashSet<String>,
}

impl Errors {
    /// Records an error at `field` (already bounded); a field reported
    /// before is not reported twice.
    pub(crate) fn push(&mut self, field: String, code: &'static str, message: &dyn Display) {
        if self.is_full() {
            if self.covered.insert(field) {
                self.total += 1;
            }
        } else if self.covered.insert(field.clone()) {
            self.push_uncovered(field, code, message);
        }
    }

    /// Records an error without remembering its field as stood in for.
    pub(crate) fn push_uncovered(
        &mut self,
        field: String,
        code: &'static str,
        message: &dyn Display,
    ) {
        self.total += 1;
        if !self.is_full() {
            let mut message = message.to_string();
            cut(&mut message, MAX_MESSAGE_LEN);
            self.listed.push(FieldError::new(field, code, message));
        }
    }

    /// Whether no more errors are listed, only counted: the messages of
    /// the rest need not be made.
    pub(crate) fn is_full(&self) -> bool {
        self.listed.len() >= MAX_FIELD_ERRORS
    }

    /// Counts an error that is not listed.
    pub(crate) fn count(&mut self) {
        self.total += 1;
    }

    /// `400 validation_failed` listing the errors kept and counting the rest.
    pub(crate) fn into_problem(self) -> mcp_core::Problem {
        mcp_core::Problem::validation_failed_truncated(self.listed, self.total)
    }

    /// Whether an error at `field` (`a.b[2]`) or one of its parents was
    /// reported: the value there is a placeholder.
    pub(crate) fn covers(&self, field: &str) -> bool {
        if self.covered.is_empty() {
            return false;
        }
        // The field itself first: a placeholder's own rule error is the
        // common case.
        self.covered.contains(field)
            || field
                .char_indices()
                .filter(|&(_, c)| c == '.' || c == '[')
                .any(|(at, _)| self.covered.contains(&field[..at]))
    }
}

/// `text` cut to at most `max` bytes at a character boundary, marked `…`
/// where it was cut.
pub(crate) fn bound(text: &str, max: usize) -> String {
    let mut text = text.to_owned();
    cut(&mut text, max);
    text
}

/// Cuts `text` in place like [`bound`].
pub(crate) fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    text.truncate(boundary(text, max.saturating_sub('…'.len_utf8())));
    text.push('…');
}

/// The largest character boundary of `text` at or below `at`.
fn boundary(text: &str, at: usize) -> usize {
    let mut end = at.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Deserializes `value` as `T`, collecting every value that does not fit.
/// `None` when the body could not be made into a `T` even with
/// placeholders; the errors found are reported either way.
pub(crate) fn deserialize<T: DeserializeOwned>(value: &Value) -> (Option<T>, Errors) {
    let mut learned = Learned::default();
    let mut passes = 0;
    loop {
        passes += 1;
        let mut pass = Pass {
            path: Vec::new(),
            errors: Errors::default(),
            learned: &learned,
        };
        let error = match T::deserialize(Node::new(value, &mut pass)) {
            Ok(typed) => return (Some(typed), pass.errors),
            Err(error) => error,
        };
        let mut errors = pass.errors;
        if passes >= MAX_PASSES || !learned.learn(&error) {
            // Nothing more to stand in for: report what was found.
            let field = error.field.clone().unwrap_or_default();
            errors.push(field, error.code(), &error.message());
            return (None, errors);
        }
    }
}

/// A struct type as serde names it to its deserializer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StructType {
    name: &'static str,
    fields: &'static [&'static str],
}

/// An enum type as serde names it to its deserializer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EnumType {
    name: &'static str,
    variants: &'static [&'static str],
}

/// What earlier passes learned about where the target type refuses values.
#[derive(Debug, Default)]
struct Learned {
    /// Fields a struct type cannot do without.
    required: Vec<(StructType, &'static str)>,
    /// Enum types that refuse names outside their variants (no
    /// `#[serde(other)]`).
    strict_enums: Vec<EnumType>,
    /// Values (by their address in the parsed body, the same in every
    /// pass) their type refused, with the reason.
    refused: Vec<(usize, String)>,
}

impl Learned {
    /// Learns where `error` happened; `false` when that was known already
    /// (a placeholder was refused too) or cannot be stood in for.
    fn learn(&mut self, error: &Error) -> bool {
        match error.place {
            Some(Place::Field(owner, field)) if !self.required.contains(&(owner, field)) => {
                self.required.push((owner, field));
                true
            }
            Some(Place::Variant(owner)) if !self.strict_enums.contains(&owner) => {
                self.strict_enums.push(owner);
                true
            }
            Some(Place::Value(node)) if !self.refused.iter().any(|(n, _)| *n == node) => {
                self.refused.push((node, error.message()));
                true
            }
            _ => false,
        }
    }

    fn required_of(&self, owner: StructType) -> impl Iterator<Item = &'static str> + '_ {
        self.required
            .iter()
            .filter(move |(t, _)| *t == owner)
            .map(|(_, field)| *field)
    }

    fn refusal(&self, value: &Value) -> Option<&str> {
        if self.refused.is_empty() {
            return None;
        }
        let node = address(value);
        self.refused
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, reason)| reason.as_str())
    }
}

/// A node's identity within one parsed body, stable across passes.
fn address(value: &Value) -> usize {
    std::ptr::from_ref(value) as usize
}

/// One step of a field path.
#[derive(Clone, Copy, Debug)]
enum Step<'de> {
    Key(&'de str),
    Index(usize),
}

/// The state of one pass: where it is and what it found.
struct Pass<'de, 'l> {
    path: Vec<Step<'de>>,
    errors: Errors,
    learned: &'l Learned,
}

impl Pass<'_, '_> {
    /// The current path, bounded: `capabilities[2]`, `metadata.owner`.
    fn field(&self) -> String {
        self.field_with(None)
    }

    /// The current path and then `last`, bounded.
    fn field_with(&self, last: Option<&str>) -> String {
        let mut text = String::with_capacity(32);
        for step in &self.path {
            match step {
                Step::Key(key) => push_key(&mut text, key),
                Step::Index(i) => {
                    // Writing to a `String` cannot fail.
                    let _ = write!(text, "[{i}]");
                }
            }
            // Enough to be cut: the rest cannot show.
            if text.len() > MAX_FIELD_LEN {
                break;
            }
        }
        if let Some(key) = last {
            push_key(&mut text, key);
        }
        cut(&mut text, MAX_FIELD_LEN);
        text
    }

    /// Records that the value here is `found` where `expected` belongs.
    fn mismatch(&mut self, found: &Value, expected: &dyn Display) {
        let field = self.field();
        let message = format_args!("invalid type: {}, expected {expected}", kind(found));
        self.errors.push(field, "type", &message);
    }

    /// Records that the value here is of the right type, but not a value the
    /// field takes.
    fn invalid(&mut self, found: &Value, expected: &dyn Display) {
        let field = self.field();
        let message = format_args!("invalid value: {}, expected {expected}", kind(found));
        self.errors.push(field, "type", &message);
    }
}

fn push_key(text: &mut String, key: &str) {
    if !text.is_empty() {
        text.push('.');
    }
    if key.len() > MAX_KEY_LEN {
        text.push_str(&key[..boundary(key, MAX_KEY_LEN - '…'.len_utf8())]);
        text.push('…');
    } else {
        text.push_str(key);
    }
}

/// What a value is, without quoting it.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where an error that aborted a pass happened.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// A struct type lacked a field it needs.
    Field(StructType, &'static str),
    /// An enum type refused the name of a variant.
    Variant(EnumType),
    /// A type refused the value at this address.
    Value(usize),
}

/// The error of our deserializer: bounded, never quoting the input, and
/// located once it is known where it happened.
#[derive(Debug)]
pub(crate) struct Error {
    kind: Kind,
    place: Option<Place>,
    /// The path where it happened, once known.
    field: Option<String>,
}

#[derive(Debug)]
enum Kind {
    Missing(&'static str),
    Message(String),
}

impl Error {
    fn message(&self) -> String {
        match &self.kind {
            Kind::Missing(_) => "this field is required".to_owned(),
            Kind::Message(message) => message.clone(),
        }
    }

    fn code(&self) -> &'static str {
        match self.kind {
            Kind::Missing(_) => "required",
            Kind::Message(_) => "type",
        }
    }

    fn text(message: String) -> Self {
        Error {
            kind: Kind::Message(bound(&message, MAX_MESSAGE_LEN)),
            place: None,
            field: None,
        }
    }

    /// Locates an error raised by the type of the value at `value` (the
    /// innermost place wins).
    fn at_value(mut self, value: &Value, pass: &Pass<'_, '_>) -> Self {
        if self.place.is_none() {
            self.place = Some(Place::Value(address(value)));
            self.field = Some(pass.field());
        }
        self
    }
}

impl Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Error {}

/// An unexpected value named by its kind only: `Unexpected`'s own display
/// quotes strings, which may be long or secret.
fn unexpected(unexp: &Unexpected<'_>) -> &'static str {
    match unexp {
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) | Unexpected::Float(_) => "a number",
        Unexpected::Char(_) => "a character",
        Unexpected::Str(_) => "a string",
        Unexpected::Bytes(_) => "bytes",
        Unexpected::Unit => "null",
        Unexpected::Option => "an optional value",
        Unexpected::NewtypeStruct => "a newtype struct",
        Unexpected::Seq => "an array",
        Unexpected::Map => "an object",
        Unexpected::Enum => "an enum",
        Unexpected::UnitVariant => "a unit variant",
        Unexpected::NewtypeVariant => "a newtype variant",
        Unexpected::TupleVariant => "a tuple variant",
        Unexpected::StructVariant => "a struct variant",
        Unexpected::Other(_) => "another value",
    }
}

fn one_of(names: &'static [&'static str]) -> String {
    match names {
        [] => "nothing".to_owned(),
        names => {
            let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("one of {}", quoted.join(", "))
        }
    }
}

impl de::Error for Error {
    fn custom<T: Display>(message: T) -> Self {
        Error::text(message.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Error::text(format!(
            "invalid type: {}, expected {exp}",
            unexpected(&unexp)
        ))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Error::text(format!(
            "invalid value: {}, expected {exp}",
            unexpected(&unexp)
        ))
    }

    fn invalid_length(len: usize, exp: &dyn Expected) -> Self {
        Error::text(format!("invalid length {len}, expected {exp}"))
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Error::text(format!("unknown variant, expected {}", one_of(expected)))
    }

    fn unknown_field(_field: &str, expected: &'static [&'static str]) -> Self {
        Error::text(format!("unknown field, expected {}", one_of(expected)))
    }

    fn missing_field(field: &'static str) -> Self {
        Error {
            kind: Kind::Missing(field),
            place: None,
            field: None,
        }
    }

    fn duplicate_field(field: &'static str) -> Self {
        Error::text(format!("duplicate field `{field}`"))
    }
}

/// A value of the body, deserialized on behalf of one pass.
struct Node<'a, 'de, 'l> {
    value: &'de Value,
    pass: &'a mut Pass<'de, 'l>,
}

impl<'a, 'de, 'l> Node<'a, 'de, 'l> {
    fn new(value: &'de Value, pass: &'a mut Pass<'de, 'l>) -> Self {
        Node { value, pass }
    }
}

/// The text of an integer type's range, for messages.
struct Range(i128, u128);

impl Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an integer from {} to {}", self.0, self.1)
    }
}

fn unsigned(number: &Number, max: u64) -> Option<u64> {
    number.as_u64().filter(|&n| n <= max)
}

fn signed(number: &Number, min: i64, max: i64) -> Option<i64> {
    number.as_i64().filter(|&n| (min..=max).contains(&n))
}

macro_rules! unsigned_hint {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let range = Range(0, u128::from(<$ty>::MAX));
            match self.value {
                Value::Number(n) => match unsigned(n, u64::try_from(<$ty>::MAX).unwrap_or(u64::MAX)) {
                    Some(n) => visitor.visit_u64(n),
                    None => {
                        self.pass.invalid(self.value, &range);
                        visitor.visit_u64(0)
                    }
                },
                other => {
                    self.pass.mismatch(other, &range);
                    visitor.visit_u64(0)
                }
            }
        }
    )*};
}

macro_rules! signed_hint {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let (min, max) = (
                i64::try_from(<$ty>::MIN).unwrap_or(i64::MIN),
                i64::try_from(<$ty>::MAX).unwrap_or(i64::MAX),
            );
            let range = Range(i128::from(min), u128::try_from(max).unwrap_or(0));
            match self.value {
                Value::Number(n) => match signed(n, min, max) {
                    Some(n) => visitor.visit_i64(n),
                    None => {
                        self.pass.invalid(self.value, &range);
                        visitor.visit_i64(0)
                    }
                },
                other => {
                    self.pass.mismatch(other, &range);
                    visitor.visit_i64(0)
                }
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for Node<'_, 'de, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(0.0))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visit_items(items, self.pass, visitor),
            Value::Object(map) => visitor.visit_map(Entries::new(map, self.pass, None)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Bool(b) => visitor.visit_bool(*b),
            other => {
                self.pass.mismatch(other, &"a boolean");
                visitor.visit_bool(false)
            }
        }
    }

    unsigned_hint!(deserialize_u8: u8, deserialize_u16: u16, deserialize_u32: u32, deserialize_u64: u64);
    signed_hint!(deserialize_i8: i8, deserialize_i16: i16, deserialize_i32: i32, deserialize_i64: i64);

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Number(n) => visitor.visit_f64(n.as_f64().unwrap_or(0.0)),
            other => {
                self.pass.mismatch(other, &"a number");
                visitor.visit_f64(0.0)
            }
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut chars = self.value.as_str().map(str::chars);
        match chars.as_mut().map(|c| (c.next(), c.next())) {
            Some((Some(c), None)) => visitor.visit_char(c),
            _ => {
                self.pass.mismatch(self.value, &"a single character");
                visitor.visit_char(' ')
            }
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::String(s) => visitor.visit_borrowed_str(s),
            other => {
                self.pass.mismatch(other, &"a string");
                visitor.visit_borrowed_str("")
            }
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visit_items(items, self.pass, visitor),
            other => {
                self.pass.mismatch(other, &"a string or an array");
                visitor.visit_borrowed_bytes(&[])
            }
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            other => {
                self.pass.mismatch(other, &"null");
                visitor.visit_unit()
            }
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Array(items) => visit_items(items, self.pass, visitor),
            other => {
                self.pass.mismatch(other, &"an array");
                Placeholder::new(0).deserialize_seq(visitor)
            }
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Array(items) => visit_items(items, self.pass, visitor),
            other => {
                self.pass
                    .mismatch(other, &format_args!("an array of {len}"));
                Placeholder::new(0).deserialize_tuple(len, visitor)
            }
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Object(map) => visitor.visit_map(Entries::new(map, self.pass, None)),
            other => {
                self.pass.mismatch(other, &"an object");
                Placeholder::new(0).deserialize_map(visitor)
            }
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let Value::Object(map) = self.value else {
            self.pass.mismatch(self.value, &"an object");
            return Placeholder::new(0).deserialize_struct(name, fields, visitor);
        };
        let owner = StructType { name, fields };
        let missing: Vec<&'static str> = self
            .pass
            .learned
            .required_of(owner)
            .filter(|field| !map.contains_key(*field))
            .collect();
        let pass = self.pass;
        let result = visitor.visit_map(Entries::new(map, &mut *pass, Some(missing)));
        result.map_err(|mut error| {
            // The derived visitor names the first field it lacks; remember
            // it for the struct type, so every object of the type gets a
            // placeholder for it in the next pass.
            if let (None, Kind::Missing(field)) = (&error.place, &error.kind)
                && fields.contains(field)
            {
                error.place = Some(Place::Field(owner, field));
                error.field = Some(pass.field_with(Some(field)));
            }
            error
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let owner = EnumType { name, variants };
        let entry = match self.value {
            Value::String(s) => Some((s.as_str(), None)),
            Value::Object(map) if map.len() == 1 => map
                .iter()
                .next()
                .map(|(key, value)| (key.as_str(), Some(value))),
            _ => None,
        };
        let Some((variant, content)) = entry else {
            self.pass
                .mismatch(self.value, &"a variant name or an object with one key");
            return Placeholder::new(0).deserialize_enum(name, variants, visitor);
        };
        if !variants.contains(&variant) && self.pass.learned.strict_enums.contains(&owner) {
            let message = format!("unknown variant, expected {}", one_of(variants));
            let field = self.pass.field();
            self.pass.errors.push(field, "type", &message);
            return Placeholder::new(0).deserialize_enum(name, variants, visitor);
        }
        visitor.visit_enum(Variant {
            name: variant,
            content,
            owner,
            pass: self.pass,
        })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // Unknown fields are dropped without a look inside.
        visitor.visit_unit()
    }
}

fn visit_items<'de, V: Visitor<'de>>(
    items: &'de [Value],
    pass: &mut Pass<'de, '_>,
    visitor: V,
) -> Result<V::Value, Error> {
    let mut seq = Items {
        items: items.iter().enumerate(),
        pass,
    };
    let value = visitor.visit_seq(&mut seq)?;
    let left = seq.items.len();
    if left > 0 {
        return Err(de::Error::invalid_length(items.len(), &"fewer elements"));
    }
    Ok(value)
}

/// The elements of an array, each deserialized at its index.
struct Items<'a, 'de, 'l> {
    items: std::iter::Enumerate<std::slice::Iter<'de, Value>>,
    pass: &'a mut Pass<'de, 'l>,
}

impl<'de> SeqAccess<'de> for Items<'_, 'de, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some((index, item)) = self.items.next() else {
            return Ok(None);
        };
        self.pass.path.push(Step::Index(index));
        let result = child(seed, item, self.pass);
        self.pass.path.pop();
        result.map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// Deserializes `value` at the current path, standing in for it if an
/// earlier pass learned that its type refuses it.
fn child<'de, T: DeserializeSeed<'de>>(
    seed: T,
    value: &'de Value,
    pass: &mut Pass<'de, '_>,
) -> Result<T::Value, Error> {
    if let Some(reason) = pass.learned.refusal(value) {
        let field = pass.field();
        let reason = reason.to_owned();
        pass.errors.push(field, "type", &reason);
        // Refused again, the place is known: the collection ends there.
        return seed
            .deserialize(Placeholder::new(0))
            .map_err(|error| error.at_value(value, pass));
    }
    let result = seed.deserialize(Node::new(value, &mut *pass));
    result.map_err(|error| error.at_value(value, pass))
}

/// The entries of an object, then (for a struct) a placeholder for each
/// field the struct type is known to need and the object lacks.
struct Entries<'a, 'de, 'l> {
    entries: serde_json::map::Iter<'de>,
    missing: std::vec::IntoIter<&'static str>,
    /// The value of the entry whose key was just read.
    pending: Option<Pending<'de>>,
    pass: &'a mut Pass<'de, 'l>,
}

enum Pending<'de> {
    Present(&'de str, &'de Value),
    Missing(&'static str),
}

impl<'a, 'de, 'l> Entries<'a, 'de, 'l> {
    fn new(
        map: &'de Map<String, Value>,
        pass: &'a mut Pass<'de, 'l>,
        missing: Option<Vec<&'static str>>,
    ) -> Self {
        Entries {
            entries: map.iter(),
            missing: missing.unwrap_or_default().into_iter(),
            pending: None,
            pass,
        }
    }
}

impl<'de> MapAccess<'de> for Entries<'_, 'de, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if let Some((key, value)) = self.entries.next() {
            self.pending = Some(Pending::Present(key, value));
            let key = BorrowedStrDeserializer::<Error>::new(key.as_str());
            return seed.deserialize(key).map(Some);
        }
        match self.missing.next() {
            Some(field) => {
                self.pending = Some(Pending::Missing(field));
                seed.deserialize(BorrowedStrDeserializer::new(field))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        match self.pending.take() {
            Some(Pending::Present(key, value)) => {
                self.pass.path.push(Step::Key(key));
                let result = child(seed, value, self.pass);
                self.pass.path.pop();
                result
            }
            Some(Pending::Missing(field)) => {
                let path = self.pass.field_with(Some(field));
                self.pass
                    .errors
                    .push(path, "required", &"this field is required");
                seed.deserialize(Placeholder::new(0))
            }
            None => Err(de::Error::custom("a value was asked for before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() + self.missing.len())
    }
}

/// An enum's variant as found in the body.
struct Variant<'a, 'de, 'l> {
    name: &'de str,
    content: Option<&'de Value>,
    owner: EnumType,
    pass: &'a mut Pass<'de, 'l>,
}

impl<'a, 'de, 'l> EnumAccess<'de> for Variant<'a, 'de, 'l> {
    type Error = Error;
    type Variant = Content<'a, 'de, 'l>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), Error> {
        let name = BorrowedStrDeserializer::<Error>::new(self.name);
        match seed.deserialize(name) {
            Ok(variant) => Ok((
                variant,
                Content {
                    name: self.name,
                    value: self.content,
                    pass: self.pass,
                },
            )),
            Err(mut error) => {
                // The enum refuses names outside its variants: from the next
                // pass on, such names are reported and stood in for here.
                if !self.owner.variants.contains(&self.name) {
                    error.place = Some(Place::Variant(self.owner));
                    error.field = Some(self.pass.field());
                }
                Err(error)
            }
        }
    }
}

/// The content of an enum's variant.
struct Content<'a, 'de, 'l> {
    name: &'de str,
    value: Option<&'de Value>,
    pass: &'a mut Pass<'de, 'l>,
}

impl<'de> VariantAccess<'de> for Content<'_, 'de, '_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.value {
            None | Some(Value::Null) => Ok(()),
            Some(other) => {
                self.pass.mismatch(other, &"a unit variant");
                Ok(())
            }
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        match self.value {
            Some(value) => {
                self.pass.path.push(Step::Key(self.name));
                let result = child(seed, value, self.pass);
                self.pass.path.pop();
                result
            }
            None => {
                self.pass.mismatch(&Value::Null, &"a variant with content");
                seed.deserialize(Placeholder::new(0))
            }
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        self.pass.path.push(Step::Key(self.name));
        let result = match self.value {
            Some(Value::Array(items)) => visit_items(items, self.pass, visitor),
            other => {
                self.pass.mismatch(
                    other.unwrap_or(&Value::Null),
                    &format_args!("an array of {len}"),
                );
                Placeholder::new(0).deserialize_tuple(len, visitor)
            }
        };
        self.pass.path.pop();
        result
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.pass.path.push(Step::Key(self.name));
        let result = match self.value {
            Some(value @ Value::Object(_)) => {
                Node::new(value, &mut *self.pass).deserialize_struct("", fields, visitor)
            }
            other => {
                self.pass
                    .mismatch(other.unwrap_or(&Value::Null), &"an object");
                Placeholder::new(0).deserialize_struct("", fields, visitor)
            }
        };
        self.pass.path.pop();
        result
    }
}

/// Stands in for a value that is missing or does not fit: the simplest
/// value of whatever type is asked for (`""`, `0`, `false`, `[]`, a struct
/// of placeholders, an enum's first variant), so that the rest of the body
/// can still be checked. Its rule errors are not reported.
#[derive(Clone, Copy, Debug)]
struct Placeholder {
    depth: usize,
}

impl Placeholder {
    fn new(depth: usize) -> Self {
        Placeholder { depth }
    }

    fn deeper(self) -> Result<Self, Error> {
        if self.depth >= 2 * PLACEHOLDER_DEPTH {
            return Err(de::Error::custom("no placeholder fits this type"));
        }
        Ok(Placeholder::new(self.depth + 1))
    }
}

impl<'de> Deserializer<'de> for Placeholder {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bool(false)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i64(0)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(0)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(0.0)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_char(' ')
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_str("")
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_bytes(&[])
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // `Some`, so that a field that refuses `null` takes it; `None` where
        // a type could nest placeholders without end.
        if self.depth < PLACEHOLDER_DEPTH {
            visitor.visit_some(self.deeper()?)
        } else {
            visitor.visit_none()
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self.deeper()?)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(Placeholders {
            left: 0,
            inner: self.deeper()?,
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(Placeholders {
            left: len,
            inner: self.deeper()?,
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(PlaceholderFields {
            fields: [].iter(),
            inner: self.deeper()?,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(PlaceholderFields {
            fields: fields.iter(),
            inner: self.deeper()?,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match variants.first() {
            Some(first) => visitor.visit_enum(PlaceholderVariant {
                name: first,
                inner: self.deeper()?,
            }),
            None => Err(de::Error::custom("no placeholder fits this type")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }
}

/// `len` placeholders in a sequence.
struct Placeholders {
    left: usize,
    inner: Placeholder,
}

impl<'de> SeqAccess<'de> for Placeholders {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(self.inner).map(Some)
    }
}

/// A placeholder for each field of a struct.
struct PlaceholderFields {
    fields: std::slice::Iter<'static, &'static str>,
    inner: Placeholder,
}

impl<'de> MapAccess<'de> for PlaceholderFields {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.fields.next() {
            Some(field) => seed
                .deserialize(BorrowedStrDeserializer::new(field))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self.inner)
    }
}

/// An enum's first variant, with placeholder content.
struct PlaceholderVariant {
    name: &'static str,
    inner: Placeholder,
}

impl<'de> EnumAccess<'de> for PlaceholderVariant {
    type Error = Error;
    type Variant = Placeholder;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Placeholder), Error> {
        let name = BorrowedStrDeserializer::<Error>::new(self.name);
        Ok((seed.deserialize(name)?, self.inner))
    }
}

impl<'de> VariantAccess<'de> for Placeholder {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_struct("", fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    /// Counts the elements of a sequence, reading at most 10.
    struct Drain;

    impl<'de> Visitor<'de> for Drain {
        type Value = usize;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut count = 0;
            while count < 10 && seq.next_element::<de::IgnoredAny>()?.is_some() {
                count += 1;
            }
            Ok(count)
        }
    }

    #[test]
    fn a_tuple_placeholder_has_exactly_its_length() {
        for len in [0, 1, 3] {
            let count = Placeholder::new(0).deserialize_tuple(len, Drain).unwrap();
            assert_eq!(count, len);
        }
        assert_eq!(Placeholder::new(0).deserialize_seq(Drain).unwrap(), 0);
        let pair = <(u32, String)>::deserialize(Placeholder::new(0)).unwrap();
        assert_eq!(pair, (0, String::new()));
    }

    /// Four options, each in the one before.
    type Options = Option<Box<Option<Box<Option<Box<Option<u8>>>>>>>;

    /// How many of the four options are `Some`.
    fn somes(value: &Options) -> usize {
        let Some(second) = value else { return 0 };
        let Some(third) = &**second else { return 1 };
        let Some(fourth) = &**third else { return 2 };
        3 + usize::from(fourth.is_some())
    }

    #[test]
    fn options_in_a_placeholder_are_some_above_depth_8_and_none_from_it() {
        // At depth 0 the four nested options are all `Some` (depths 0 to
        // 3); from depth 5 on, the fourth one (at depth 8) is `None`.
        let at = |depth| Options::deserialize(Placeholder::new(depth)).unwrap();
        assert_eq!(somes(&at(0)), 4);
        assert_eq!(somes(&at(4)), 4);
        assert_eq!(somes(&at(5)), 3);
        assert_eq!(somes(&at(8)), 0);
    }

    #[test]
    fn placeholders_nest_16_levels_at_most() {
        assert_eq!(Placeholder::new(0).deeper().unwrap().depth, 1);
        assert_eq!(Placeholder::new(15).deeper().unwrap().depth, 16);
        let error = Placeholder::new(16).deeper().unwrap_err();
        assert_eq!(error.message(), "no placeholder fits this type");
    }
}
