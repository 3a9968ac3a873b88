//! Portable values and rows: the same application code binds and reads them on PostgreSQL
//! and SQLite.
//!
//! Parameters are written `$1`, `$2`, ... on both backends. On PostgreSQL a [`Value`] is
//! converted to the type the server infers for its parameter (an `Int` binds to `int2`,
//! `int4` or `int8`, range-checked); types without a mapping are cast in SQL
//! (`$1::text::timestamptz`, `created_at::text`).

#[cfg(feature = "postgres")]
use std::error::Error as StdError;
use std::sync::Arc;

#[cfg(feature = "postgres")]
use bytes::BytesMut;
#[cfg(feature = "postgres")]
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::error::{Error, ErrorKind};

#[cfg(feature = "serde")]
mod de;

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
    /// A UUID (PostgreSQL `uuid`; SQLite stores it as hyphenated text). Feature
    /// `with-uuid-1`.
    #[cfg(feature = "with-uuid-1")]
    Uuid(uuid::Uuid),
    /// A point in time (PostgreSQL `timestamptz`, and `timestamp` read as UTC; SQLite
    /// stores it as RFC 3339 text in UTC). Feature `with-time-0_3`.
    #[cfg(feature = "with-time-0_3")]
    Timestamp(time::OffsetDateTime),
    /// A calendar date (PostgreSQL `date`; SQLite stores it as `YYYY-MM-DD`). Feature
    /// `with-time-0_3`.
    #[cfg(feature = "with-time-0_3")]
    Date(time::Date),
    /// A JSON document (PostgreSQL `json`/`jsonb`; SQLite stores it as text). Feature
    /// `with-serde_json-1`.
    #[cfg(feature = "with-serde_json-1")]
    Json(serde_json::Value),
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

#[cfg(feature = "with-uuid-1")]
value_from! { uuid::Uuid => Uuid }
#[cfg(feature = "with-time-0_3")]
value_from! { time::OffsetDateTime => Timestamp, time::Date => Date }
#[cfg(feature = "with-serde_json-1")]
value_from! { serde_json::Value => Json }

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
            #[cfg(feature = "with-uuid-1")]
            Value::Uuid(_) => "uuid",
            #[cfg(feature = "with-time-0_3")]
            Value::Timestamp(_) => "timestamp",
            #[cfg(feature = "with-time-0_3")]
            Value::Date(_) => "date",
            #[cfg(feature = "with-serde_json-1")]
            Value::Json(_) => "json",
        }
    }
}

#[cfg(feature = "postgres")]
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
            #[cfg(feature = "with-uuid-1")]
            (Value::Uuid(v), &Type::UUID) => v.to_sql(ty, out),
            #[cfg(feature = "with-time-0_3")]
            (Value::Timestamp(v), &Type::TIMESTAMPTZ) => v.to_sql(ty, out),
            #[cfg(feature = "with-time-0_3")]
            (Value::Timestamp(v), &Type::TIMESTAMP) => {
                let utc = v.to_offset(time::UtcOffset::UTC);
                time::PrimitiveDateTime::new(utc.date(), utc.time()).to_sql(ty, out)
            }
            #[cfg(feature = "with-time-0_3")]
            (Value::Date(v), &Type::DATE) => v.to_sql(ty, out),
            #[cfg(feature = "with-serde_json-1")]
            (Value::Json(v), &Type::JSON | &Type::JSONB) => v.to_sql(ty, out),
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

#[cfg(feature = "sqlite")]
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
            // What SQLite has no type for is stored as text that sorts as the value does.
            #[cfg(feature = "with-uuid-1")]
            Value::Uuid(v) => return Ok(ToSqlOutput::from(v.hyphenated().to_string())),
            #[cfg(feature = "with-time-0_3")]
            Value::Timestamp(v) => return Ok(ToSqlOutput::from(rfc3339_utc(*v)?)),
            #[cfg(feature = "with-time-0_3")]
            Value::Date(v) => return Ok(ToSqlOutput::from(v.to_string())),
            #[cfg(feature = "with-serde_json-1")]
            Value::Json(v) => return Ok(ToSqlOutput::from(v.to_string())),
        }))
    }
}

#[cfg(feature = "sqlite")]
/// A timestamp as RFC 3339 text in UTC, with microseconds: the form SQLite stores, so that
/// text order is time order.
#[cfg(feature = "with-time-0_3")]
fn rfc3339_utc(at: time::OffsetDateTime) -> rusqlite::Result<String> {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
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

#[cfg(feature = "with-uuid-1")]
impl FromValue for uuid::Uuid {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Uuid(v) => Ok(*v),
            Value::Text(v) => v.parse().map_err(|_| mismatch(value, "Uuid")),
            other => Err(mismatch(other, "Uuid")),
        }
    }
}

