//! `mcpsim sweep` run as a user runs it: the built binary, its exit status and its output.

use std::process::{Command, Output};

fn sweep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcpsim"))
        .arg("sweep")
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn json_output_has_one_row_per_pairing() {
    let out = sweep(&[
        "--intervals",
        "500ms,1s",
        "--thresholds",
        "2,3",
        "--hours",
        "5",
        "--crashes",
        "50",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let rows = v["rows"].as_array().expect("rows");
    // 3 detectors × 2 intervals × 2 thresholds.
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().any(|r| r["pareto"] == true));
    assert!(
        v["command"]
            .as_str()
            .unwrap()
            .contains("--seed 1 --max-detection 5s")
    );
    assert!(v["model_note"].as_str().unwrap().contains("no TCP"));
}

#[test]
fn same_seed_prints_the_same_table() {
    let args = [
        "--intervals",
        "1s",
        "--thresholds",
        "3",
        "--hours",
        "5",
        "--crashes",
        "50",
        "--burst",
        "3",
    ];
    let (a, b) = (sweep(&args), sweep(&args));
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    let text = String::from_utf8(a.stdout).unwrap();
    assert!(text.contains("reproduce: mcpsim sweep"), "{text}");
    assert!(text.contains("bursty"), "{text}");
}

#[test]
fn bad_values_exit_non_zero_naming_the_flag() {
    for (args, flag) in [
        (&["--intervals", "fast"][..], "--intervals"),
        (&["--intervals", ","][..], "--intervals"),
        (&["--thresholds", "0"][..], "--thresholds"),
        (&["--loss", "1.5"][..], "--loss"),
        (&["--jitter", "5 parsecs"][..], "--jitter"),
        (&["--detectors", "magic"][..], "--detectors"),
        (&["--loss", "0.5", "--burst", "0.5"][..], "--burst"),
    ] {
        let out = sweep(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}
