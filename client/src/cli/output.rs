//! Printing results: compact JSON for scripts, aligned text for people.

use serde_json::Value;

/// An instant in unix milliseconds as RFC 3339.
pub(super) fn rfc3339(ms: i64) -> String {
    tally_token::format_rfc3339(i128::from(ms) * 1_000_000)
}

/// As [`rfc3339`], JSON `null` for none.
pub(super) fn json_time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| Value::String(rfc3339(ms)))
}

/// As [`rfc3339`], `-` for none.
pub(super) fn text_time(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_owned(), rfc3339)
}

pub(super) fn json(value: &Value) {
    println!("{value}");
}

/// Prints rows as columns separated by two spaces, the first row a header.
pub(super) fn table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> =
            row.iter().enumerate().map(|(i, cell)| format!("{cell:<width$}", width = widths[i])).collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

/// Prints `label  value` lines with the labels aligned.
pub(super) fn fields(pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        println!("{k:<width$}  {v}");
    }
}
