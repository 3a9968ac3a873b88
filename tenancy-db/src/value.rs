//! Portable values and rows: the same application code binds and reads them on PostgreSQL
//! and SQLite.
//!
//! Parameters are written `$1`, `$2`, ... on both backends. On PostgreSQL a [`Value`] is
//! converted to the type the server infers for its parameter (an `Int` binds to `int2`,
//! `int4` or `int8`, range-checked); types without a mapping are cast in SQL
//! (`$1::text::timestamptz`, `created_at::text`).

use std::error::Error as StdError;
use std::sync::Arc;

use bytes::BytesMut;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::error::{Error, ErrorKind};

/// A value bound to a parameter or read from a column.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A boolean (SQLite stores it as 0 or 1).
    Bool(bool),
    /// An integer of up to 64 bits.
    Int(i64),
    /// A double-precision float.
    Float(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

macro_rules! value_from {
    ($($source:ty => $variant:ident),* $(,)?) => {$(
        impl From<$source> for Value {
            fn from(value: $source) -> Self {
                Value::$variant(value.into())
            }
        }
    )*};
}

value_from! {
    bool => Bool,
    i16 => Int,
    i32 => Int,
    i64 => Int,
    u16 => Int,
    u32 => Int,
    f32 => Float,
    f64 => Float,
    String => Text,
    &str => Text,
    Vec<u8> => Bytes,
    &[u8] => Bytes,
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
        }
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Bool(v), &Type::BOOL) => v.to_sql(ty, out),
            (Value::Int(v), &Type::INT2) => i16::try_from(*v)?.to_sql(ty, out),
            (Value::Int(v), &Type::INT4) => i32::try_from(*v)?.to_sql(ty, out),
            (Value::Int(v), &Type::INT8) => v.to_sql(ty, out),
            #[expect(
                clippy::cast_precision_loss,
                reason = "an integer bound to a float parameter is a float comparison"
            )]
            (Value::Int(v), &Type::FLOAT8) => (*v as f64).to_sql(ty, out),
            #[expect(
                clippy::cast_possible_truncation,
                reason = "a float4 parameter holds a float4"
            )]
            (Value::Float(v), &Type::FLOAT4) => (*v as f32).to_sql(ty, out),
            (Value::Float(v), &Type::FLOAT8) => v.to_sql(ty, out),
            (Value::Text(v), _) if <&str as ToSql>::accepts(ty) => v.as_str().to_sql(ty, out),
            (Value::Bytes(v), &Type::BYTEA) => v.as_slice().to_sql(ty, out),
            (value, ty) => Err(format!(
                "a {} value cannot be bound to a {} parameter; cast the parameter in SQL \
                 (for example `$1::text::{ty}`)",
                value.type_name(),
                ty.name()
            )
            .into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Every parameter type is tried; `to_sql` refuses the pairs it cannot convert with
        // a message that says which cast to write.
        true
    }

    to_sql_checked!();
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Bool(v) => ValueRef::Integer(i64::from(*v)),
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Float(v) => ValueRef::Real(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Bytes(v) => ValueRef::Blob(v),
        }))
    }
}

/// A type a column can be read as.
pub trait FromValue: Sized {
    /// Converts `value`, or says why not.
    fn from_value(value: &Value) -> Result<Self, String>;
}

fn mismatch(value: &Value, wanted: &str) -> String {
    format!("a {} value cannot be read as {wanted}", value.type_name())
}

impl FromValue for Value {
    fn from_value(value: &Value) -> Result<Self, String> {
        Ok(value.clone())
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Bool(v) => Ok(*v),
            Value::Int(0) => Ok(false),
            Value::Int(1) => Ok(true),
            other => Err(mismatch(other, "bool")),
        }
    }
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Int(v) => Ok(*v),
            other => Err(mismatch(other, "i64")),
        }
    }
}

