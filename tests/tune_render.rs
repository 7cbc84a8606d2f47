//! A tune report rendered as CSV, Markdown and HTML says what the sweep found, in a form a
//! spreadsheet, a reviewer and a browser can each read.

use std::time::Duration;

use mcpsim::sim::metrics::{ReconnectTally, RunSummary, SideTally};
use mcpsim::tune::render::{csv, html, markdown};
use mcpsim::tune::{
    Budget, Limits, PairingInfo, StopReason, TuneMeta, TuneReport, build_report, tune,
};

/// What one pairing did, per side, over all its seeds.
#[derive(Clone)]
struct Measured {
    detector: &'static str,
    interval_ms: u64,
    k: u8,
    /// Detection times, seconds.
    detections: Vec<f64>,
    missed: u64,
    false_suspicions: u64,
    /// Connection-hours during which a false suspicion was possible.
    exposure_hours: f64,
    bytes_per_s: f64,
}

impl Measured {
    fn new(detector: &'static str, interval_ms: u64, k: u8) -> Measured {
        Measured {
            detector,
            interval_ms,
            k,
            detections: vec![1.0, 1.5, 2.0],
            missed: 0,
            false_suspicions: 0,
            exposure_hours: 100.0,
            bytes_per_s: 30_000.0 / interval_ms as f64,
        }
    }

    fn detections(mut self, d: &[f64]) -> Measured {
        self.detections = d.to_vec();
        self
    }

    fn missed(mut self, n: u64) -> Measured {
        self.missed = n;
        self
    }

    fn false_suspicions(mut self, n: u64) -> Measured {
        self.false_suspicions = n;
        self
    }

    fn name(&self, with_detector: bool) -> String {
        let eta = if self.interval_ms.is_multiple_of(1000) {
            format!("{}s", self.interval_ms / 1000)
        } else {
            format!("{}ms", self.interval_ms)
        };
        if with_detector {
            format!("{}:{eta}/{}", self.detector, self.k)
        } else {
            format!("{eta}/{}", self.k)
        }
    }

    fn side(&self) -> SideTally {
        let us = |s: f64| (s * 1e6).round() as u64;
        let exposure_us = us(self.exposure_hours * 3600.0);
        SideTally {
            pairs: 20,
            failures: self.detections.len() as u64 + self.missed,
            missed: self.missed,
            detections_us: self.detections.iter().copied().map(us).collect(),
            false_suspicions: self.false_suspicions,
            mistake_durations_us: vec![us(0.8); self.false_suspicions as usize],
            exposure_us,
            suspected_us: us(0.8) * self.false_suspicions,
            bytes_out: (self.bytes_per_s * self.exposure_hours * 3600.0) as u64,
            heartbeats_sent: (self.exposure_hours * 3600.0 * 1000.0 / self.interval_ms as f64)
                as u64,
            connected_us: exposure_us,
            ..SideTally::default()
        }
    }

    fn summary(&self) -> RunSummary {
        RunSummary {
            runs: 8,
            client: self.side(),
            server: self.side(),
            reconnects: ReconnectTally {
                clients: 160,
                client_time_us: 100 * 3_600_000_000,
                attempts: 170,
                reconnects: 10,
                ..ReconnectTally::default()
            },
            delivery: None,
            queue_drops: 0,
        }
    }
}

fn limits() -> Limits {
    Limits {
        max_detection: Duration::from_secs(3),
        max_false_rate: 0.1,
        confidence: 0.95,
        margin: 0.2,
    }
}

fn budget() -> Budget {
    Budget {
        precision: 0.1,
        seeds_per_round: 4,
        max_seeds: 64,
        wall: Some(Duration::from_secs(600)),
    }
}

/// The report `tune` would build from these measurements.
fn report(scenario: &str, description: Option<&str>, measured: &[Measured]) -> TuneReport {
    report_within(limits(), scenario, description, measured)
}

fn report_within(
    limits: Limits,
    scenario: &str,
    description: Option<&str>,
    measured: &[Measured],
) -> TuneReport {
    let many = measured.iter().any(|m| m.detector != measured[0].detector);
    let meta = TuneMeta {
        scenario: scenario.to_string(),
        description: description.map(String::from),
        sessions: 20,
        duration_s: 1800.0,
        pairings: measured
            .iter()
            .map(|m| PairingInfo {
                pairing: m.name(many),
                detector: m.detector.to_string(),
                interval_ms: m.interval_ms,
                miss_threshold: m.k,
            })
            .collect(),
        stack: Default::default(),
        engine: Default::default(),
    };
    build_report(
        &meta,
        limits,
        budget(),
        StopReason::SeedBudget,
        measured.iter().map(Measured::summary).collect(),
        vec![8; measured.len()],
        12.5,
        format!("mcpsim tune scenarios/{scenario}.toml --max-detection 3s"),
    )
}

