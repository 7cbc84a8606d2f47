//! The report as one self-contained HTML page: inline CSS and SVG, no script, no font or
//! image from the network, so it can be mailed, archived and printed as is.
//!
//! The page reads top to bottom: the verdict and what was swept; the trade-off chart
//! (detection p99 against false-suspicion rate, a series per detector, the limits as dashed
//! lines around the acceptable region); heatmaps over interval × threshold per detector; the
//! full table. Colours are Okabe–Ito for detectors and viridis for heatmaps, both readable
//! with the common colour-vision deficiencies; every series also has its own marker shape.
//! All text from the scenario is escaped.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{
    Marks, NONE, Table, Verdict, alternative_line, budget_text, config_toml, cost_text, interval,
    limits_text, margin_lines, margin_text, miss_text, network_text, num, opt, table, table_legend,
    verdict,
};
use crate::tune::{TuneReport, TuneRow};

/// Okabe–Ito, without its yellow (too pale on white).
const PALETTE: [&str; 7] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
];
const SHAPES: usize = 6;

/// The report as an HTML page.
pub fn html(r: &TuneReport) -> String {
    let mut o = String::new();
    head(&mut o, r);
    o.push_str("<body>\n<main>\n");
    header(&mut o, r);
    chart_section(&mut o, r);
    heatmap_section(&mut o, r);
    table_section(&mut o, r);
    reproduce(&mut o, r);
    o.push_str("</main>\n</body>\n</html>\n");
    o
}

/// `s` with the characters HTML gives meaning to replaced by references.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

