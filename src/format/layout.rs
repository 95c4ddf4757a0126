//! The text layout an output asks for: the arguments of
//! `logging.Formatter(format, datefmt, style)`, plus `utc`. Config resolves
//! `format`/`datefmt`/`style`/`utc` (or a dictConfig formatter) into a
//! [`TextFormat`]; [`Template::compile`](super::Template::compile) turns it
//! into something that formats records.

/// The embedded default output format (docs/decisions.md, "Command line").
pub const DEFAULT_FORMAT: &str = "%(asctime)s %(levelname)-8s %(name)s %(message)s";

/// Python `logging.Formatter` style, spelled as Python spells it
/// (`"style": "{"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub enum Style {
    /// `"%"`: `%(name)s` (the default).
    #[default]
    #[serde(rename = "%")]
    Percent,
    /// `"{"`: `{name}`, str.format.
    #[serde(rename = "{")]
    Brace,
    /// `"$"`: `$name`, string.Template.
    #[serde(rename = "$")]
    Dollar,
}

/// The text layout of an output: `logging.Formatter(format, datefmt, style)`.
#[derive(Clone, Debug, PartialEq)]
pub struct TextFormat {
    /// The format string.
    pub format: String,
    /// strftime format for `asctime`; `None` = `%Y-%m-%d %H:%M:%S,mmm`.
    pub datefmt: Option<String>,
    /// Which placeholder syntax `format` uses.
    pub style: Style,
    /// Render times in UTC instead of local time.
    pub utc: bool,
}

impl Default for TextFormat {
    fn default() -> TextFormat {
        TextFormat {
            format: DEFAULT_FORMAT.to_string(),
            datefmt: None,
            style: Style::Percent,
            utc: false,
        }
    }
}
