//! `mcpsim run`, `replay`, `tune`, `compare` and `merge` run as a user runs them: the built binary, its
//! exit status and its output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mcpsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcpsim"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A scratch directory of this test's own.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcpsim-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Three clients on a 5 ms LAN; the server machine crashes at 61.3 s and reboots 10 s later.
const CRASH: &str = r#"
duration = "2m"
tick = "5ms"
seeds = 2

[topology]
sessions = 3

[grid]
interval = ["500ms", "1s"]
miss_threshold = [2, 3]

[network]
latency = "5ms"

[[faults]]
kind = "crash"
at = "61.3s"
host = "server"
downtime = "10s"
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn run_exits_0_when_every_assertion_holds() {
    let dir = scratch("holds");
    let file = write(
        &dir,
        "crash.toml",
        &format!(
            "{CRASH}\n[[assert]]\nside = \"client\"\nmax_missed = 0\nmin_failures = 3\nmax_detection = \"3.2s\"\n"
        ),
    );
    let out = mcpsim(&["run", &file]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("12 of 12 checks hold"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_failed_assertion_exits_1_and_prints_the_replay_of_the_worst_run_which_replays_byte_for_byte() {
    let dir = scratch("fails");
    // Detection of a crash takes about k·η: 1s/3 cannot make 2 s.
    let file = write(
        &dir,
        "crash.toml",
        &format!(
            "{CRASH}\n[[assert]]\npairing = \"1s/3\"\nside = \"client\"\nmax_detection = \"2s\"\n"
        ),
    );
    let out = mcpsim(&["run", &file, "--engine", "turmoil"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("FAILED: 1s/3, client side: detection max is ")
            && text.contains("bound <= 2s"),
        "{text}"
    );
    let replay = worst_run(&text);
    assert!(
        replay.starts_with(&format!("mcpsim replay {file} --seed ")),
        "{replay}"
    );
    assert!(
        replay.ends_with("--pairing 1s/3 --engine turmoil"),
        "{replay}"
    );
    replays_byte_for_byte_with_a_suspicion(&replay);
}

#[test]
fn by_default_a_file_runs_on_the_event_engine_and_the_report_says_so() {
    let dir = scratch("auto-engine");
    let crash = write(&dir, "crash.toml", CRASH);
    let out = mcpsim(&["run", &crash]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("wall on the event engine"), "{text}");
    // The server's load too.
    let loaded = write(&dir, "load.toml", &format!("{CRASH}{LOAD}"));
    let out = mcpsim(&["run", &loaded]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("wall on the event engine"), "{text}");
}

/// A CPU cost per heartbeat on the server.
const LOAD: &str = r#"
[load]
frame_cost = "100us"
"#;

#[test]
fn the_replay_command_of_a_run_without_its_traffic_says_so_and_replays_it() {
    let dir = scratch("no-traffic-replay");
    let file = write(
        &dir,
        "traffic.toml",
        &format!(
            "{CRASH}{TRAFFIC}\n[[assert]]\npairing = \"1s/3\"\nside = \"client\"\nmax_detection = \"2s\"\n"
        ),
    );
    let out = mcpsim(&["run", &file, "--no-traffic"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    let replay = worst_run(&text);
    assert!(
        replay.ends_with("--pairing 1s/3 --engine event --no-traffic"),
        "{replay}"
    );
    replays_byte_for_byte_with_a_suspicion(&replay);
}

/// A message a second from each client.
const TRAFFIC: &str = r#"
[traffic]
[[traffic.flow]]
direction = "up"
rate = 1
size = [16, 64]
"#;

/// The replay command a failed check printed for its worst run.
fn worst_run(report: &str) -> String {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix("worst run: "))
        .expect("a replay command")
        .to_string()
}

/// `replay` runs, shows a client suspecting the server, and prints the same trace twice.
fn replays_byte_for_byte_with_a_suspicion(replay: &str) {
    let args: Vec<&str> = replay.split(' ').skip(1).collect();
    let (a, b) = (mcpsim(&args), mcpsim(&args));
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(stdout(&a).contains("suspect server"), "{}", stdout(&a));
    assert_eq!(a.stdout, b.stdout, "two replays of one run differ");
}

#[test]
fn a_broken_file_exits_2_with_its_place_and_runs_nothing() {
    let dir = scratch("broken");
    let file = write(&dir, "broken.toml", &CRASH.replace("\"2m\"", "\"2 min\""));
    let out = mcpsim(&["run", &file]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{file}:2:12: expected a duration")),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

#[test]
fn tune_recommends_the_cheapest_pairing_that_meets_the_detection_limit() {
    let dir = scratch("tune");
    let file = write(&dir, "crash.toml", CRASH);
    let json = dir.join("report.json");
    // Crash detection takes about k·η plus grace and delay: within 2.5 s are 500ms/2, 500ms/3
    // and 1s/2; the cheapest (fewest heartbeats) is 1s/2. The limit on false suspicions is
    // loose: a quiet LAN has none, but a few connection-minutes cannot show a low rate.
    let out = mcpsim(&[
        "tune",
        &file,
        "--seeds",
        "2",
        "--max-detection",
        "2.5s",
        "--max-false-rate",
        "50/h",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("recommended: 1s/2"),
        "{}",
        stdout(&out)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["recommendation"]["pairing"], "1s/2");
    let meets: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["meets_limits"] == true)
        .map(|r| r["pairing"].as_str().unwrap())
        .collect();
    assert_eq!(meets, ["500ms/2", "500ms/3", "1s/2"]);
}

#[test]
fn compare_reads_each_detector_at_the_rate_and_says_what_k_means() {
    let dir = scratch("compare");
    let file = write(&dir, "crash.toml", CRASH);
    let json = dir.join("compare.json");
    // A quiet LAN: nothing is falsely suspected, so every pairing meets any rate and each
    // detector's figure is its fastest pairing on the grid, here its only one.
    let out = mcpsim(&[
        "compare",
        &file,
        "--seeds",
        "2",
        "--intervals",
        "1s",
        "--thresholds",
        "2",
        "--detectors",
        "k-miss,tcp",
        "--rate",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("at 1 false suspicions per connection-hour"),
        "{text}"
    );
    assert!(
        text.contains("tcp suspects when the next heartbeat"),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let figures = v[0]["detectors"].as_array().unwrap();
    assert_eq!(figures.len(), 2);
    for (f, pairing) in figures.iter().zip(["k-miss:1s/2", "tcp:1s/2"]) {
        assert_eq!(f["from"][0], pairing, "{f}");
        // The crash at 61.3 s is detected within k·η plus grace and delay.
        let p99 = f["p99_at_rate_s"].as_f64().unwrap();
        assert!(p99 > 0.0 && p99 < 2.5, "{f}");
        assert_eq!(f["reached"], 1.0, "{f}");
    }
    // One seed cannot be resampled.
    let one = mcpsim(&["compare", &file, "--seeds", "1"]);
    assert_eq!(one.status.code(), Some(2), "{}", stderr(&one));
    assert!(
        stderr(&one).contains("--seeds 1 is outside 2..="),
        "{}",
        stderr(&one)
    );
}

#[test]
fn shards_merged_give_the_report_of_the_whole_sweep() {
    let dir = scratch("shards");
    let file = write(&dir, "crash.toml", CRASH);
    let whole = dir.join("whole.json");
    let out = mcpsim(&[
        "tune",
        &file,
        "--seeds",
        "2",
        "--json",
        whole.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut shards = Vec::new();
    for k in 1..=3 {
        let path = dir.join(format!("shard-{k}.jsonl"));
        let shard = format!("{k}/3");
        let out = mcpsim(&[
            "tune",
            &file,
            "--seeds",
            "2",
            "--shard",
            &shard,
            "--out",
            path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        shards.push(path.to_string_lossy().into_owned());
    }
    let merged = dir.join("merged.json");
    let mut args = vec!["merge"];
    args.extend(shards.iter().map(String::as_str));
    args.extend(["--json", merged.to_str().unwrap()]);
    let out = mcpsim(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (a, b) = (read(&whole), read(&merged));
    assert_eq!(a["rows"], b["rows"]);
    assert_eq!(a["recommendation"], b["recommendation"]);

    // A missing shard is named, not silently ignored.
    let out = mcpsim(&["merge", &shards[0], &shards[1]]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("runs are missing"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_results_do_not_depend_on_how_many_runs_go_at_once() {
    let dir = scratch("jobs");
    let file = write(&dir, "crash.toml", CRASH);
    let json = |jobs: &str| {
        let path = dir.join(format!("jobs-{jobs}.json"));
        let out = mcpsim(&[
            "run",
            &file,
            "--jobs",
            jobs,
            "--json",
            path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read_to_string(path).unwrap()
    };
    assert_eq!(json("1"), json("3"));
}

/// A trace line's text starts with `heartbeat `: a receipt of the segment level.
fn is_receipt(line: &str) -> bool {
    line.split_whitespace().nth(2) == Some("heartbeat")
}

/// A trace line's text starts with `tcp:`: the simulated kernels' probes, resends and timeouts,
/// also of the segment level.
fn is_kernel(line: &str) -> bool {
    line.split_whitespace().nth(2) == Some("tcp:")
}

#[test]
fn replay_at_the_segments_level_adds_a_line_per_heartbeat_received_to_the_same_trace() {
    let dir = scratch("segments");
    let file = write(&dir, "crash.toml", CRASH);
    let replay = |extra: &[&str]| {
        let mut args = vec!["replay", &file, "--seed", "1", "--pairing", "1s/3"];
        args.extend(extra);
        let out = mcpsim(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let default = replay(&[]);
    assert_eq!(replay(&["--trace-level", "events"]), default);
    assert!(!default.lines().any(|l| is_receipt(l) || is_kernel(l)));
    let detailed = replay(&["--trace-level", "segments"]);
    let (receipts, others): (Vec<&str>, Vec<&str>) = detailed
        .lines()
        .filter(|l| !is_kernel(l))
        .partition(|l| is_receipt(l));
    assert_eq!(others.join("\n") + "\n", default);
    // Two-way on a 5 ms link: each side hears the other's heartbeats, and the replies to its own
    // 10 ms after sending them.
    for node in ["client-0", "server"] {
        let mine: Vec<&&str> = receipts
            .iter()
            .filter(|l| l.contains(&format!("s  {node} ")))
            .collect();
        assert!(mine.iter().any(|l| l.contains(" heartbeat reply ") && l.contains(", rtt 10.000ms  (session ")), "{node}: {mine:?}");
        assert!(mine.iter().any(|l| !l.contains(" reply ")), "{node}");
    }
    let bad = mcpsim(&["replay", &file, "--seed", "1", "--trace-level", "packets"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

#[test]
fn run_reports_heartbeat_round_trips_and_the_longest_gap_in_its_table_and_json() {
    let dir = scratch("heartbeats");
    let file = write(&dir, "crash.toml", CRASH);
    let json = dir.join("results.json");
    let out = mcpsim(&["run", &file, "--json", json.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("RTT p50") && table.contains("longest gap"),
        "{table}"
    );
    let reports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for pairing in reports[0]["pairings"].as_array().unwrap() {
        for side in ["client", "server"] {
            let m = &pairing["metrics"][side];
            let rtt = &m["rtt"];
            for q in ["p50", "p99", "p999", "max"] {
                let x = rtt[q].as_f64().unwrap();
                assert!((0.010..=0.011).contains(&x), "{side} {q}: {rtt}");
            }
            assert!(rtt["samples"].as_u64().unwrap() > 0);
            // Gaps are a heartbeat interval: the crash's silence ends each connection.
            let gap = m["longest_gap"]["value"].as_f64().unwrap();
            let interval = pairing["interval_ms"].as_f64().unwrap() / 1000.0;
            assert!(gap >= interval && gap < interval + 0.01, "{side}: {gap}");
            assert!(m["longest_gap"]["seed"].as_u64().is_some());
            // The mergeable form is in the summary.
            assert!(pairing["summary"][side]["rtt"]["buckets"].is_array());
        }
    }
}

#[test]
fn a_fifo_a_device_and_a_file_that_is_not_utf8_are_refused_with_where() {
    let dir = scratch("input");
    let fifo = dir.join("fifo.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for path in [fifo.to_str().unwrap(), "/dev/zero"] {
        let out = mcpsim(&["run", path]);
        assert_eq!(out.status.code(), Some(2), "{path}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not a regular file"),
            "{}",
            stderr(&out)
        );
    }
    let bad = dir.join("latin1.toml");
    std::fs::write(&bad, b"duration = \"1m\"\n# caf\xe9\n").unwrap();
    let out = mcpsim(&["run", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    // (The report may wrap the line.)
    let err = stderr(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let err = err.replace(" │ ", " ");
    assert!(
        err.contains("not UTF-8 text: invalid byte at line 2, column 6"),
        "{err}"
    );
}

#[test]
fn a_reader_that_stops_early_ends_the_run_quietly() {
    // `mcpsim run FILE | head -1`: the first line read, the pipe closed, no panic.
    let dir = scratch("pipe");
    let file = write(&dir, "crash.toml", CRASH);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcpsim"))
        .args(["run", &file, "--seeds", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    {
        use std::io::BufRead;
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut first).unwrap();
    } // the read end is closed here
    let out = child.wait_with_output().unwrap();
    assert!(first.starts_with("crash"), "{first:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // Killed by SIGPIPE, as `cat` would be, or done before it wrote again.
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.signal() == Some(13) || out.status.success(),
        "{:?}",
        out.status
    );
}

#[test]
fn too_many_seeds_on_the_command_line_are_refused_before_anything_runs() {
    let dir = scratch("seeds");
    let file = write(&dir, "crash.toml", CRASH);
    let out = mcpsim(&["run", &file, "--seeds", "1000000000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("over the bound"), "{}", stderr(&out));
}

/// Twenty clients over a lossy 2 ms link, no faults: what the event engine models.
const LOSSY: &str = r#"
duration = "3m"
tick = "1ms"
seeds = 2

[topology]
sessions = 20

[grid]
interval = ["250ms"]
miss_threshold = [2]

[network]
latency = "2ms"
loss = "20%"
"#;

#[test]
fn run_on_the_event_engine_names_it_and_its_worst_run_replays_on_it_byte_for_byte() {
    let dir = scratch("event-engine");
    // 20% loss against a 500 ms budget: false suspicions, so the bound of 0 fails.
    let file = write(
        &dir,
        "lossy.toml",
        &format!("{LOSSY}\n[[assert]]\nside = \"client\"\nmax_false_suspicions = 0\n"),
    );
    let out = mcpsim(&["run", &file, "--engine", "event"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    assert!(text.contains("wall on the event engine"), "{text}");
    let replay = worst_run(&text);
    assert!(replay.ends_with("--engine event"), "{replay}");
    replays_byte_for_byte_with_a_suspicion(&replay);
}

#[test]
fn a_scenario_with_load_runs_on_either_engine_as_asked_and_the_report_names_it() {
    let dir = scratch("load-engines");
    let file = write(&dir, "load.toml", &format!("{CRASH}{LOAD}"));
    for engine in ["event", "turmoil"] {
        let out = mcpsim(&["run", &file, "--engine", engine]);
        let text = stdout(&out);
        assert!(out.status.success(), "{text}\n{}", stderr(&out));
        assert!(
            text.contains(&format!("wall on the {engine} engine")),
            "{text}"
        );
    }
}
