//! The names of the inbox and outbox tables, and the SQL text built from them.

use crate::ConfigError;
use crate::config::{DatabaseConfig, is_plain_identifier};

/// Where the inbox and outbox are: a schema and two table names, each a plain lower-case SQL
/// name (checked, since names go into SQL text where no placeholder can stand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tables {
    schema: String,
    inbox: String,
    outbox: String,
}

impl Tables {
    /// The configured names.
    ///
    /// # Errors
    ///
    /// A name that is not a plain lower-case SQL name.
    pub(crate) fn new(config: &DatabaseConfig) -> Result<Self, ConfigError> {
        config.validate_names()?;
        debug_assert!(is_plain_identifier(&config.schema));
        Ok(Tables {
            schema: config.schema.clone(),
            inbox: config.inbox_table.clone(),
            outbox: config.outbox_table.clone(),
        })
    }

    /// `schema.inbox`.
    pub(crate) fn inbox(&self) -> String {
        format!("{}.{}", self.schema, self.inbox)
    }

    /// `schema.outbox`.
    pub(crate) fn outbox(&self) -> String {
        format!("{}.{}", self.schema, self.outbox)
    }

    /// The schema.
    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    /// The `LISTEN`/`NOTIFY` channel the outbox's trigger notifies on commit.
    pub(crate) fn channel(&self) -> String {
        format!("{}_{}", self.schema, self.outbox)
    }

    /// `template` with `{schema}`, `{inbox}`, `{outbox}` and `{channel}` replaced.
    pub(crate) fn render(&self, template: &str) -> String {
        template
            .replace("{schema}", &self.schema)
            .replace("{inbox}", &self.inbox)
            .replace("{outbox}", &self.outbox)
            .replace("{channel}", &self.channel())
    }
}

impl Default for Tables {
    fn default() -> Self {
        Tables::new(&DatabaseConfig::default()).expect("the default names are plain")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_name_the_configured_tables() {
        let config = DatabaseConfig {
            schema: "billing".into(),
            outbox_table: "messages_out".into(),
            ..DatabaseConfig::default()
        };
        let tables = Tables::new(&config).unwrap();
        assert_eq!(tables.inbox(), "billing.inbox");
        assert_eq!(
            tables.render("INSERT INTO {schema}.{outbox}; NOTIFY {channel}"),
            "INSERT INTO billing.messages_out; NOTIFY billing_messages_out"
        );
    }

    #[test]
    fn names_that_would_need_quoting_are_refused() {
        let config = DatabaseConfig {
            inbox_table: "Inbox; DROP TABLE x".into(),
            ..DatabaseConfig::default()
        };
        let error = Tables::new(&config).unwrap_err().to_string();
        assert!(error.contains("INIESTA_DATABASE_INBOX_TABLE"), "{error}");
    }
}