const STYLE: &str = r#"
:root { --ink: #1b1b1b; --muted: #5a5a5a; --line: #d6d6d6; --soft: #f4f4f4; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 20px 28px 40px; }
h1 { font-size: 1.7rem; margin: 0 0 .2rem; overflow-wrap: anywhere; }
h2 { font-size: 1.25rem; margin: 2rem 0 .4rem; border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
.kicker { margin: 0; color: var(--muted); font-size: .85rem; letter-spacing: .06em; text-transform: uppercase; }
.desc { margin: 0 0 1rem; color: var(--muted); overflow-wrap: anywhere; }
.verdict { border: 2px solid #009E73; background: #eaf6f1; border-radius: 8px; padding: 12px 18px; margin: 0 0 1rem; }
.verdict.none { border-color: #D55E00; background: #fbeee6; }
.verdict .label { margin: 0; font-size: .85rem; font-weight: 700; letter-spacing: .05em; text-transform: uppercase; }
.verdict .big { margin: .1rem 0 .3rem; font-size: 1.5rem; font-weight: 700; }
.verdict .big span { font-size: 1rem; font-weight: 400; color: var(--muted); margin-left: .5rem; }
.verdict ul { margin: .2rem 0; padding-left: 1.2rem; }
.verdict p { margin: .2rem 0; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: 0; }
.facts dt { font-weight: 600; }
.facts dd { margin: 0; }
.note { color: var(--muted); font-size: .85rem; margin: .3rem 0 0; }
figure { margin: 0; break-inside: avoid; page-break-inside: avoid; }
figcaption { font-weight: 600; margin: .6rem 0 .2rem; }
svg { display: block; width: 100%; height: auto; font-family: inherit; }
.heatmaps { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 8px 28px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 5px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: var(--soft); vertical-align: bottom; white-space: normal; }
th.t, td.t { text-align: left; }
tr.pareto td.mark { color: #0072B2; }
tr.rec td { background: #fff1b8; font-weight: 600; }
tr.rec td.mark { color: #8a5a00; }
td.no { color: var(--muted); }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; }
pre { background: var(--soft); padding: 10px 12px; border-radius: 6px; white-space: pre-wrap; overflow-wrap: anywhere; }
@media (max-width: 700px) { main { padding: 12px; } .facts { grid-template-columns: 1fr; } .facts dd { margin-bottom: .3rem; } }
@media print {
  main { max-width: none; padding: 0; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h2 { break-after: avoid; }
  table { font-size: 9px; }
  th, td { padding: 2px 4px; }
  tr { break-inside: avoid; }
}
"#;

fn head(o: &mut String, r: &TuneReport) {
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>mcpsim tune: {}</title>\n<style>{STYLE}</style>\n</head>\n",
        esc(&r.scenario)
    );
}

fn header(o: &mut String, r: &TuneReport) {
    let _ = writeln!(
        o,
        "<header>\n<p class=\"kicker\">mcpsim tune</p>\n<h1>{}</h1>",
        esc(&r.scenario)
    );
    if let Some(d) = &r.description {
        let _ = writeln!(o, "<p class=\"desc\">{}</p>", esc(d));
    }
    verdict_box(o, r);
    let facts = [
        ("Network", network_text(r)),
        ("Limits", limits_text(&r.limits)),
        ("Stopped", r.stop.describe().to_string()),
        ("Budget", budget_text(r)),
        ("Ran", cost_text(r)),
    ];
    o.push_str("<dl class=\"facts\">\n");
    for (name, value) in facts {
        let _ = writeln!(o, "<dt>{name}</dt><dd>{}</dd>", esc(&value));
    }
    o.push_str("</dl>\n</header>\n");
}

fn verdict_box(o: &mut String, r: &TuneReport) {
    match verdict(r) {
        Verdict::Recommended {
            row,
            pairing,
            detection_margin_s,
            false_rate_margin,
        } => {
            o.push_str("<section class=\"verdict ok\">\n<p class=\"label\">Recommended</p>\n");
            let what = row.map_or_else(String::new, |x| {
                format!(
                    "<span>{} · η = {} · k = {}</span>",
                    esc(&x.detector),
                    interval(x.interval_ms),
                    x.miss_threshold
                )
            });
            let _ = writeln!(
                o,
                "<p class=\"big\"><code>{}</code>{what}</p>\n<ul>",
                esc(pairing)
            );
            for line in margin_lines(r, row, detection_margin_s, false_rate_margin) {
                let _ = writeln!(o, "<li>{}</li>", esc(&line));
            }
            let cost = row.map_or_else(String::new, |x| {
                format!(
                    " ({} B/s and {} heartbeats/s per connection)",
                    opt(x.overhead_bytes_per_s),
                    opt(x.overhead_frames_per_s)
                )
            });
            if let Some(line) = alternative_line(r) {
                let _ = writeln!(o, "<li>{}</li>", esc(&line));
            }
            let _ = writeln!(
                o,
                "</ul>\n<p>Of the pairings that meet both limits with a {} margin, the one with \
                 the least heartbeat overhead{cost}.</p>",
                margin_text(r)
            );
            if let Some(toml) = config_toml(r) {
                let _ = writeln!(
                    o,
                    "<details><summary>The stack configuration measured \
                     (<code>--emit-config</code> writes it)</summary><pre>{}</pre></details>",
                    esc(&toml)
                );
            }
            o.push_str("</section>\n");
        }
        Verdict::Closest {
            pairing,
            limit,
            ratio,
        } => {
            let _ = writeln!(
                o,
                "<section class=\"verdict none\">\n<p class=\"label\">No pairing meets the \
                 limits</p>\n<p class=\"big\">Closest: <code>{}</code></p>\n<p>It {}.</p>\n\
                 </section>",
                esc(pairing),
                esc(&miss_text(limit, ratio))
            );
        }
        Verdict::Nothing => {
            o.push_str(
                "<section class=\"verdict none\">\n<p class=\"label\">No pairing meets the \
                 limits</p>\n<p>No pairing was measured.</p>\n</section>\n",
            );
        }
    }
}

/// The detectors in the order the report first names them.
fn detectors(r: &TuneReport) -> Vec<&str> {
    let mut seen: Vec<&str> = Vec::new();
    for row in &r.rows {
        if !seen.contains(&row.detector.as_str()) {
            seen.push(&row.detector);
        }
    }
    seen
}

fn recommended(r: &TuneReport, row: &TuneRow) -> bool {
    r.recommendation
        .as_ref()
        .is_some_and(|x| x.pairing == row.pairing)
}

const CHART_W: f64 = 980.0;
const CHART_H: f64 = 560.0;
const PLOT_LEFT: f64 = 100.0;
const PLOT_RIGHT: f64 = 748.0;
const PLOT_TOP: f64 = 40.0;
const PLOT_BOTTOM: f64 = 480.0;
/// The band for rates of zero, below the log scale.
const FLOOR_H: f64 = 34.0;
const FLOOR_GAP: f64 = 12.0;
/// The bands for pairings without a failure to detect, and with a missed detection.
const BAND_W: f64 = 58.0;
const BAND_GAP: f64 = 12.0;

/// Detection time p99 (s) to x: linear, with side bands for "no failures" and "missed".
struct XScale {
    lo: f64,
    hi: f64,
    max: f64,
    step: f64,
    no_failures: bool,
    missed: bool,
}

impl XScale {
    fn of(r: &TuneReport) -> XScale {
        let d = r.rows.iter().map(|x| x.detection_p99_s);
        let no_failures = d.clone().any(|x| x.is_none());
        let missed = d.clone().any(|x| x.is_some_and(f64::is_infinite));
        let largest = d
            .flatten()
            .filter(|x| x.is_finite())
            .chain([r.limits.max_detection.as_secs_f64()])
            .fold(0.0, f64::max);
        let (max, step) = nice_axis(largest * 1.04);
        XScale {
            lo: PLOT_LEFT + if no_failures { BAND_W + BAND_GAP } else { 0.0 },
            hi: PLOT_RIGHT - if missed { BAND_W + BAND_GAP } else { 0.0 },
            max,
            step,
            no_failures,
            missed,
        }
    }

    fn linear(&self, v: f64) -> f64 {
        self.lo + (v / self.max).clamp(0.0, 1.0) * (self.hi - self.lo)
    }

    fn px(&self, d: Option<f64>) -> f64 {
        match d {
            None => PLOT_LEFT + BAND_W / 2.0,
            Some(v) if v.is_infinite() => PLOT_RIGHT - BAND_W / 2.0,
            Some(v) => self.linear(v),
        }
    }
}

/// A round axis end at or above `v` and a tick step: 1, 2, 2.5 or 5 times a power of ten.
fn nice_axis(v: f64) -> (f64, f64) {
    if !(v > 0.0 && v.is_finite()) {
        return (1.0, 0.2);
    }
    let raw = v / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((v / step).ceil() * step, step)
}

/// False suspicions per connection-hour to y: log decades above a band for zero.
struct YScale {
    lo: i32,
    hi: i32,
}

impl YScale {
    /// Spans the rates, their upper bounds and the limit; lower bounds too, but at most two
    /// decades below the rest (a bar reaching further is cut at the bottom).
    fn of(r: &TuneReport) -> YScale {
        let positive = |v: &f64| *v > 0.0 && v.is_finite();
        let shown: Vec<f64> = r
            .rows
            .iter()
            .flat_map(|x| [x.false_rate, x.false_rate_upper])
            .flatten()
            .chain([r.limits.max_false_rate])
            .filter(positive)
            .collect();
        let min = shown.iter().copied().fold(f64::INFINITY, f64::min);
        let max = shown.iter().copied().fold(0.0, f64::max);
        if shown.is_empty() {
            return YScale { lo: -3, hi: 1 };
        }
        let lowest = r
            .rows
            .iter()
            .filter_map(|x| x.false_rate_lower)
            .filter(positive)
            .fold(min, f64::min)
            .max(min / 100.0);
        let lo = lowest.log10().floor() as i32;
        let hi = (max.log10().floor() as i32 + 1).max(lo + 1);
        YScale { lo, hi }
    }

    fn log_bottom() -> f64 {
        PLOT_BOTTOM - FLOOR_H - FLOOR_GAP
    }

    fn floor_centre() -> f64 {
        PLOT_BOTTOM - FLOOR_H / 2.0
    }

    fn px(&self, v: f64) -> f64 {
        if v <= 0.0 {
            return YScale::floor_centre();
        }
        let t = (f64::from(self.hi) - v.log10()) / f64::from(self.hi - self.lo);
        PLOT_TOP + t.clamp(0.0, 1.0) * (YScale::log_bottom() - PLOT_TOP)
    }
}

/// `0.01`, `1`, `100`; powers beyond that as `1e-5`.
fn decade_label(e: i32) -> String {
    if (-3..=4).contains(&e) {
        num(10f64.powi(e))
    } else {
        format!("1e{e}")
    }
}

fn chart_section(o: &mut String, r: &TuneReport) {
    o.push_str("<section>\n<h2>Trade-off: detection time against false suspicions</h2>\n");
    let (x, y) = (XScale::of(r), YScale::of(r));
    let _ = writeln!(
        o,
        "<figure>\n<svg class=\"chart\" viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" \
         aria-label=\"detection time p99 against false suspicions per connection-hour, by \
         detector\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let _ = writeln!(
        o,
        "<rect x=\"0\" y=\"0\" width=\"{CHART_W}\" height=\"{CHART_H}\" fill=\"#fff\"/>"
    );
    acceptable_region(o, r, &x, &y);
    x_axis(o, &x);
    y_axis(o, &y);
    let mut labels = Labels::default();
    limit_lines(o, r, &x, &y, &mut labels);
    frontier(o, r, &x, &y);
    for (i, d) in detectors(r).into_iter().enumerate() {
        series(o, r, d, i, &x, &y, &mut labels);
    }
    point_labels(o, r, &x, &y, &mut labels);
    chart_legend(o, r);
    o.push_str("</svg>\n");
    let unplaced = r.rows.iter().filter(|x| x.false_rate.is_none()).count();
    let mut notes = String::new();
    if unplaced > 0 {
        notes += &format!(" {unplaced} pairing(s) without exposure are not shown.");
    }
    if !r.rows.is_empty() && r.rows.iter().all(|x| x.detection_p99_s.is_none()) {
        notes += " No failure happened in this scenario, so detection time was not measured.";
    }
    let _ = writeln!(
        o,
        "<p class=\"note\">One point per pairing at its worse side's detection p99 and \
         false-suspicion rate; the bar spans the rate's {} interval, so a pairing meets the \
         rate limit when its whole bar is below the dashed line. Hover a point for its \
         numbers.{}</p>\n</figure>\n</section>",
        super::percent(r.limits.confidence),
        notes
    );
}

fn acceptable_region(o: &mut String, r: &TuneReport, x: &XScale, y: &YScale) {
    let right = x.linear(r.limits.max_detection.as_secs_f64());
    let top = y.px(r.limits.max_false_rate);
    let _ = writeln!(
        o,
        "<rect class=\"acceptable\" x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
         fill=\"#009E73\" fill-opacity=\"0.10\"/>",
        PLOT_LEFT,
        (right - PLOT_LEFT).max(0.0),
        PLOT_BOTTOM - top
    );
}

fn x_axis(o: &mut String, x: &XScale) {
    let ticks = (x.max / x.step).round() as u32;
    for i in 0..=ticks {
        let v = f64::from(i) * x.step;
        let px = x.linear(v);
        let _ = writeln!(
            o,
            "<line x1=\"{px:.1}\" y1=\"{PLOT_TOP}\" x2=\"{px:.1}\" y2=\"{PLOT_BOTTOM}\" \
             stroke=\"#e4e4e4\"/>\n<text x=\"{px:.1}\" y=\"{:.1}\" font-size=\"13\" \
             text-anchor=\"middle\">{}</text>",
            PLOT_BOTTOM + 18.0,
            num(v)
        );
    }
    if x.no_failures {
        band(o, PLOT_LEFT, "no failure", "to detect");
    }
    if x.missed {
        band(o, PLOT_RIGHT - BAND_W, "missed a", "failure");
    }
    let _ = writeln!(
        o,
        "<line x1=\"{PLOT_LEFT}\" y1=\"{PLOT_BOTTOM}\" x2=\"{PLOT_RIGHT}\" y2=\"{PLOT_BOTTOM}\" \
         stroke=\"#333\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"14\" \
         text-anchor=\"middle\">detection time p99, worse side (seconds)</text>",
        (x.lo + x.hi) / 2.0,
        PLOT_BOTTOM + 44.0
    );
}

/// A grey column of the x axis for points off the linear scale, labelled below.
fn band(o: &mut String, left: f64, line1: &str, line2: &str) {
    let mid = left + BAND_W / 2.0;
    let _ = writeln!(
        o,
        "<rect x=\"{left:.1}\" y=\"{PLOT_TOP}\" width=\"{BAND_W}\" height=\"{:.1}\" \
         fill=\"#f1f1f1\"/>\n<text x=\"{mid:.1}\" y=\"{:.1}\" font-size=\"11\" \
         text-anchor=\"middle\" fill=\"#555\">{line1}</text>\n<text x=\"{mid:.1}\" y=\"{:.1}\" \
         font-size=\"11\" text-anchor=\"middle\" fill=\"#555\">{line2}</text>",
        PLOT_BOTTOM - PLOT_TOP,
        PLOT_BOTTOM + 15.0,
        PLOT_BOTTOM + 28.0
    );
}

fn y_axis(o: &mut String, y: &YScale) {
    for e in y.lo..=y.hi {
        let v = 10f64.powi(e);
        let py = y.px(v);
        let _ = writeln!(
            o,
            "<line x1=\"{PLOT_LEFT}\" y1=\"{py:.1}\" x2=\"{PLOT_RIGHT}\" y2=\"{py:.1}\" \
             stroke=\"#dcdcdc\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" \
             text-anchor=\"end\">{}</text>",
            PLOT_LEFT - 8.0,
            py + 4.5,
            decade_label(e)
        );
        if e < y.hi {
            for m in 2..10 {
                let pm = y.px(v * f64::from(m));
                let _ = writeln!(
                    o,
                    "<line x1=\"{PLOT_LEFT}\" y1=\"{pm:.1}\" x2=\"{:.1}\" y2=\"{pm:.1}\" \
                     stroke=\"#888\"/>",
                    PLOT_LEFT + 4.0
                );
            }
        }
    }
    let floor_top = PLOT_BOTTOM - FLOOR_H;
    let fc = YScale::floor_centre();
    let _ = writeln!(
        o,
        "<rect x=\"{PLOT_LEFT}\" y=\"{floor_top:.1}\" width=\"{:.1}\" height=\"{FLOOR_H}\" \
         fill=\"#f1f1f1\" fill-opacity=\"0.8\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" \
         font-size=\"12\" text-anchor=\"end\">0 observed</text>\n<text x=\"{:.1}\" y=\"{:.1}\" \
         font-size=\"10.5\" text-anchor=\"end\" fill=\"#555\">(&lt; upper bound)</text>",
        PLOT_RIGHT - PLOT_LEFT,
        PLOT_LEFT - 8.0,
        fc - 1.0,
        PLOT_LEFT - 8.0,
        fc + 11.0
    );
    let _ = writeln!(
        o,
        "<line x1=\"{PLOT_LEFT}\" y1=\"{PLOT_TOP}\" x2=\"{PLOT_LEFT}\" y2=\"{:.1}\" \
         stroke=\"#333\"/>\n<line x1=\"{PLOT_LEFT}\" y1=\"{floor_top:.1}\" x2=\"{PLOT_LEFT}\" \
         y2=\"{PLOT_BOTTOM}\" stroke=\"#333\"/>\n<text transform=\"translate(18 {:.1}) \
         rotate(-90)\" font-size=\"14\" text-anchor=\"middle\">false suspicions per \
         connection-hour (log scale)</text>",
        YScale::log_bottom(),
        (PLOT_TOP + YScale::log_bottom()) / 2.0
    );
}

fn limit_lines(o: &mut String, r: &TuneReport, x: &XScale, y: &YScale, labels: &mut Labels) {
    let lx = x.linear(r.limits.max_detection.as_secs_f64());
    let ly = y.px(r.limits.max_false_rate);
    let dash = "stroke=\"#333\" stroke-width=\"1.5\" stroke-dasharray=\"7 5\"";
    let _ = writeln!(
        o,
        "<line class=\"limit\" x1=\"{lx:.1}\" y1=\"{PLOT_TOP}\" x2=\"{lx:.1}\" \
         y2=\"{PLOT_BOTTOM}\" {dash}/>\n<line class=\"limit\" x1=\"{PLOT_LEFT}\" \
         y1=\"{ly:.1}\" x2=\"{PLOT_RIGHT}\" y2=\"{ly:.1}\" {dash}/>"
    );
    let td = format!(
        "T_D limit {}",
        crate::scenario::units::show(r.limits.max_detection)
    );
    let half = td.chars().count() as f64 * 3.4;
    let (tx, anchor) = if lx - half < PLOT_LEFT {
        (lx + 4.0, "start")
    } else if lx + half > PLOT_RIGHT {
        (lx - 4.0, "end")
    } else {
        (lx, "middle")
    };
    let _ = writeln!(
        o,
        "<text x=\"{tx:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"{anchor}\">{}</text>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\" {HALO}>\
         λ_M limit {}/h</text>",
        PLOT_TOP - 10.0,
        esc(&td),
        PLOT_RIGHT - 4.0,
        ly - 5.0,
        num(r.limits.max_false_rate)
    );
    let width = 12.0 * 6.6 + num(r.limits.max_false_rate).len() as f64 * 6.6;
    labels
        .taken
        .push([PLOT_RIGHT - 4.0 - width, ly - 17.0, PLOT_RIGHT, ly + 3.0]);
}

/// The Pareto frontier as a staircase through its points of measured detection time: what
/// no pairing of the grid improves on in both directions.
fn frontier(o: &mut String, r: &TuneReport, x: &XScale, y: &YScale) {
    let mut points: Vec<(f64, f64)> = r
        .rows
        .iter()
        .filter(|row| row.pareto)
        .filter_map(|row| Some((row.detection_p99_s?, row.false_rate?)))
        .filter(|(d, _)| d.is_finite())
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    if points.len() < 2 {
        return;
    }
    let mut d = String::new();
    for (i, (td, rate)) in points.iter().enumerate() {
        let (px, py) = (x.linear(*td), y.px(*rate));
        let _ = if i == 0 {
            write!(d, "M{px:.1} {py:.1}")
        } else {
            write!(d, "H{px:.1}V{py:.1}")
        };
    }
    let _ = writeln!(
        o,
        "<path class=\"frontier\" d=\"{d}\" fill=\"none\" stroke=\"#444\" stroke-width=\"1.3\" \
         stroke-opacity=\"0.55\" stroke-linejoin=\"round\"/>"
    );
}

/// White outline behind text drawn over data.
const HALO: &str =
    "stroke=\"#fff\" stroke-width=\"3.5\" stroke-linejoin=\"round\" paint-order=\"stroke\"";

/// One detector's points: error bars, then markers, the Pareto frontier drawn last.
fn series(
    o: &mut String,
    r: &TuneReport,
    detector: &str,
    i: usize,
    x: &XScale,
    y: &YScale,
    labels: &mut Labels,
) {
    let colour = PALETTE[i % PALETTE.len()];
    let _ = writeln!(
        o,
        "<g class=\"series\" data-detector=\"{}\">",
        esc(detector)
    );
    let mut rows: Vec<&TuneRow> = r
        .rows
        .iter()
        .filter(|row| row.detector == detector && row.false_rate.is_some())
        .collect();
    rows.sort_by_key(|row| row.pareto);
    let offset = nudge(i, detectors(r).len());
    for row in rows {
        let px = x.px(row.detection_p99_s) + offset;
        let py = y.px(row.false_rate.unwrap_or(0.0));
        let _ = writeln!(
            o,
            "<g class=\"point{}\"><title>{}</title>",
            if row.pareto { " pareto" } else { "" },
            esc(&tooltip(r, row))
        );
        error_bar(o, row, px, y, colour);
        let size = if row.pareto { 6.5 } else { 5.0 };
        o.push_str(&marker(i, px, py, size, &point_style(colour, row.pareto)));
        o.push_str("</g>\n");
        labels.block(px, py, size + 2.0);
    }
    o.push_str("</g>\n");
}

/// Series `i` of `n` is drawn a few pixels aside, so that pairings of different detectors
/// with the same numbers stay visible side by side.
fn nudge(i: usize, n: usize) -> f64 {
    (i as f64 - (n as f64 - 1.0) / 2.0) * 3.0
}

fn point_style(colour: &str, pareto: bool) -> String {
    if pareto {
        format!("fill=\"{colour}\" stroke=\"#111\" stroke-width=\"1.6\"")
    } else {
        format!("fill=\"{colour}\" fill-opacity=\"0.3\" stroke=\"{colour}\" stroke-width=\"1.2\"")
    }
}

fn error_bar(o: &mut String, row: &TuneRow, px: f64, y: &YScale, colour: &str) {
    let (Some(lo), Some(hi)) = (row.false_rate_lower, row.false_rate_upper) else {
        return;
    };
    let (y1, y2) = (y.px(lo), y.px(hi));
    let opacity = if row.pareto { 0.9 } else { 0.45 };
    let _ = write!(
        o,
        "<path d=\"M{px:.1} {y1:.1}V{y2:.1}M{:.1} {y2:.1}h8\" stroke=\"{colour}\" \
         stroke-opacity=\"{opacity}\" stroke-width=\"1.5\" fill=\"none\"/>",
        px - 4.0
    );
}

fn tooltip(r: &TuneReport, row: &TuneRow) -> String {
    let mut t = format!(
        "{}: detection p99 {} s, {} false suspicions per connection-hour [{}], {} B/s",
        row.pairing,
        opt(row.detection_p99_s),
        opt(row.false_rate),
        super::rate_with_interval(row),
        opt(row.overhead_bytes_per_s),
    );
    if row.pareto {
        t.push_str("; Pareto frontier");
    }
    if row.meets_limits {
        t.push_str("; meets both limits");
    }
    if recommended(r, row) {
        t.push_str("; recommended");
    }
    t
}

/// Marker `shape` (a circle, square, triangle, diamond, inverted triangle or cross) of size
/// `s` centred on (`x`, `y`).
fn marker(shape: usize, x: f64, y: f64, s: f64, style: &str) -> String {
    let path = |points: &[(f64, f64)]| {
        let mut d = String::new();
        for (k, (dx, dy)) in points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1} {:.1}",
                if k == 0 { 'M' } else { 'L' },
                x + dx * s,
                y + dy * s
            );
        }
        format!("<path d=\"{d}Z\" {style}/>")
    };
    match shape % SHAPES {
        0 => format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{s:.1}\" {style}/>"),
        1 => path(&[(-0.9, -0.9), (0.9, -0.9), (0.9, 0.9), (-0.9, 0.9)]),
        2 => path(&[(0.0, -1.25), (1.1, 0.8), (-1.1, 0.8)]),
        3 => path(&[(0.0, -1.25), (1.25, 0.0), (0.0, 1.25), (-1.25, 0.0)]),
        4 => path(&[(0.0, 1.25), (1.1, -0.8), (-1.1, -0.8)]),
        _ => {
            let (a, b) = (0.4, 1.15);
            path(&[
                (-a, -b),
                (a, -b),
                (a, -a),
                (b, -a),
                (b, a),
                (a, a),
                (a, b),
                (-a, b),
                (-a, a),
                (-b, a),
                (-b, -a),
                (-a, -a),
            ])
        }
    }
}

/// Boxes already drawn on the chart, so that labels go where nothing is.
#[derive(Default)]
struct Labels {
    taken: Vec<[f64; 4]>,
}

impl Labels {
    fn block(&mut self, x: f64, y: f64, half: f64) {
        self.taken.push([x - half, y - half, x + half, y + half]);
    }

    fn free(&self, b: [f64; 4]) -> bool {
        let inside = b[0] >= PLOT_LEFT
            && b[2] <= PLOT_RIGHT
            && b[1] >= PLOT_TOP - 2.0
            && b[3] <= PLOT_BOTTOM;
        inside
            && self
                .taken
                .iter()
                .all(|t| b[2] <= t[0] || b[0] >= t[2] || b[3] <= t[1] || b[1] >= t[3])
    }

    /// Where a label of `width` × `height` next to the point (`x`, `y`) fits: its text anchor
    /// point and `start` or `end`; `None` when every place is taken.
    fn place(&mut self, x: f64, y: f64, width: f64, height: f64) -> Option<(f64, f64, &str)> {
        let mut tries = [9.0, 20.0, 36.0].into_iter().flat_map(|gap| {
            [
                (x + gap, y - gap, "start"),
                (x - gap, y - gap, "end"),
                (x + gap, y + gap + height, "start"),
                (x - gap, y + gap + height, "end"),
                (x + gap, y + height / 2.0 - 1.0, "start"),
                (x - gap, y + height / 2.0 - 1.0, "end"),
            ]
        });
        let found = tries.find(|(tx, ty, anchor)| {
            let left = if *anchor == "start" { *tx } else { tx - width };
            self.free([left, ty - height, left + width, ty + 3.0])
        })?;
        let left = if found.2 == "start" {
            found.0
        } else {
            found.0 - width
        };
        self.taken
            .push([left, found.1 - height, left + width, found.1 + 3.0]);
        Some(found)
    }
}

/// Labels: the recommended point first (with a ring), then the Pareto points where they fit.
fn point_labels(o: &mut String, r: &TuneReport, x: &XScale, y: &YScale, labels: &mut Labels) {
    let n = detectors(r).len();
    let index = |d: &str| detectors(r).iter().position(|x| *x == d).unwrap_or(0);
    let at = |row: &TuneRow| {
        let offset = nudge(index(&row.detector), n);
        (
            x.px(row.detection_p99_s) + offset,
            y.px(row.false_rate.unwrap_or(0.0)),
        )
    };
    let placed = r.rows.iter().filter(|row| row.false_rate.is_some());
    let closest = r.closest.as_ref().map(|c| c.pairing.as_str());
    let named = placed.clone().find_map(|row| {
        if recommended(r, row) {
            Some((
                row,
                "recommended",
                format!("★ {} (recommended)", row.pairing),
                "",
            ))
        } else if closest == Some(row.pairing.as_str()) {
            let dash = " stroke-dasharray=\"4 3\"";
            Some((row, "closest", format!("closest: {}", row.pairing), dash))
        } else {
            None
        }
    });
    if let Some((row, class, text, dash)) = &named {
        let (px, py) = at(row);
        let _ = writeln!(
            o,
            "<g class=\"{class}\"><circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"12\" \
             fill=\"none\" stroke=\"#111\" stroke-width=\"2\"{dash}/>"
        );
        labels.block(px, py, 13.0);
        let width = text.chars().count() as f64 * 7.6;
        let (tx, ty, anchor) =
            labels
                .place(px, py, width, 13.0)
                .unwrap_or((px + 14.0, py - 14.0, "start"));
        let _ = writeln!(
            o,
            "<text x=\"{tx:.1}\" y=\"{ty:.1}\" font-size=\"14\" font-weight=\"700\" \
             text-anchor=\"{anchor}\" {HALO}>{}</text></g>",
            esc(text)
        );
    }
    let named = named.map(|(row, ..)| row.pairing.as_str());
    for row in placed.filter(|row| row.pareto && named != Some(row.pairing.as_str())) {
        let (px, py) = at(row);
        let colour = PALETTE[index(&row.detector) % PALETTE.len()];
        let text = format!("{}/{}", interval(row.interval_ms), row.miss_threshold);
        let width = text.chars().count() as f64 * 7.0;
        if let Some((tx, ty, anchor)) = labels.place(px, py, width, 11.0) {
            let _ = writeln!(
                o,
                "<text class=\"label\" x=\"{tx:.1}\" y=\"{ty:.1}\" font-size=\"12\" \
                 font-weight=\"600\" fill=\"{colour}\" text-anchor=\"{anchor}\" {HALO}>{}</text>",
                esc(&text)
            );
        }
    }
}

fn chart_legend(o: &mut String, r: &TuneReport) {
    let left = PLOT_RIGHT + 26.0;
    let mut y = PLOT_TOP + 8.0;
    let _ = writeln!(
        o,
        "<g class=\"legend\"><text x=\"{left:.1}\" y=\"{y:.1}\" font-size=\"13\" \
         font-weight=\"700\">Detector</text>"
    );
    for (i, d) in detectors(r).into_iter().enumerate() {
        y += 24.0;
        let colour = PALETTE[i % PALETTE.len()];
        let count = r.rows.iter().filter(|x| x.detector == d).count();
        o.push_str(&marker(
            i,
            left + 8.0,
            y - 4.0,
            6.5,
            &point_style(colour, true),
        ));
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{y:.1}\" font-size=\"13\">{} ({count})</text>",
            left + 22.0,
            esc(d)
        );
    }
    y += 36.0;
    let _ = writeln!(
        o,
        "<text x=\"{left:.1}\" y=\"{y:.1}\" font-size=\"13\" font-weight=\"700\">Reading it\
         </text>"
    );
    legend_key(o, left, &mut y, LegendKey::Pareto, "Pareto frontier");
    legend_key(o, left, &mut y, LegendKey::Frontier, "frontier line");
    legend_key(o, left, &mut y, LegendKey::Dominated, "dominated");
    legend_key(o, left, &mut y, LegendKey::Bar, "λ_M interval");
    legend_key(o, left, &mut y, LegendKey::Region, "meets both limits");
    legend_key(o, left, &mut y, LegendKey::Limit, "limit");
    if r.recommendation.is_some() {
        legend_key(o, left, &mut y, LegendKey::Ring, "recommended");
    } else if r.closest.is_some() {
        legend_key(o, left, &mut y, LegendKey::DashedRing, "closest");
    }
    o.push_str("</g>\n");
}

#[derive(Clone, Copy)]
enum LegendKey {
    Pareto,
    Frontier,
    Dominated,
    Bar,
    Region,
    Limit,
    Ring,
    DashedRing,
}

fn legend_key(o: &mut String, left: f64, y: &mut f64, key: LegendKey, text: &str) {
    *y += 24.0;
    let (cx, cy) = (left + 8.0, *y - 4.0);
    let grey = "#777";
    let glyph = match key {
        LegendKey::Pareto => marker(0, cx, cy, 6.5, &point_style(grey, true)),
        LegendKey::Frontier => format!(
            "<path d=\"M{:.1} {:.1}H{cx:.1}V{:.1}H{:.1}\" fill=\"none\" stroke=\"#444\" \
             stroke-width=\"1.3\" stroke-opacity=\"0.55\"/>",
            cx - 9.0,
            cy - 6.0,
            cy + 6.0,
            cx + 11.0
        ),
        LegendKey::Dominated => marker(0, cx, cy, 5.0, &point_style(grey, false)),
        LegendKey::Bar => format!(
            "<path d=\"M{cx:.1} {:.1}V{:.1}M{:.1} {:.1}h8\" stroke=\"{grey}\" \
             stroke-width=\"1.5\"/>",
            cy + 8.0,
            cy - 9.0,
            cx - 4.0,
            cy - 9.0
        ),
        LegendKey::Region => format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"16\" height=\"14\" fill=\"#009E73\" \
             fill-opacity=\"0.18\"/>",
            cx - 8.0,
            cy - 7.0
        ),
        LegendKey::Limit => format!(
            "<line x1=\"{:.1}\" y1=\"{cy:.1}\" x2=\"{:.1}\" y2=\"{cy:.1}\" stroke=\"#333\" \
             stroke-width=\"1.5\" stroke-dasharray=\"7 5\"/>",
            cx - 9.0,
            cx + 11.0
        ),
        LegendKey::Ring => format!(
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"8\" fill=\"none\" stroke=\"#111\" \
             stroke-width=\"2\"/>"
        ),
        LegendKey::DashedRing => format!(
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"8\" fill=\"none\" stroke=\"#111\" \
             stroke-width=\"2\" stroke-dasharray=\"4 3\"/>"
        ),
    };
    let _ = writeln!(
        o,
        "{glyph}<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\">{text}</text>",
        left + 22.0,
        *y
    );
}

