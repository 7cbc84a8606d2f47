//! A [`super::TuneReport`] written out for people and tools: [`csv`] for spreadsheets and
//! scripts (every metric of both sides, one row per pairing), [`markdown`] for a review or an
//! issue, [`html`] for one self-contained page with the trade-off chart, heatmaps and the table.
//!
//! Pure functions of the report: no I/O. The Markdown and HTML tables share their columns
//! (`table`): detection quantiles of the worse side, the worse side's false-suspicion rate
//! with its interval, both ends' heartbeat overhead.

mod csv;
mod html;
mod markdown;

use std::time::Duration;

pub use self::csv::csv;
pub use self::html::html;
pub use self::markdown::markdown;

use super::{Limits, TuneReport, TuneRow, worse};
use crate::scenario::units::show;

/// Shown for a value that was not measured.
const NONE: &str = "—";

/// `x` to three significant digits, trailing zeros dropped: `0.0123`, `2.5`, `120`, `4521`.
fn num(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if !x.is_finite() {
        return if x > 0.0 { "∞" } else { "-∞" }.into();
    }
    let decimals = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// An optional value: `—` when missing.
fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| NONE.to_string(), num)
}

/// A share close to 1, with enough digits to tell 0.9999 from 0.99999.
fn share(x: Option<f64>) -> String {
    match x {
        None => NONE.into(),
        Some(1.0) => "1".into(),
        Some(x) => format!("{x:.6}"),
    }
}

/// `250ms`, `1s`.
fn interval(ms: u64) -> String {
    show(Duration::from_millis(ms))
}

/// The smaller of two optional values, or the one present.
fn lesser(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn missed(row: &TuneRow) -> u64 {
    row.metrics.client.missed + row.metrics.server.missed
}

/// `0.012 [0.002, 0.05]`, or `—` without exposure.
fn rate_with_interval(row: &TuneRow) -> String {
    match (row.false_rate, row.false_rate_lower, row.false_rate_upper) {
        (Some(r), Some(lo), Some(hi)) => format!("{} [{}, {}]", num(r), num(lo), num(hi)),
        (r, _, _) => opt(r),
    }
}

/// `95%`.
fn percent(confidence: f64) -> String {
    format!("{}%", num(confidence * 100.0))
}

/// The limits in one sentence.
fn limits_text(l: &Limits) -> String {
    format!(
        "detection p99 ≤ {} with no missed detection; false suspicions ≤ {} per connection-hour \
         (upper end of the {} interval)",
        show(l.max_detection),
        num(l.max_false_rate),
        percent(l.confidence)
    )
}

fn budget_text(r: &TuneReport) -> String {
    let b = &r.budget;
    let mut s = format!(
        "rate precision ±{}, {} seeds per round, at most {} seeds per pairing",
        percent(b.precision),
        b.seeds_per_round,
        b.max_seeds
    );
    if let Some(w) = b.wall {
        s.push_str(&format!(", {} wall", show(w)));
    }
    s
}

/// What the sweep cost: `12.3 s wall, 456 simulated connection-hours`.
fn cost_text(r: &TuneReport) -> String {
    format!(
        "{} s wall, {} simulated connection-hours",
        num(r.wall_s),
        num(r.connection_hours)
    )
}

/// `20 sessions × 30m per run`.
fn network_text(r: &TuneReport) -> String {
    format!(
        "{} sessions × {} per run, {} pairings",
        r.sessions,
        show(Duration::from_secs_f64(r.duration_s.max(0.0))),
        r.rows.len()
    )
}

/// What the report concludes, with the rows it names.
enum Verdict<'a> {
    Recommended {
        row: Option<&'a TuneRow>,
        pairing: &'a str,
        detection_margin_s: f64,
        false_rate_margin: f64,
    },
    Closest {
        pairing: &'a str,
        limit: &'a str,
        ratio: f64,
    },
    Nothing,
}

fn verdict(r: &TuneReport) -> Verdict<'_> {
    if let Some(rec) = &r.recommendation {
        return Verdict::Recommended {
            row: r.rows.iter().find(|x| x.pairing == rec.pairing),
            pairing: &rec.pairing,
            detection_margin_s: rec.detection_margin_s,
            false_rate_margin: rec.false_rate_margin,
        };
    }
    match &r.closest {
        Some(c) => Verdict::Closest {
            pairing: &c.pairing,
            limit: &c.limit,
            ratio: c.ratio,
        },
        None => Verdict::Nothing,
    }
}

/// The margin lines of a recommendation, plain text.
fn margin_lines(r: &TuneReport, row: Option<&TuneRow>, det: f64, rate: f64) -> [String; 2] {
    let l = &r.limits;
    let limit_s = l.max_detection.as_secs_f64();
    let share_of = |margin: f64, limit: f64| {
        if limit > 0.0 {
            format!(" (a margin of {} of the limit)", percent(margin / limit))
        } else {
            String::new()
        }
    };
    let detection = match row.and_then(|x| x.detection_p99_s) {
        Some(d) => format!(
            "detection p99 {} s: {} s under the {} limit{}",
            num(d),
            num(det),
            show(l.max_detection),
            share_of(det, limit_s)
        ),
        None => format!(
            "no failure to detect: the {} detection limit was not put to the test",
            show(l.max_detection)
        ),
    };
    let upper = row.and_then(|x| x.false_rate_upper);
    [
        detection,
        format!(
            "false suspicions ≤ {}/h per connection ({} upper bound): {}/h under the {}/h limit{}",
            opt(upper),
            percent(l.confidence),
            num(rate),
            num(l.max_false_rate),
            share_of(rate, l.max_false_rate)
        ),
    ]
}

/// The required margin, as the reports write it: `20%`.
fn margin_text(r: &TuneReport) -> String {
    percent(r.limits.margin)
}

