//! SQL text and its binds, pushed together: each `bind` writes the next `$n` where its value
//! goes, so the numbering and the order of the binds cannot drift apart in a query assembled
//! from optional parts or lists.

use sqlx::any::{Any, AnyArguments};
use sqlx::error::BoxDynError;
use sqlx::{Arguments, Encode, Type};
use std::fmt::Write;

pub(super) struct Sql<'q> {
    text: String,
    args: AnyArguments<'q>,
    /// The first value that could not be encoded, reported by `finish`.
    error: Option<BoxDynError>,
}

impl<'q> Sql<'q> {
    pub fn new(text: impl Into<String>) -> Sql<'q> {
        Sql {
            text: text.into(),
            args: AnyArguments::default(),
            error: None,
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Sql<'q> {
        self.text.push_str(text);
        self
    }

    /// Writes the placeholder of `value` here.
    pub fn bind<T>(&mut self, value: T) -> &mut Sql<'q>
    where
        T: 'q + Encode<'q, Any> + Type<Any>,
    {
        if let Err(err) = self.args.add(value) {
            self.error.get_or_insert(err);
        }
        // Writing to a String cannot fail.
        let _ = write!(self.text, "${}", self.args.len());
        self
    }

    /// `items`, each written by `each`, separated by `separator`.
    pub fn push_list<I>(
        &mut self,
        items: I,
        separator: &str,
        mut each: impl FnMut(&mut Sql<'q>, I::Item),
    ) -> &mut Sql<'q>
    where
        I: IntoIterator,
    {
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(separator);
            }
            each(self, item);
        }
        self
    }

    /// The text and its arguments, for `sqlx::query_with` and friends.
    pub fn finish(self) -> Result<(String, AnyArguments<'q>), sqlx::Error> {
        match self.error {
            Some(err) => Err(sqlx::Error::Encode(err)),
            None => Ok((self.text, self.args)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Sql;
    use sqlx::Arguments;

    #[test]
    fn placeholders_are_numbered_in_the_order_of_the_binds() {
        let mut sql = Sql::new("SELECT 1 WHERE a = ");
        sql.bind("x").push(" AND b IN (");
        sql.push_list([1_i64, 2, 3], ", ", |sql, n| {
            sql.bind(n);
        });
        sql.push(")");
        let (text, args) = sql.finish().expect("encodes");
        assert_eq!(text, "SELECT 1 WHERE a = $1 AND b IN ($2, $3, $4)");
        assert_eq!(args.len(), 4);
    }
}