const CELL_W: f64 = 88.0;
const CELL_H: f64 = 46.0;
const ROW_LABEL_W: f64 = 76.0;
const HEAD_H: f64 = 46.0;
const HEAT_LEGEND_H: f64 = 74.0;

/// Viridis at nine stops, dark (0) to light (1).
const VIRIDIS: [(u8, u8, u8); 9] = [
    (0x44, 0x01, 0x54),
    (0x48, 0x28, 0x78),
    (0x3e, 0x49, 0x89),
    (0x31, 0x68, 0x8e),
    (0x26, 0x82, 0x8e),
    (0x1f, 0x9e, 0x89),
    (0x35, 0xb7, 0x79),
    (0x6e, 0xce, 0x58),
    (0xfd, 0xe7, 0x25),
];

/// Colour of `t` in [0, 1]: 0 (low, good) light, 1 (high) dark.
fn heat(t: f64) -> (u8, u8, u8) {
    let v = (1.0 - t.clamp(0.0, 1.0)) * (VIRIDIS.len() - 1) as f64;
    let i = (v.floor() as usize).min(VIRIDIS.len() - 2);
    let f = v - i as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn hex((r, g, b): (u8, u8, u8)) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// Dark text on a light background, white on a dark one.
fn ink_on((r, g, b): (u8, u8, u8)) -> &'static str {
    let l = 0.2126 * f64::from(r) + 0.7152 * f64::from(g) + 0.0722 * f64::from(b);
    if l > 140.0 { "#111" } else { "#fff" }
}

