//! What the routes that page through a list or export it share: the download format, the
//! cursor of the next page, and CSV cells a spreadsheet will not run.

use serde::Deserialize;

/// How a list is downloaded.
#[derive(Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Csv,
}

/// The cursor of the page after `page`: its last item's id, when the page is full (there may
/// be more).
pub fn next_cursor<T, Id>(page: &[T], limit: usize, id: impl Fn(&T) -> Id) -> Option<Id> {
    (page.len() == limit).then(|| page.last().map(id)).flatten()
}

/// A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (or a tab or CR) as a
/// formula; listed text comes from clients (user agents, uploaded addresses), so such cells
/// are prefixed with `'` (OWASP's advice).
pub fn defuse(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused() {
        assert_eq!(defuse("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(defuse("curl/8"), "curl/8");
    }
}