/// Three k-miss pairings: 250ms/2 too noisy, 1s/2 good and cheap, 2s/3 too slow.
fn three_pairings() -> Vec<Measured> {
    vec![
        Measured::new("k-miss", 250, 2)
            .detections(&[0.3, 0.45, 0.5])
            .false_suspicions(40),
        Measured::new("k-miss", 1000, 2).detections(&[1.2, 1.8, 2.0]),
        Measured::new("k-miss", 2000, 3).detections(&[4.5, 5.0, 6.0]),
    ]
}

/// Records of an RFC 4180 text: fields unquoted, quotes undoubled.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && record.is_empty(),
        "CSV ends mid-record"
    );
    records
}

fn column<'a>(records: &'a [Vec<String>], name: &str) -> Vec<&'a str> {
    let i = records[0]
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    records[1..].iter().map(|r| r[i].as_str()).collect()
}

#[test]
fn csv_has_a_header_and_one_line_per_pairing() {
    let text = csv(&report("lan", Some("same rack"), &three_pairings()));
    assert_eq!(text.lines().count(), 1 + 3, "{text}");
    let records = parse_csv(&text);
    assert!(records.iter().all(|r| r.len() == records[0].len()));
    assert_eq!(column(&records, "pairing"), ["250ms/2", "1s/2", "2s/3"]);
}

#[test]
fn csv_quotes_a_description_with_a_comma_a_quote_and_a_line_break() {
    let description = "LAN, with \"bursty\" loss\nand jitter";
    let text = csv(&report("lan", Some(description), &three_pairings()));
    assert!(text.contains("\"LAN, with \"\"bursty\"\" loss\nand jitter\""));
    let records = parse_csv(&text);
    assert_eq!(records.len(), 1 + 3);
    assert_eq!(column(&records, "description"), [description; 3]);
}

#[test]
fn csv_cells_are_plain_numbers_with_units_in_the_header() {
    let mut measured = three_pairings();
    measured[2] = measured[2].clone().missed(1);
    let records = parse_csv(&csv(&report("lan", None, &measured)));
    for name in [
        "detection_p99_s",
        "false_rate_per_hour",
        "false_rate_upper_per_hour",
        "client_detection_p50_s",
        "server_detection_max_s",
        "client_missed",
        "client_mistake_duration_mean_s",
        "server_query_accuracy",
        "client_bytes_per_s",
        "server_heartbeats_per_s",
        "reconnects_per_hour",
        "pareto",
        "meets_limits",
    ] {
        assert!(records[0].iter().any(|h| h == name), "no column {name}");
    }
    assert_eq!(column(&records, "false_rate_per_hour"), ["0.4", "0", "0"]);
    assert_eq!(column(&records, "client_detection_max_s")[2], "inf");
    assert_eq!(column(&records, "client_missed"), ["0", "0", "1"]);
    assert_eq!(column(&records, "recommended"), ["false", "true", "false"]);
    assert_eq!(column(&records, "meets_limits"), ["false", "true", "false"]);
}

#[test]
fn markdown_names_the_recommended_pairing_and_its_margins() {
    let r = report("lan", Some("same rack"), &three_pairings());
    let rec = r.recommendation.as_ref().expect("1s/2 meets the limits");
    assert_eq!(rec.pairing, "1s/2");
    let text = markdown(&r);
    assert!(text.starts_with("# Tuning heartbeats: lan\n"), "{text}");
    assert!(
        text.contains("**`1s/2`** (k-miss, η = 1s, k = 2)"),
        "{text}"
    );
    // p99 of 2 s under a 3 s limit; an upper bound of 0.037/h under 0.1/h.
    assert!(
        text.contains("detection p99 2 s: 1 s under the 3s limit (a margin of 33.3% of the limit)"),
        "{text}"
    );
    assert!(
        text.contains("false suspicions ≤ 0.0369/h per connection (95% upper bound): 0.0631/h"),
        "{text}"
    );
    assert!(text.contains("| ★◆ | **`1s/2`** |"), "{text}");
    assert!(text.contains("```sh\nmcpsim tune scenarios/lan.toml --max-detection 3s\n```"));
}

#[test]
fn markdown_without_a_pairing_meeting_the_limits_names_the_closest_and_its_ratio() {
    let measured = vec![
        Measured::new("k-miss", 250, 2)
            .detections(&[0.5])
            .false_suspicions(40),
        Measured::new("k-miss", 2000, 3).detections(&[4.5, 6.0]),
    ];
    let text = markdown(&report("wan", None, &measured));
    assert!(text.contains("**None meets the limits.**"), "{text}");
    assert!(
        text.contains("Closest: `2s/3` misses the detection-time limit by ×2."),
        "{text}"
    );
}