/// What a heatmap shows, and the scale shared by every detector's map of it.
#[derive(Clone, Copy)]
enum Measure {
    /// Log scale over the positive rates, decades `lo..=hi`; zero has its own colour.
    FalseRate { lo: f64, hi: f64 },
    /// Linear over the finite detection p99s.
    Detection { min: f64, max: f64 },
}

const ZERO_FILL: (u8, u8, u8) = (0xff, 0xff, 0xff);
const MISSED_FILL: (u8, u8, u8) = (0x2b, 0x2b, 0x2b);
const NONE_FILL: (u8, u8, u8) = (0xee, 0xee, 0xee);

impl Measure {
    fn false_rate(r: &TuneReport) -> Measure {
        let positive: Vec<f64> = r
            .rows
            .iter()
            .filter_map(|x| x.false_rate)
            .filter(|v| *v > 0.0 && v.is_finite())
            .collect();
        let lo = positive.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = positive.iter().copied().fold(0.0, f64::max);
        if positive.is_empty() {
            return Measure::FalseRate { lo: -1.0, hi: 0.0 };
        }
        Measure::FalseRate {
            lo: lo.log10().floor(),
            hi: hi.log10().ceil().max(lo.log10().floor() + 1.0),
        }
    }

    fn detection(r: &TuneReport) -> Measure {
        let finite: Vec<f64> = r
            .rows
            .iter()
            .filter_map(|x| x.detection_p99_s)
            .filter(|v| v.is_finite())
            .collect();
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(0.0, f64::max);
        if finite.is_empty() {
            return Measure::Detection { min: 0.0, max: 1.0 };
        }
        Measure::Detection { min, max }
    }