#[cfg(feature = "with-time-0_3")]
impl FromValue for time::OffsetDateTime {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Timestamp(v) => Ok(*v),
            Value::Text(v) => {
                time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| mismatch(value, "OffsetDateTime"))
            }
            other => Err(mismatch(other, "OffsetDateTime")),
        }
    }
}

#[cfg(feature = "with-time-0_3")]
impl FromValue for time::Date {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Date(v) => Ok(*v),
            Value::Text(v) => {
                time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]"))
                    .map_err(|_| mismatch(value, "Date"))
            }
            other => Err(mismatch(other, "Date")),
        }
    }
}

#[cfg(feature = "with-serde_json-1")]
impl FromValue for serde_json::Value {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Json(v) => Ok(v.clone()),
            Value::Text(v) => serde_json::from_str(v).map_err(|_| mismatch(value, "JSON")),
            other => Err(mismatch(other, "JSON")),
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
    #[cfg(feature = "postgres")]
    Postgres(tokio_postgres::Statement),
    Named(Arc<[String]>),
}

/// The column names of a row, wherever they are kept.
enum Names<'a> {
    #[cfg(feature = "postgres")]
    Postgres(std::slice::Iter<'a, tokio_postgres::Column>),
    Named(std::slice::Iter<'a, String>),
}

impl<'a> Iterator for Names<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            #[cfg(feature = "postgres")]
            Names::Postgres(columns) => columns.next().map(tokio_postgres::Column::name),
            Names::Named(names) => names.next().map(String::as_str),
        }
    }
}

impl PartialEq for Row {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values && self.column_names().eq(other.column_names())
    }
}

impl Row {
    /// The value of `column` as `T`.
    ///
    /// # Panics
    ///
    /// If the row has no such column or its value cannot be read as `T`, with a message that
    /// names both: the convention of sqlx and tokio-postgres. Use [`Row::try_get`] for a
    /// result.
    #[track_caller]
    pub fn get<T: FromValue>(&self, column: impl ColumnIndex) -> T {
        match self.try_get(column) {
            Ok(value) => value,
            Err(error) => panic!("{error}"),
        }
    }

    /// The value of `column` as `T`, or an error of kind
    /// [`ErrorKind::Conversion`](crate::ErrorKind::Conversion) that says why not.
    pub fn try_get<T: FromValue>(&self, column: impl ColumnIndex) -> Result<T, Error> {
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

    /// A row of `values` under `columns`: for tests of code that reads rows.
    ///
    /// # Panics
    ///
    /// If there are not as many values as columns.
    pub fn with_columns(columns: &[&str], values: Vec<Value>) -> Row {
        assert_eq!(
            columns.len(),
            values.len(),
            "a row needs one value per column"
        );
        Row {
            columns: Columns::Named(columns.iter().map(|name| (*name).to_owned()).collect()),
            values,
        }
    }

    /// The column names, in order.
    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        match &self.columns {
            #[cfg(feature = "postgres")]
            Columns::Postgres(statement) => Names::Postgres(statement.columns().iter()),
            Columns::Named(names) => Names::Named(names.iter()),
        }
    }

    /// The values, in column order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }
}

#[cfg(feature = "postgres")]
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
            #[cfg(feature = "with-uuid-1")]
            Type::UUID => row
                .try_get::<_, Option<uuid::Uuid>>(index)
                .map_err(read)?
                .into(),
            #[cfg(feature = "with-time-0_3")]
            Type::TIMESTAMPTZ => row
                .try_get::<_, Option<time::OffsetDateTime>>(index)
                .map_err(read)?
                .into(),
            #[cfg(feature = "with-time-0_3")]
            Type::TIMESTAMP => row
                .try_get::<_, Option<time::PrimitiveDateTime>>(index)
                .map_err(read)?
                .map(time::PrimitiveDateTime::assume_utc)
                .into(),
            #[cfg(feature = "with-time-0_3")]
            Type::DATE => row
                .try_get::<_, Option<time::Date>>(index)
                .map_err(read)?
                .into(),
            #[cfg(feature = "with-serde_json-1")]
            Type::JSON | Type::JSONB => row
                .try_get::<_, Option<serde_json::Value>>(index)
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
#[cfg(feature = "sqlite")]
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
            // Invalid UTF-8 is an error, never silently replaced.
            ValueRef::Text(v) => Value::Text(
                std::str::from_utf8(v)
                    .map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            index,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })?
                    .to_owned(),
            ),
            ValueRef::Blob(v) => Value::Bytes(v.to_vec()),
        });
    }
    Ok(Row {
        columns: Columns::Named(Arc::clone(columns)),
        values,
    })
}