#[test]
fn markdown_escapes_scenario_text_that_would_open_a_tag_or_a_cell() {
    let text = markdown(&report("<b>|x", Some("a [link](x)"), &three_pairings()));
    assert!(
        text.contains("# Tuning heartbeats: \\<b\\>\\|x\n"),
        "{text}"
    );
    assert!(text.contains("a \\[link\\](x)"), "{text}");
}

#[test]
fn html_closes_every_svg_and_escapes_a_scenario_named_script() {
    let r = report("<script>", Some("a & b <i>"), &three_pairings());
    let page = html(&r);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.trim_end().ends_with("</html>"));
    assert!(
        !page.to_lowercase().contains("<script"),
        "unescaped scenario name"
    );
    assert!(page.contains("<h1>&lt;script&gt;</h1>"));
    assert!(page.contains("a &amp; b &lt;i&gt;"));
    let opened = page.matches("<svg").count();
    assert!(opened >= 3, "a chart and two heatmaps");
    assert_eq!(opened, page.matches("</svg>").count());
    assert_eq!(page.matches("<g").count(), page.matches("</g>").count());
}

#[test]
fn html_loads_nothing_from_the_network() {
    let page = html(&report("lan", None, &three_pairings()));
    for needle in [
        "<script", "<link", "@import", "src=", "url(http", "https://",
    ] {
        assert!(!page.contains(needle), "the page holds {needle}");
    }
}

#[test]
fn html_draws_one_series_per_detector_and_marks_the_recommended_point() {
    let mut measured = Vec::new();
    for detector in ["k-miss", "phi", "adaptive"] {
        measured.extend(three_pairings().into_iter().map(|mut m| {
            m.detector = detector;
            m
        }));
    }
    let page = html(&report("lan", None, &measured));
    for detector in ["k-miss", "phi", "adaptive"] {
        let series = format!("<g class=\"series\" data-detector=\"{detector}\">");
        assert_eq!(page.matches(&series).count(), 1, "{detector}");
    }
    assert_eq!(page.matches("<g class=\"series\"").count(), 3);
    let rec = page
        .split("<g class=\"recommended\">")
        .nth(1)
        .expect("a recommended point");
    assert!(rec.contains("★ k-miss:1s/2 (recommended)"));
    assert!(page.contains("<tr class=\"rec pareto\">"));
}

#[test]
fn a_zero_rate_sits_on_the_floor_band_with_its_upper_bound() {
    let page = html(&report("lan", None, &three_pairings()));
    assert!(page.contains("0 observed"));
    assert!(
        page.contains("≤ 0.0369"),
        "the upper bound is printed in the heatmap"
    );
}

/// Renders all three and checks what any output must satisfy.
fn renders_cleanly(r: &TuneReport) {
    let page = html(r);
    assert_eq!(page.matches("<svg").count(), page.matches("</svg>").count());
    assert!(!page.contains("NaN"), "NaN in the page");
    assert!(!page.contains("=\"inf"), "an infinite coordinate");
    assert!(!markdown(r).contains("NaN"));
    assert_eq!(csv(r).lines().count(), 1 + r.rows.len());
}

#[test]
fn edge_cases_render_without_panic() {
    let all_zero = three_pairings()
        .into_iter()
        .map(|m| m.false_suspicions(0))
        .collect::<Vec<_>>();
    let no_failures = three_pairings()
        .into_iter()
        .map(|m| m.detections(&[]))
        .collect::<Vec<_>>();
    let every_one_missed = three_pairings()
        .into_iter()
        .map(|m| m.detections(&[]).missed(2))
        .collect::<Vec<_>>();
    let unmeasured = vec![Measured {
        exposure_hours: 0.0,
        ..Measured::new("k-miss", 1000, 3).detections(&[])
    }];
    let cases: [(&str, &[Measured]); 6] = [
        ("single", &three_pairings()[1..2]),
        ("all-zero", &all_zero),
        ("no-failures", &no_failures),
        ("missed", &every_one_missed),
        ("unmeasured", &unmeasured),
        ("none-meets", &three_pairings()[..1]),
    ];
    for (name, measured) in cases {
        renders_cleanly(&report(name, Some(name), measured));
    }
    let mut empty = report("empty", None, &three_pairings());
    empty.rows.clear();
    empty.recommendation = None;
    empty.closest = None;
    renders_cleanly(&empty);
    assert!(markdown(&empty).contains("no pairing was measured"));
}