    fn title(self) -> &'static str {
        match self {
            Measure::FalseRate { .. } => "false suspicions per connection-hour",
            Measure::Detection { .. } => "detection time p99 (s)",
        }
    }

    /// Position on the scale of a value of the measure.
    fn t(self, v: f64) -> f64 {
        match self {
            Measure::FalseRate { lo, hi } => (v.log10() - lo) / (hi - lo),
            Measure::Detection { min, max } if max > min => (v - min) / (max - min),
            Measure::Detection { .. } => 0.0,
        }
    }

    /// A cell's fill and its two lines of text.
    fn cell(self, row: &TuneRow) -> ((u8, u8, u8), String, String) {
        match self {
            Measure::FalseRate { .. } => match row.false_rate {
                None => (NONE_FILL, NONE.into(), String::new()),
                Some(v) => {
                    let fill = if v > 0.0 { heat(self.t(v)) } else { ZERO_FILL };
                    let upper = row
                        .false_rate_upper
                        .map_or_else(String::new, |u| format!("≤ {}", num(u)));
                    (fill, num(v), upper)
                }
            },
            Measure::Detection { .. } => {
                let missed = super::missed(row);
                let note = if missed > 0 {
                    format!("{missed} missed")
                } else {
                    String::new()
                };
                match row.detection_p99_s {
                    None => (NONE_FILL, NONE.into(), "no failures".into()),
                    Some(v) if v.is_infinite() => (MISSED_FILL, "∞".into(), note),
                    Some(v) => (heat(self.t(v)), num(v), note),
                }
            }
        }
    }
}