impl FromValue for i32 {
    fn from_value(value: &Value) -> Result<Self, String> {
        let wide = i64::from_value(value).map_err(|_| mismatch(value, "i32"))?;
        i32::try_from(wide).map_err(|_| format!("{wide} does not fit in i32"))
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Float(v) => Ok(*v),
            other => Err(mismatch(other, "f64")),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(v) => Ok(v.clone()),
            other => Err(mismatch(other, "String")),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Bytes(v) => Ok(v.clone()),
            other => Err(mismatch(other, "Vec<u8>")),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A column of a [`Row`], by position or by name.
pub trait ColumnIndex {
    /// The position of the column in `row`, if it has it.
    fn position(&self, row: &Row) -> Option<usize>;
    /// How to name the column in a message.
    fn describe(&self) -> String;
}

impl ColumnIndex for usize {
    fn position(&self, row: &Row) -> Option<usize> {
        (*self < row.values.len()).then_some(*self)
    }

    fn describe(&self) -> String {
        format!("column {self}")
    }
}

impl ColumnIndex for &str {
    fn position(&self, row: &Row) -> Option<usize> {
        row.column_names().position(|name| name == *self)
    }

    fn describe(&self) -> String {
        format!("column `{self}`")
    }
}

/// A row of a result: its values, and the column names it shares with the other rows of
/// the result.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Columns,
    values: Vec<Value>,
}

/// Column names, borrowed from where they already are: a PostgreSQL statement (so reading
/// a row allocates no names), or the names a SQLite statement reported.
#[derive(Debug, Clone)]
enum Columns {
    Postgres(tokio_postgres::Statement),
    Named(Arc<[String]>),
}

impl PartialEq for Row {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values && self.column_names().eq(other.column_names())
    }
}

impl Row {
    /// The value of `column` as `T`.
    pub fn get<T: FromValue>(&self, column: impl ColumnIndex) -> Result<T, Error> {
        let position = column.position(self).ok_or_else(|| {
            Error::new(
                ErrorKind::Conversion,
                format!("the row has no {}", column.describe()),
            )
        })?;
        T::from_value(&self.values[position]).map_err(|why| {
            Error::new(
                ErrorKind::Conversion,
                format!("reading {}: {why}", column.describe()),
            )
        })
    }

    /// The column names, in order.
    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        let (postgres, named) = match &self.columns {
            Columns::Postgres(statement) => (Some(statement.columns()), None),
            Columns::Named(names) => (None, Some(names)),
        };
        postgres
            .into_iter()
            .flatten()
            .map(tokio_postgres::Column::name)
            .chain(
                named
                    .into_iter()
                    .flat_map(|names| names.iter().map(String::as_str)),
            )
    }

    /// The values, in column order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }
}

/// Converts a PostgreSQL row; columns of types without a [`Value`] mapping are an error
/// that says which cast to write.
pub(crate) fn from_postgres(
    statement: &tokio_postgres::Statement,
    row: &tokio_postgres::Row,
) -> Result<Row, Error> {
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let read = |e: tokio_postgres::Error| {
            Error::with_source(
                ErrorKind::Conversion,
                format!("reading column `{}`", column.name()),
                e,
            )
        };
        let value = match *column.type_() {
            Type::BOOL => row.try_get::<_, Option<bool>>(index).map_err(read)?.into(),
            Type::INT2 => row.try_get::<_, Option<i16>>(index).map_err(read)?.into(),
            Type::INT4 => row.try_get::<_, Option<i32>>(index).map_err(read)?.into(),
            Type::INT8 => row.try_get::<_, Option<i64>>(index).map_err(read)?.into(),
            Type::FLOAT4 => row.try_get::<_, Option<f32>>(index).map_err(read)?.into(),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(index).map_err(read)?.into(),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
                .try_get::<_, Option<String>>(index)
                .map_err(read)?
                .into(),
            Type::BYTEA => row
                .try_get::<_, Option<Vec<u8>>>(index)
                .map_err(read)?
                .into(),
            ref other => {
                return Err(Error::new(
                    ErrorKind::Conversion,
                    format!(
                        "column `{}` is {}, which has no portable value; select it cast \
                         (`{}::text`)",
                        column.name(),
                        other.name(),
                        column.name()
                    ),
                ));
            }
        };
        values.push(value);
    }
    Ok(Row {
        columns: Columns::Postgres(statement.clone()),
        values,
    })
}

/// Converts a SQLite row.
pub(crate) fn from_sqlite(
    columns: &Arc<[String]>,
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<Row> {
    use rusqlite::types::ValueRef;
    let mut values = Vec::with_capacity(columns.len());
    for index in 0..columns.len() {
        values.push(match row.get_ref(index)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Int(v),
            ValueRef::Real(v) => Value::Float(v),
            ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
            ValueRef::Blob(v) => Value::Bytes(v.to_vec()),
        });
    }
    Ok(Row {
        columns: Columns::Named(Arc::clone(columns)),
        values,
    })
}
