//! The one string field of a JSON line that a corpus reads, taken without building the line's
//! other values (a `serde_json::Value` of every record was most of the time of opening a
//! gigabyte of JSON lines): the other fields are skipped, and the text is borrowed from the line
//! where it has no escapes.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// What a line holds under the field.
#[derive(Debug, PartialEq)]
pub(super) enum Field<'a> {
    /// The string (the last one, when the key repeats, as `serde_json::Value` keeps).
    Text(Cow<'a, str>),
    /// Another kind of value: "null", "a boolean", "a number", "an array" or "an object".
    NotText(&'static str),
    /// The object has no such key.
    Missing,
    /// The line is JSON but not an object.
    NotObject,
}

/// Field `field` of the JSON text `line`; an error is serde_json's (not JSON, or trailing text).
pub(super) fn json_field<'a>(line: &'a str, field: &str) -> serde_json::Result<Field<'a>> {
    let mut de = serde_json::Deserializer::from_str(line);
    let found = de.deserialize_any(LineVisitor { field })?;
    de.end()?;
    Ok(found)
}

struct LineVisitor<'f> {
    field: &'f str,
}

impl<'de> Visitor<'de> for LineVisitor<'_> {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
        let mut found = Field::Missing;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == self.field {
                found = map.next_value_seed(ValueSeed)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::NotObject)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Field<'de>, E> {
        Ok(Field::NotObject)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Field<'de>, E> {
        Ok(Field::NotObject)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Field<'de>, E> {
        Ok(Field::NotObject)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Field<'de>, E> {
        Ok(Field::NotObject)
    }

    fn visit_str<E>(self, _: &str) -> Result<Field<'de>, E> {
        Ok(Field::NotObject)
    }

    fn visit_unit<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::NotObject)
    }
}

/// The field's value: its text, or the kind it is instead.
struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Field<'de>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Field<'de>, D::Error> {
        de.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::Text(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Field<'de>, E> {
        Ok(Field::Text(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Field<'de>, E> {
        Ok(Field::Text(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::NotText("null"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Field<'de>, E> {
        Ok(Field::NotText("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Field<'de>, E> {
        Ok(Field::NotText("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Field<'de>, E> {
        Ok(Field::NotText("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Field<'de>, E> {
        Ok(Field::NotText("a number"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::NotText("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::NotText("an object"))
    }
}