fn heatmap_section(o: &mut String, r: &TuneReport) {
    o.push_str(
        "<section>\n<h2>By interval and threshold</h2>\n<p class=\"note\">Each cell is one \
         pairing: heartbeat interval η across, miss threshold k down. Lighter is better on both \
         scales; a thick outline marks the pairings that meet both limits, ★ the \
         recommended one.</p>\n<div class=\"heatmaps\">\n",
    );
    let measures = [Measure::false_rate(r), Measure::detection(r)];
    for (i, d) in detectors(r).into_iter().enumerate() {
        for (j, m) in measures.into_iter().enumerate() {
            heatmap(o, r, d, m, i * 2 + j);
        }
    }
    o.push_str("</div>\n</section>\n");
}

fn heatmap(o: &mut String, r: &TuneReport, detector: &str, m: Measure, id: usize) {
    let rows: Vec<&TuneRow> = r.rows.iter().filter(|x| x.detector == detector).collect();
    let intervals: Vec<u64> = rows
        .iter()
        .map(|x| x.interval_ms)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let thresholds: Vec<u8> = rows
        .iter()
        .map(|x| x.miss_threshold)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let grid_w = intervals.len() as f64 * CELL_W;
    let grid_h = thresholds.len() as f64 * CELL_H;
    let width = (ROW_LABEL_W + grid_w + 16.0).max(360.0);
    let height = HEAD_H + grid_h + HEAT_LEGEND_H;
    let _ = writeln!(
        o,
        "<figure class=\"heatmap\">\n<figcaption>{} · {}</figcaption>\n<svg viewBox=\"0 0 \
         {width:.0} {height:.0}\" style=\"max-width:{width:.0}px\" role=\"img\" \
         aria-label=\"{} for {}\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(detector),
        m.title(),
        m.title(),
        esc(detector)
    );
    heat_axes(o, &intervals, &thresholds);
    for (ti, k) in thresholds.iter().enumerate() {
        for (ii, ms) in intervals.iter().enumerate() {
            let x = ROW_LABEL_W + ii as f64 * CELL_W;
            let y = HEAD_H + ti as f64 * CELL_H;
            let row = rows
                .iter()
                .find(|row| row.interval_ms == *ms && row.miss_threshold == *k);
            heat_cell(o, r, m, row.copied(), x, y);
        }
    }
    heat_legend(o, m, HEAD_H + grid_h + 16.0, id);
    o.push_str("</svg>\n</figure>\n");
}