/// The next-safer pairing of a recommendation, plain text.
fn alternative_line(r: &TuneReport) -> Option<String> {
    let rec = r.recommendation.as_ref()?;
    Some(match &rec.alternative {
        Some(a) => format!(
            "next safer: {} (a {} margin) for {} heartbeat bytes/s more per connection",
            a.pairing,
            percent(a.safety),
            num(a.extra_bytes_per_s)
        ),
        None => "next safer: none; no other pairing has a wider margin".to_string(),
    })
}

/// The recommended stack configuration as TOML.
fn config_toml(r: &TuneReport) -> Option<String> {
    r.recommendation.as_ref().map(|rec| rec.config.to_toml())
}

/// How a closest pairing misses its limit, plain text after the pairing's name.
fn miss_text(limit: &str, ratio: f64) -> String {
    let what = if limit == "detection" {
        "detection-time"
    } else {
        "false-suspicion"
    };
    if ratio.is_finite() {
        format!("misses the {what} limit by ×{}", num(ratio))
    } else if limit == "detection" {
        "misses the detection-time limit: a failure went undetected".to_string()
    } else {
        format!("misses the {what} limit: its rate was not measured")
    }
}

/// A pairing's place in the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Marks {
    recommended: bool,
    pareto: bool,
    meets_limits: bool,
}

fn marks(r: &TuneReport, row: &TuneRow) -> Marks {
    Marks {
        recommended: r
            .recommendation
            .as_ref()
            .is_some_and(|x| x.pairing == row.pairing),
        pareto: row.pareto,
        meets_limits: row.meets_limits,
    }
}

/// `★` recommended, `◆` on the Pareto frontier.
fn mark_symbols(m: Marks) -> String {
    let mut s = String::new();
    if m.recommended {
        s.push('★');
    }
    if m.pareto {
        s.push('◆');
    }
    s
}

/// The columns the Markdown and HTML tables share, plain text.
struct Table {
    header: Vec<String>,
    /// Columns holding text rather than numbers (left-aligned).
    text_columns: Vec<usize>,
    rows: Vec<(Marks, Vec<String>)>,
}

fn table(r: &TuneReport) -> Table {
    let rate = format!("λ_M per conn-h [{}]", percent(r.limits.confidence));
    let header = [
        "",
        "pairing",
        "detector",
        "η",
        "k",
        "seeds",
        "T_D p50 (s)",
        "T_D p99 (s)",
        "T_D max (s)",
        "missed",
        rate.as_str(),
        "T_M mean (s)",
        "P_A",
        "overhead (B/s)",
        "heartbeats (/s)",
        "meets limits",
    ]
    .map(String::from)
    .to_vec();
    let rows = r
        .rows
        .iter()
        .map(|row| {
            let m = marks(r, row);
            (m, table_row(row, m))
        })
        .collect();
    Table {
        header,
        text_columns: vec![0, 1, 2, 15],
        rows,
    }
}

fn table_row(row: &TuneRow, m: Marks) -> Vec<String> {
    let (c, s) = (&row.metrics.client, &row.metrics.server);
    let q = |f: fn(&crate::sim::metrics::Quantiles) -> Option<f64>| {
        opt(worse(f(&c.detection), f(&s.detection)))
    };
    vec![
        mark_symbols(m),
        row.pairing.clone(),
        row.detector.clone(),
        interval(row.interval_ms),
        row.miss_threshold.to_string(),
        row.seeds.to_string(),
        q(|x| x.p50),
        q(|x| x.p99),
        q(|x| x.max),
        missed(row).to_string(),
        rate_with_interval(row),
        opt(worse(c.mistake_duration.mean, s.mistake_duration.mean)),
        share(lesser(c.query_accuracy, s.query_accuracy)),
        opt(row.overhead_bytes_per_s),
        opt(row.overhead_frames_per_s),
        if m.meets_limits { "yes" } else { "no" }.to_string(),
    ]
}

/// What the table's columns mean, plain text.
fn table_legend(r: &TuneReport) -> String {
    format!(
        "★ recommended; ◆ on the Pareto frontier of detection p99 against false-suspicion \
         rate (no other pairing is at least as good on both and better on one; overhead breaks \
         ties). T_D: detection \
         time, the worse of the two sides (clients watching the server, the server watching \
         each client), ∞ when a failure went undetected. λ_M: false suspicions per \
         connection-hour on the worse side, with its {} interval. T_M mean, P_A: mistake \
         duration and query accuracy of the worse side. Overhead: heartbeat bytes and frames \
         per second of both ends of a connection. {NONE}: not measured. {}",
        percent(r.limits.confidence),
        crate::config::DetectorKind::PAIRING_LEGEND
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_three_significant_digits_without_trailing_zeros() {
        let shown: Vec<String> = [0.0, 0.012345, 2.5, 120.4, 4521.0, 1.0, f64::INFINITY]
            .into_iter()
            .map(num)
            .collect();
        assert_eq!(shown, ["0", "0.0123", "2.5", "120", "4521", "1", "∞"]);
    }

    #[test]
    fn a_missing_value_is_a_dash_and_a_full_share_is_one() {
        assert_eq!(opt(None), NONE);
        assert_eq!(share(Some(1.0)), "1");
        assert_eq!(share(Some(0.9999991)), "0.999999");
    }

    #[test]
    fn an_undetected_failure_misses_the_detection_limit_without_a_ratio() {
        assert_eq!(
            miss_text("detection", f64::INFINITY),
            "misses the detection-time limit: a failure went undetected"
        );
        assert_eq!(
            miss_text("false-rate", 3.21),
            "misses the false-suspicion limit by ×3.21"
        );
    }
}