#[test]
fn every_missed_detection_is_named_in_the_verdict() {
    let measured: Vec<Measured> = three_pairings().into_iter().map(|m| m.missed(1)).collect();
    let r = report("missed", None, &measured);
    assert!(r.recommendation.is_none());
    assert!(markdown(&r).contains("a failure went undetected"));
    assert!(html(&r).contains("missed a"));
}

const TINY: &str = r#"
description = "two sessions, a crash, a few minutes"
duration = "3m"
seeds = 2

[topology]
sessions = 2

[grid]
interval = ["500ms", "1s"]
miss_threshold = [3]

[network]
latency = { dist = "lognormal", min = "100us", median = "200us", sigma = 0.5 }
"#;

#[test]
fn a_real_small_sweep_renders_every_pairing_in_all_three_forms() {
    let plan = mcpsim::scenario::parse("tiny.toml", "tiny", TINY).expect("a good scenario");
    let budget = Budget {
        max_seeds: 2,
        seeds_per_round: 2,
        ..budget()
    };
    let r = tune(
        &plan,
        limits(),
        budget,
        2,
        "mcpsim tune tiny.toml".into(),
        |_, _| {},
    )
    .expect("the sweep runs");
    assert_eq!(r.rows.len(), 2);
    renders_cleanly(&r);
    let (c, m, h) = (csv(&r), markdown(&r), html(&r));
    for pairing in ["500ms/3", "1s/3"] {
        assert!(c.contains(pairing) && m.contains(pairing) && h.contains(pairing));
    }
}

/// A sweep of 3 detectors × 4 intervals × 3 thresholds, shaped like a bursty-loss LAN.
fn realistic() -> TuneReport {
    report(
        "bursty-lan",
        Some(
            "Rack-to-rack LAN with bursty loss (Gilbert–Elliott, 1% mean) and 5 ms jitter; \
             3 server crashes per hour",
        ),
        &modelled_grid(),
    )
}

fn modelled_grid() -> Vec<Measured> {
    let mut measured = Vec::new();
    for (d, detector) in ["k-miss", "phi", "adaptive"].into_iter().enumerate() {
        for interval_ms in [250, 500, 1000, 2000] {
            for k in [2u8, 3, 4] {
                measured.push(modelled(d, detector, interval_ms, k));
            }
        }
    }
    measured
}

fn modelled(d: usize, detector: &'static str, interval_ms: u64, k: u8) -> Measured {
    let eta = interval_ms as f64 / 1000.0;
    let k_f = f64::from(k);
    let (reach, loss) = match d {
        0 => (k_f, 0.03_f64),
        1 => (k_f + 0.6, 0.02),
        _ => (1.0 + (k_f - 1.0) / 4.0, 0.06),
    };
    let detections: Vec<f64> = (0..200)
        .map(|j| (reach - 1.0 + f64::from(j) / 200.0) * eta + 0.02 + 0.001 * f64::from(j % 7))
        .collect();
    let rate = 3600.0 * loss.powi(i32::from(k)) / eta * 4.0;
    let exposure_hours = 400.0;
    let mut m = Measured::new(detector, interval_ms, k)
        .detections(&detections)
        .false_suspicions((rate * exposure_hours).round() as u64);
    m.exposure_hours = exposure_hours;
    if d == 2 && interval_ms == 2000 && k == 2 {
        m = m.missed(1);
    }
    m
}

#[test]
#[ignore = "writes sample reports to /tmp for a person to look at"]
fn writes_a_sample_report_to_tmp() {
    let r = realistic();
    std::fs::write("/tmp/tune.html", html(&r)).unwrap();
    std::fs::write("/tmp/tune.md", markdown(&r)).unwrap();
    std::fs::write("/tmp/tune.csv", csv(&r)).unwrap();
    let tight = Limits {
        max_detection: Duration::from_millis(400),
        ..limits()
    };
    let none = report_within(tight, "<script>alert(1)</script>", None, &modelled_grid());
    std::fs::write("/tmp/tune-none.html", html(&none)).unwrap();
    let quiet: Vec<Measured> = modelled_grid()
        .into_iter()
        .map(|m| m.detections(&[]).false_suspicions(0))
        .collect();
    let quiet = report("quiet-lan", Some("no faults"), &quiet);
    std::fs::write("/tmp/tune-quiet.html", html(&quiet)).unwrap();
    let missed: Vec<Measured> = modelled_grid()
        .into_iter()
        .map(|m| {
            if m.interval_ms == 2000 {
                m.missed(300)
            } else {
                m
            }
        })
        .collect();
    let missed = report("partitions", None, &missed);
    std::fs::write("/tmp/tune-missed.html", html(&missed)).unwrap();
}
