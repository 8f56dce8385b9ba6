//! Aligned tables for display commands, and the JSON alternative (`-o json`).

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

use crate::cli::OutputFormat;

/// Build a borderless table with upper-case headers, like kubectl's.
pub fn table(headers: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.iter().map(|h| h.to_uppercase()));
    for row in rows {
        t.add_row(row);
    }
    t
}

/// Print `value` as pretty JSON, or the table `render` builds from it.
pub fn print<T: Serialize>(
    format: OutputFormat,
    value: &T,
    render: impl FnOnce(&T) -> Table,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
            println!("{text}");
        }
        OutputFormat::Table => {
            let t = render(value);
            for line in t.lines() {
                println!("{}", line.trim_end());
            }
        }
    }
    Ok(())
}
