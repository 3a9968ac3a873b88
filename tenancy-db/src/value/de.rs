//! Rows read into structs (feature `serde`): a [`Row`] is a map from column names to
//! values, and a tuple of its values in column order, for any `Deserialize` type.
//!
//! Values are offered as what they are: `Int` as `i64`, `Text` as `str`, `Bytes` as bytes,
//! `Null` as none (so `Option<T>` fields read nullable columns), a UUID, timestamp or date
//! as text (RFC 3339 for timestamps: pair the field with `time::serde::rfc3339`), JSON as
//! the document itself.

use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};

use super::{Row, Value};
use crate::error::{Error, ErrorKind};

/// Why a row could not be read into a type.
#[derive(Debug)]
pub(crate) struct DeError(String);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        DeError(message.to_string())
    }
}

impl Row {
    /// The row read into `T`: a struct whose fields are named as the columns (extra
    /// columns are ignored unless `T` denies unknown fields), or a tuple of the columns in
    /// order. Fails with an error of kind [`ErrorKind::Conversion`] that names `T`.
    ///
    /// ```
    /// # use tenancy_db::{Row, Value};
    /// #[derive(serde::Deserialize, Debug, PartialEq)]
    /// struct Capa {
    ///     id: i64,
    ///     title: String,
    ///     closed_by: Option<String>,
    /// }
    /// # let row = Row::with_columns(&["id", "title", "closed_by"], vec![7.into(), "Leak".into(), Value::Null]);
    /// let capa: Capa = row.deserialize()?;
    /// assert_eq!(capa, Capa { id: 7, title: "Leak".into(), closed_by: None });
    /// let (id, title): (i64, String) = Row::with_columns(&["id", "title"], vec![7.into(), "Leak".into()]).deserialize()?;
    /// # Ok::<(), tenancy_db::Error>(())
    /// ```
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, Error> {
        T::deserialize(RowDeserializer(self)).map_err(|error| {
            Error::with_source(
                ErrorKind::Conversion,
                format!("reading a row into `{}` failed", std::any::type_name::<T>()),
                error,
            )
        })
    }
}

struct RowDeserializer<'a>(&'a Row);

impl<'de> Deserializer<'de> for RowDeserializer<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(Columns {
            names: self.0.column_names().collect(),
            values: self.0.values(),
            next: 0,
        })
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(Values(self.0.values().iter()))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct map struct enum identifier
        ignored_any
    }
}

struct Columns<'a> {
    names: Vec<&'a str>,
    values: &'a [Value],
    next: usize,
}

impl<'de> MapAccess<'de> for Columns<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(name) = self.names.get(self.next) else {
            return Ok(None);
        };
        let key: StrDeserializer<'_, DeError> = name.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let value = &self.values[self.next];
        self.next += 1;
        seed.deserialize(ValueDeserializer(value))
    }
}

struct Values<'a>(std::slice::Iter<'a, Value>);

impl<'de> SeqAccess<'de> for Values<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        self.0
            .next()
            .map(|value| seed.deserialize(ValueDeserializer(value)))
            .transpose()
    }
}

struct ValueDeserializer<'a>(&'a Value);

impl<'de> Deserializer<'de> for ValueDeserializer<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            Value::Bool(v) => visitor.visit_bool(*v),
            Value::Int(v) => visitor.visit_i64(*v),
            Value::Float(v) => visitor.visit_f64(*v),
            Value::Text(v) => visitor.visit_str(v),
            Value::Bytes(v) => visitor.visit_bytes(v),
            #[cfg(feature = "with-uuid-1")]
            Value::Uuid(v) => visitor.visit_str(&v.hyphenated().to_string()),
            #[cfg(feature = "with-time-0_3")]
            Value::Timestamp(v) => visitor.visit_str(
                &v.format(&time::format_description::well_known::Rfc3339)
                    .map_err(de::Error::custom)?,
            ),
            #[cfg(feature = "with-time-0_3")]
            Value::Date(v) => visitor.visit_str(&v.to_string()),
            #[cfg(feature = "with-serde_json-1")]
            Value::Json(v) => v
                .clone()
                .deserialize_any(visitor)
                .map_err(de::Error::custom),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // SQLite keeps booleans as 0 and 1.
        match self.0 {
            Value::Int(0) => visitor.visit_bool(false),
            Value::Int(1) => visitor.visit_bool(true),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Text(v) => {
                let variant: StrDeserializer<'_, DeError> = v.as_str().into_deserializer();
                visitor.visit_enum(variant)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}
