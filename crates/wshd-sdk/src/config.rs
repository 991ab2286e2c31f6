//! Per-route configuration handed to [`Handler::new`](crate::Handler::new).

/// The route's `[route.config]` table from `server.toml`, read by key. Values are TOML's:
/// strings, integers, floats, booleans and arrays of them.
///
/// ```
/// # use wshd_sdk::Config;
/// # fn new(config: &Config) -> Result<(), wshd_sdk::Error> {
/// let greeting = config.str("greeting").unwrap_or("hello");
/// let limit = config.int("limit").unwrap_or(10);
/// let rooms = config.str_list("rooms").unwrap_or_default();
/// # let _ = (greeting, limit, rooms);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default, Clone)]
pub struct Config {
    table: toml::Table,
}

impl Config {
    /// Parses the TOML text the host passes (an inline table rendered as a document).
    pub(crate) fn parse(text: &str) -> Result<Config, toml::de::Error> {
        Ok(Config { table: text.parse::<toml::Table>()? })
    }

    /// Whether the table has `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// The table's keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.table.keys().map(String::as_str)
    }

    /// A string value.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.table.get(key).and_then(toml::Value::as_str)
    }

    /// An integer value.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.table.get(key).and_then(toml::Value::as_integer)
    }

    /// A float value (an integer reads as a float too).
    pub fn float(&self, key: &str) -> Option<f64> {
        let value = self.table.get(key)?;
        value.as_float().or_else(|| value.as_integer().map(|i| i as f64))
    }

    /// A boolean value.
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.table.get(key).and_then(toml::Value::as_bool)
    }

    /// An array of strings; `None` when absent or when any element is not a string.
    pub fn str_list(&self, key: &str) -> Option<Vec<&str>> {
        self.table.get(key)?.as_array()?.iter().map(toml::Value::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_by_key_and_type() {
        let config = Config::parse("a = \"x\"\nn = 3\nf = 1.5\nb = true\nl = [\"p\", \"q\"]\nm = [1]\n")
            .expect("valid TOML");
        assert_eq!(config.str("a"), Some("x"));
        assert_eq!(config.str("n"), None);
        assert_eq!(config.int("n"), Some(3));
        assert_eq!(config.float("n"), Some(3.0));
        assert_eq!(config.float("f"), Some(1.5));
        assert_eq!(config.bool("b"), Some(true));
        assert_eq!(config.str_list("l"), Some(vec!["p", "q"]));
        assert_eq!(config.str_list("m"), None);
        assert!(config.contains("m") && !config.contains("z"));
        assert_eq!(config.keys().collect::<Vec<_>>(), ["a", "b", "f", "l", "m", "n"]);
    }

    #[test]
    fn invalid_text_is_an_error() {
        assert!(Config::parse("a = ").is_err());
    }
}