fn heat_axes(o: &mut String, intervals: &[u64], thresholds: &[u8]) {
    let _ = writeln!(
        o,
        "<text x=\"{:.1}\" y=\"14\" font-size=\"12\" fill=\"#555\">interval η →</text>",
        ROW_LABEL_W
    );
    for (i, ms) in intervals.iter().enumerate() {
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" font-weight=\"600\" \
             text-anchor=\"middle\">{}</text>",
            ROW_LABEL_W + (i as f64 + 0.5) * CELL_W,
            HEAD_H - 10.0,
            interval(*ms)
        );
    }
    for (i, k) in thresholds.iter().enumerate() {
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" font-weight=\"600\" \
             text-anchor=\"end\">k = {k}</text>",
            ROW_LABEL_W - 10.0,
            HEAD_H + (i as f64 + 0.5) * CELL_H + 4.5
        );
    }
}

fn heat_cell(o: &mut String, r: &TuneReport, m: Measure, row: Option<&TuneRow>, x: f64, y: f64) {
    let Some(row) = row else {
        let _ = writeln!(
            o,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{CELL_W}\" height=\"{CELL_H}\" \
             fill=\"#fafafa\" stroke=\"#fff\" stroke-width=\"2\"/><text x=\"{:.1}\" \
             y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\" fill=\"#999\">not run</text>",
            x + CELL_W / 2.0,
            y + CELL_H / 2.0 + 4.0
        );
        return;
    };
    let (fill, main, mut sub) = m.cell(row);
    if recommended(r, row) {
        sub = format!("★ {sub}").trim_end().to_string();
    }
    let ink = ink_on(fill);
    let _ = writeln!(
        o,
        "<g class=\"cell{}\"><title>{}</title><rect x=\"{x:.1}\" y=\"{y:.1}\" \
         width=\"{CELL_W}\" height=\"{CELL_H}\" fill=\"{}\" stroke=\"#fff\" \
         stroke-width=\"2\"/>",
        if row.meets_limits { " meets" } else { "" },
        esc(&tooltip(r, row)),
        hex(fill)
    );
    if fill == ZERO_FILL {
        let _ = write!(
            o,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" \
             stroke=\"#ccc\"/>",
            x + 1.5,
            y + 1.5,
            CELL_W - 3.0,
            CELL_H - 3.0
        );
    }
    if row.meets_limits {
        let _ = write!(
            o,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" \
             stroke=\"#111\" stroke-width=\"3.5\"/><rect x=\"{:.1}\" y=\"{:.1}\" \
             width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#fff\" \
             stroke-width=\"1.2\"/>",
            x + 2.75,
            y + 2.75,
            CELL_W - 5.5,
            CELL_H - 5.5,
            x + 5.2,
            y + 5.2,
            CELL_W - 10.4,
            CELL_H - 10.4
        );
    }
    let main_y = if sub.is_empty() { y + 28.0 } else { y + 22.0 };
    let _ = write!(
        o,
        "<text x=\"{:.1}\" y=\"{main_y:.1}\" font-size=\"14\" font-weight=\"600\" \
         text-anchor=\"middle\" fill=\"{ink}\">{}</text>",
        x + CELL_W / 2.0,
        esc(&main)
    );
    if !sub.is_empty() {
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" \
             fill=\"{ink}\">{}</text>",
            x + CELL_W / 2.0,
            y + 37.0,
            esc(&sub)
        );
    }
    o.push_str("</g>\n");
}

