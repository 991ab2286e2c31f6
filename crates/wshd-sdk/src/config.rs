//! Per-route configuration handed to [`Handler::new`](crate::Handler::new).

/// The route's `[route.config]` table from `server.toml`.
#[derive(Debug, Default, Clone)]
pub struct Config {
    table: toml::Table,
}

impl Config {
    /// Parses the TOML text the host passes (an inline table rendered as a document).
    pub(crate) fn parse(text: &str) -> Result<Config, toml::de::Error> {
        Ok(Config { table: text.parse::<toml::Table>()? })
    }

    /// The whole table.
    pub fn table(&self) -> &toml::Table {
        &self.table
    }

    /// A string value.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.table.get(key).and_then(toml::Value::as_str)
    }

    /// An integer value.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.table.get(key).and_then(toml::Value::as_integer)
    }

    /// A boolean value.
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.table.get(key).and_then(toml::Value::as_bool)
    }
}
