//! The scenario layer's one error: what is wrong, and where in which file.

use std::ops::Range;
use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};
use thiserror::Error;

/// A scenario file that cannot be used. `Display` gives `path:line:column: message` (`path:
/// message` for a file that cannot be read); as a
/// [`Diagnostic`] it also shows the offending line.
#[derive(Debug, Error, Diagnostic)]
#[error("{location}: {message}")]
pub struct ScenarioError {
    /// `path:line:column`, or just `path` when the file could not be read.
    location: String,
    pub path: String,
    /// 1-based; 0 when the error concerns the whole file (it could not be read).
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    #[source_code]
    source_code: Arc<NamedSource<String>>,
    #[label("here")]
    span: Option<SourceSpan>,
}

impl ScenarioError {
    /// An error at byte range `span` of `text` (the file at `path`).
    pub fn at(path: &str, text: &str, span: Option<Range<usize>>, message: String) -> Self {
        let (line, column) = match &span {
            Some(r) => line_column(text, r.start),
            None => (1, 1),
        };
        ScenarioError {
            location: format!("{path}:{line}:{column}"),
            path: path.to_string(),
            line,
            column,
            message,
            source_code: Arc::new(NamedSource::new(path, text.to_string())),
            span: span.map(|r| SourceSpan::from(r.start..r.end.max(r.start))),
        }
    }

    /// Something wrong with the file as a whole (not readable, not a regular file, too big,
    /// not UTF-8).
    pub fn whole(path: &str, message: String) -> Self {
        ScenarioError {
            location: path.to_string(),
            path: path.to_string(),
            line: 0,
            column: 0,
            message,
            source_code: Arc::new(NamedSource::new(path, String::new())),
            span: None,
        }
    }

    /// The file could not be read at all.
    pub fn unreadable(path: &str, error: &std::io::Error) -> Self {
        ScenarioError {
            location: path.to_string(),
            path: path.to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read the scenario file: {error}"),
            source_code: Arc::new(NamedSource::new(path, String::new())),
            span: None,
        }
    }
}

/// Where each line of a text starts, for finding many offsets' lines in logarithmic time
/// (a file with tens of thousands of tables is checked in linear time, not quadratic).
#[derive(Clone, Debug)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// 1-based line and column (in characters) of byte `offset` in `text`, the text this
    /// index was built from.
    pub fn locate(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let line = self.starts.partition_point(|s| *s <= offset);
        let start = self.starts[line - 1];
        let column = text.get(start..offset).map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_index_agrees_with_the_scan() {
        let text = "a = 1\nbé = 2\n\nlast";
        let index = LineIndex::new(text);
        for offset in 0..=text.len() {
            if text.is_char_boundary(offset) {
                assert_eq!(
                    index.locate(text, offset),
                    line_column(text, offset),
                    "{offset}"
                );
            }
        }
    }

    #[test]
    fn offsets_become_one_based_lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // `=` after a two-byte character is the fourth character of the line.
        assert_eq!(line_column(text, 10), (2, 4));
    }
}