/// The colour scale under a heatmap: a gradient bar with its ends and special colours.
fn heat_legend(o: &mut String, m: Measure, top: f64, id: usize) {
    let (left, width) = (ROW_LABEL_W, 200.0);
    let grad = format!("heat-{id}");
    let _ = write!(
        o,
        "<defs><linearGradient id=\"{grad}\" x1=\"0\" x2=\"1\" y1=\"0\" y2=\"0\">"
    );
    for s in 0..=8 {
        let t = f64::from(s) / 8.0;
        let _ = write!(
            o,
            "<stop offset=\"{t:.3}\" stop-color=\"{}\"/>",
            hex(heat(t))
        );
    }
    let _ = writeln!(
        o,
        "</linearGradient></defs>\n<rect x=\"{left:.1}\" y=\"{top:.1}\" width=\"{width}\" \
         height=\"12\" fill=\"url(#{grad})\"/>"
    );
    if let Measure::FalseRate { lo, hi } = m {
        for e in (lo as i32)..=(hi as i32) {
            let tx = left + (f64::from(e) - lo) / (hi - lo) * width;
            let _ = write!(
                o,
                "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#555\"/>",
                top + 12.0,
                top + 16.0
            );
        }
    }
    let (lo, hi) = match m {
        Measure::FalseRate { lo, hi } => (
            decade_label(lo as i32) + "/h",
            decade_label(hi as i32) + "/h",
        ),
        Measure::Detection { min, max } => (num(min) + " s", num(max) + " s"),
    };
    let label_y = top + 27.0;
    let _ = writeln!(
        o,
        "<text x=\"{left:.1}\" y=\"{label_y:.1}\" font-size=\"11\">{}</text><text \
         x=\"{:.1}\" y=\"{label_y:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
        esc(&lo),
        left + width,
        esc(&hi)
    );
    let (swatch, what) = match m {
        Measure::FalseRate { .. } => (ZERO_FILL, "none observed"),
        Measure::Detection { .. } => (MISSED_FILL, "∞: a failure missed"),
    };
    let sx = left + width + 14.0;
    let _ = writeln!(
        o,
        "<rect x=\"{sx:.1}\" y=\"{top:.1}\" width=\"12\" height=\"12\" fill=\"{}\" \
         stroke=\"#bbb\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
        hex(swatch),
        sx + 16.0,
        top + 10.5,
        esc(what)
    );
    let scale = match m {
        Measure::FalseRate { .. } => "log scale; second line: upper bound",
        Measure::Detection { .. } => "linear scale",
    };
    let _ = writeln!(
        o,
        "<text x=\"{left:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#555\">{scale}</text>",
        label_y + 16.0
    );
}

fn table_section(o: &mut String, r: &TuneReport) {
    o.push_str("<section>\n<h2>All pairings</h2>\n<div class=\"table-wrap\">\n<table>\n");
    pairing_table(o, &table(r));
    let _ = writeln!(
        o,
        "</table>\n</div>\n<p class=\"note\">{}</p>\n</section>",
        esc(&table_legend(r))
    );
}

fn pairing_table(o: &mut String, t: &Table) {
    let class = |i: usize| {
        if t.text_columns.contains(&i) {
            " class=\"t\""
        } else {
            ""
        }
    };
    o.push_str("<thead><tr>");
    for (i, h) in t.header.iter().enumerate() {
        let h = esc(h)
            .replacen(" (", "<br>(", 1)
            .replacen(" [", "<br>[", 1)
            .replace("T_D ", "T_D&nbsp;")
            .replace("T_M ", "T_M&nbsp;");
        let _ = write!(o, "<th{}>{h}</th>", class(i));
    }
    o.push_str("</tr></thead>\n<tbody>\n");
    for (marks, cells) in &t.rows {
        let _ = write!(o, "<tr{}>", row_class(*marks));
        for (i, c) in cells.iter().enumerate() {
            let cell = match i {
                0 => format!("<td class=\"t mark\">{}</td>", esc(c)),
                1 => format!("<td class=\"t\"><code>{}</code></td>", esc(c)),
                _ if i == cells.len() - 1 && !marks.meets_limits => {
                    format!("<td class=\"t no\">{}</td>", esc(c))
                }
                _ => format!("<td{}>{}</td>", class(i), esc(c)),
            };
            o.push_str(&cell);
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody>\n");
}

fn row_class(m: Marks) -> &'static str {
    match (m.recommended, m.pareto) {
        (true, true) => " class=\"rec pareto\"",
        (true, false) => " class=\"rec\"",
        (false, true) => " class=\"pareto\"",
        (false, false) => "",
    }
}

fn reproduce(o: &mut String, r: &TuneReport) {
    let _ = writeln!(
        o,
        "<section>\n<h2>Reproduce</h2>\n<pre><code>{}</code></pre>\n</section>",
        esc(&r.command)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(
            esc("<script>\"a\" & 'b'"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;"
        );
    }

    #[test]
    fn an_axis_ends_on_a_round_number_with_a_round_step() {
        assert_eq!(nice_axis(5.2), (6.0, 1.0));
        assert_eq!(nice_axis(0.93), (1.0, 0.2));
        assert_eq!(nice_axis(0.0), (1.0, 0.2));
    }

    #[test]
    fn the_heat_scale_runs_from_light_to_dark() {
        assert_eq!(hex(heat(0.0)), "#fde725");
        assert_eq!(hex(heat(1.0)), "#440154");
        assert_eq!(ink_on(heat(0.0)), "#111");
        assert_eq!(ink_on(heat(1.0)), "#fff");
    }
}
