//! The report as Markdown (CommonMark with GitHub tables): what was swept, the verdict with its
//! margins, every pairing in a table, and the command that reproduces the sweep. Text from the
//! scenario (its name, description and detector names) is escaped, so it cannot open a link, a
//! tag or a table cell; the report's own words are written plain, to stay readable as text.

use std::fmt::Write as _;

use super::{
    Table, Verdict, alternative_line, budget_text, config_toml, cost_text, interval, limits_text,
    margin_lines, margin_text, miss_text, network_text, table, table_legend, verdict,
};
use crate::tune::TuneReport;

/// The report as Markdown.
pub fn markdown(r: &TuneReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Tuning heartbeats: {}\n", text(&r.scenario));
    if let Some(d) = &r.description {
        let _ = writeln!(o, "{}\n", text(d));
    }
    facts(&mut o, r);
    recommendation(&mut o, r);
    let _ = writeln!(o, "## All pairings\n");
    pairings(&mut o, &table(r));
    let _ = writeln!(o, "\n{}\n", table_legend(r));
    let _ = writeln!(o, "## Reproduce\n");
    let fence = fence_for(&r.command);
    let _ = writeln!(o, "{fence}sh\n{}\n{fence}", r.command);
    o
}

fn facts(o: &mut String, r: &TuneReport) {
    let lines = [
        ("Network", network_text(r)),
        ("Limits", limits_text(&r.limits)),
        ("Budget", budget_text(r)),
        ("Stopped", r.stop.describe().to_string()),
        ("Ran", cost_text(r)),
    ];
    for (name, value) in lines {
        let _ = writeln!(o, "- **{name}:** {value}");
    }
    o.push('\n');
}

fn recommendation(o: &mut String, r: &TuneReport) {
    let _ = writeln!(o, "## Recommendation\n");
    match verdict(r) {
        Verdict::Recommended {
            row,
            pairing,
            detection_margin_s,
            false_rate_margin,
        } => {
            let what = row.map_or_else(String::new, |x| {
                format!(
                    " ({}, η = {}, k = {})",
                    text(&x.detector),
                    interval(x.interval_ms),
                    x.miss_threshold
                )
            });
            let _ = writeln!(
                o,
                "**{}**{what} meets both limits with a {} margin and the least heartbeat overhead:\n",
                code(pairing),
                margin_text(r)
            );
            for line in margin_lines(r, row, detection_margin_s, false_rate_margin) {
                let _ = writeln!(o, "- {line}");
            }
            if let Some(line) = alternative_line(r) {
                let _ = writeln!(o, "- {line}");
            }
            if let Some(toml) = config_toml(r) {
                let _ = writeln!(
                    o,
                    "\nThe stack configuration measured (`--emit-config` writes it; `mcpsim serve --config` and `mcpsim client --config` run it):\n\n```toml\n{}```",
                    toml
                );
            }
        }
        Verdict::Closest {
            pairing,
            limit,
            ratio,
        } => {
            let _ = writeln!(
                o,
                "**None meets the limits.** Closest: {} {}.",
                code(pairing),
                miss_text(limit, ratio)
            );
        }
        Verdict::Nothing => {
            let _ = writeln!(o, "**None meets the limits:** no pairing was measured.");
        }
    }
    o.push('\n');
}

fn pairings(o: &mut String, t: &Table) {
    let header: Vec<String> = t.header.iter().map(|h| cell(h)).collect();
    let _ = writeln!(o, "| {} |", header.join(" | "));
    let align: Vec<&str> = (0..t.header.len())
        .map(|i| {
            if t.text_columns.contains(&i) {
                ":--"
            } else {
                "--:"
            }
        })
        .collect();
    let _ = writeln!(o, "|{}|", align.join("|"));
    for (marks, cells) in &t.rows {
        let shown: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| match i {
                1 if marks.recommended => format!("**{}**", code(c)),
                1 => code(c),
                2 => text(c),
                _ => cell(c),
            })
            .collect();
        let _ = writeln!(o, "| {} |", shown.join(" | "));
    }
}

/// Text with Markdown's punctuation escaped and line breaks folded, safe inline and in a cell.
fn text(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '&' | '!' => {
                o.push('\\');
                o.push(c);
            }
            '\n' | '\r' => o.push(' '),
            _ => o.push(c),
        }
    }
    o
}

/// Text this module wrote itself, in a table cell: only a pipe needs escaping.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// A code span that holds `s` whatever backticks it contains; pipes escaped for tables.
fn code(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ").replace('|', "\\|");
    let ticks = "`".repeat(longest_run(&s, '`') + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{ticks}{pad}{s}{pad}{ticks}")
}

/// A code fence longer than any run of backticks in `s`.
fn fence_for(s: &str) -> String {
    "`".repeat((longest_run(s, '`') + 1).max(3))
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut run) = (0, 0);
    for x in s.chars() {
        run = if x == c { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_text_cannot_open_a_tag_a_link_or_a_cell() {
        assert_eq!(text("<script>"), "\\<script\\>");
        assert_eq!(text("a|b [x](y)"), "a\\|b \\[x\\](y)");
        assert_eq!(text("two\nlines"), "two lines");
    }

    #[test]
    fn a_code_span_outgrows_the_backticks_it_holds() {
        assert_eq!(code("1s/3"), "`1s/3`");
        assert_eq!(code("a``b"), "```a``b```");
        assert_eq!(fence_for("run ````x"), "`````");
    }
}
