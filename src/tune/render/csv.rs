//! The report as CSV (RFC 4180 quoting, `\n` line ends): a header, then one line per pairing
//! in the report's order. Columns never move: the pairing's own columns, then the client
//! side's (`client_…`: the clients watching the server), then the server side's (`server_…`).
//! Cells are plain numbers, units in the column names; a missing value is an empty cell, a
//! missed detection makes a detection quantile `inf`.

use std::fmt::Write as _;

use crate::sim::metrics::SideMetrics;
use crate::tune::{TuneReport, TuneRow};

type RowColumn = (&'static str, fn(&TuneReport, &TuneRow) -> String);
type SideColumn = (&'static str, fn(&SideMetrics) -> String);

const ROW_COLUMNS: &[RowColumn] = &[
    ("scenario", |r, _| r.scenario.clone()),
    ("description", |r, _| {
        r.description.clone().unwrap_or_default()
    }),
    ("pairing", |_, x| x.pairing.clone()),
    ("detector", |_, x| x.detector.clone()),
    ("interval_ms", |_, x| x.interval_ms.to_string()),
    ("miss_threshold", |_, x| x.miss_threshold.to_string()),
    ("seeds", |_, x| x.seeds.to_string()),
    ("pareto", |_, x| x.pareto.to_string()),
    ("meets_limits", |_, x| x.meets_limits.to_string()),
    ("settled", |_, x| x.settled.to_string()),
    ("recommended", |r, x| {
        r.recommendation
            .as_ref()
            .is_some_and(|rec| rec.pairing == x.pairing)
            .to_string()
    }),
    ("detection_p99_s", |_, x| opt(x.detection_p99_s)),
    ("false_rate_per_hour", |_, x| opt(x.false_rate)),
    ("false_rate_lower_per_hour", |_, x| opt(x.false_rate_lower)),
    ("false_rate_upper_per_hour", |_, x| opt(x.false_rate_upper)),
    ("confidence", |r, _| num(r.limits.confidence)),
    ("overhead_bytes_per_s", |_, x| opt(x.overhead_bytes_per_s)),
    ("overhead_frames_per_s", |_, x| opt(x.overhead_frames_per_s)),
    ("reconnects_per_hour", |_, x| {
        opt(x.metrics.reconnects.reconnects_per_hour)
    }),
];

const SIDE_COLUMNS: &[SideColumn] = &[
    ("failures", |s| s.failures.to_string()),
    ("detection_p50_s", |s| opt(s.detection.p50)),
    ("detection_p99_s", |s| opt(s.detection.p99)),
    ("detection_max_s", |s| opt(s.detection.max)),
    ("missed", |s| s.missed.to_string()),
    ("false_suspicions", |s| s.false_suspicions.to_string()),
    ("exposure_hours", |s| num(s.exposure_hours)),
    ("false_rate_per_hour", |s| opt(s.mistake_rate_per_hour)),
    ("false_rate_lower_per_hour", |s| {
        opt(s.false_rate_interval().map(|i| i.lower))
    }),
    ("false_rate_upper_per_hour", |s| {
        opt(s.false_rate_interval().map(|i| i.upper))
    }),
    ("mistake_duration_mean_s", |s| opt(s.mistake_duration.mean)),
    ("mistake_duration_max_s", |s| opt(s.mistake_duration.max)),
    ("query_accuracy", |s| opt(s.query_accuracy)),
    ("bytes_per_s", |s| opt(s.overhead.bytes_out_per_sec)),
    ("heartbeats_per_s", |s| {
        opt(s.overhead.heartbeats_sent_per_sec)
    }),
];

const SIDES: [&str; 2] = ["client", "server"];

/// The report as CSV: a header line and one line per pairing.
pub fn csv(r: &TuneReport) -> String {
    let mut o = String::new();
    write_line(&mut o, header());
    for row in &r.rows {
        write_line(&mut o, cells(r, row));
    }
    o
}

fn header() -> Vec<String> {
    let own = ROW_COLUMNS.iter().map(|(name, _)| name.to_string());
    let sides = SIDES.iter().flat_map(|side| {
        SIDE_COLUMNS
            .iter()
            .map(move |(name, _)| format!("{side}_{name}"))
    });
    own.chain(sides).collect()
}

fn cells(r: &TuneReport, row: &TuneRow) -> Vec<String> {
    let own = ROW_COLUMNS.iter().map(|(_, cell)| cell(r, row));
    let m = &row.metrics;
    let sides = [&m.client, &m.server]
        .into_iter()
        .flat_map(|side| SIDE_COLUMNS.iter().map(move |(_, cell)| cell(side)));
    own.chain(sides).collect()
}

fn write_line(o: &mut String, cells: Vec<String>) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(o, "{}", field(c));
    }
    o.push('\n');
}

/// A field quoted when it holds a comma, a quote or a line break, its quotes doubled.
fn field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// Plain: the shortest text that reads back as the same number; `inf` for infinity.
fn num(x: f64) -> String {
    x.to_string()
}

fn opt(x: Option<f64>) -> String {
    x.map(num).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_with_a_comma_quote_or_newline_is_quoted_with_its_quotes_doubled() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a, b"), "\"a, b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn the_header_names_both_sides_columns_with_their_units() {
        let h = header();
        assert_eq!(h.len(), ROW_COLUMNS.len() + 2 * SIDE_COLUMNS.len());
        assert!(h.contains(&"client_detection_p99_s".to_string()));
        assert!(h.contains(&"server_false_rate_upper_per_hour".to_string()));
    }
}
