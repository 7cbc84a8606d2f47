//! A broken scenario file is refused before anything runs, with its file, line, column and
//! what was expected.

use mcpsim::scenario::{ScenarioError, parse, schema};

const GOOD: &str = r#"
duration = "10m"
seeds = 2

[topology]
sessions = 4

[grid]
interval = ["500ms", "1s"]
miss_threshold = [2, 3]
"#;

fn error_of(text: &str) -> ScenarioError {
    parse("broken.toml", "broken", text).expect_err("the file should be refused")
}

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).expect("needle in text");
    text[..at].matches('\n').count() + 1
}

#[test]
fn a_good_file_gives_every_pairing_of_the_grid_on_every_seed() {
    let plan = parse("good.toml", "good", GOOD).unwrap();
    let names: Vec<String> = (0..plan.pairings.len())
        .map(|i| plan.pairing_name(i))
        .collect();
    assert_eq!(names, ["500ms/2", "500ms/3", "1s/2", "1s/3"]);
    assert_eq!(plan.seeds, [1, 2]);
    assert_eq!(plan.name, "good");
}

#[test]
fn an_unknown_key_is_named_with_the_keys_that_are_allowed() {
    let text = GOOD.replace("sessions = 4", "sessions = 4\nsesions = 5");
    let e = error_of(&text);
    assert_eq!((e.line, e.column), (line_of(&text, "sesions"), 1));
    assert!(
        e.message.contains("unknown field `sesions`"),
        "{}",
        e.message
    );
    assert!(e.message.contains("`sessions`"), "{}", e.message);
}

#[test]
fn a_duration_written_5_sec_is_refused_with_the_form_expected() {
    let text = GOOD.replace("\"10m\"", "\"5 sec\"");
    let e = error_of(&text);
    assert_eq!((e.line, e.column), (line_of(&text, "5 sec"), 12));
    assert!(
        e.message.contains("expected a duration such as"),
        "{}",
        e.message
    );
    assert!(e.to_string().starts_with("broken.toml:2:12: "), "{e}");
}

#[test]
fn a_duration_without_a_unit_is_refused() {
    let text = GOOD.replace("\"10m\"", "600");
    let e = error_of(&text);
    assert!(e.message.contains("needs a unit"), "{}", e.message);
}

#[test]
fn a_percentage_written_as_a_bare_number_is_refused() {
    let text = format!("{GOOD}\n[network]\nloss = 0.01\n");
    let e = error_of(&text);
    assert_eq!(e.line, line_of(&text, "loss = 0.01"));
    assert!(e.message.contains("\"1%\""), "{}", e.message);
}

#[test]
fn an_assertion_about_a_pairing_not_in_the_grid_lists_the_grid() {
    let text = format!("{GOOD}\n[[assert]]\npairing = \"2s/3\"\nmax_missed = 0\n");
    let e = error_of(&text);
    assert_eq!(e.line, line_of(&text, "[[assert]]"));
    assert!(e.message.contains("no pairing \"2s/3\""), "{}", e.message);
    assert!(
        e.message.contains("500ms/2, 500ms/3, 1s/2, 1s/3"),
        "{}",
        e.message
    );
}

#[test]
fn a_fault_aimed_at_a_host_that_does_not_exist_lists_the_hosts() {
    let text = format!("{GOOD}\n[[faults]]\nkind = \"crash\"\nat = \"1m\"\nhost = \"sever\"\n");
    let e = error_of(&text);
    assert_eq!(e.line, line_of(&text, "[[faults]]"));
    assert!(e.message.contains("no host \"sever\""), "{}", e.message);
    assert!(e.message.contains("server, clients"), "{}", e.message);
}

#[test]
fn a_partition_aimed_at_a_session_beyond_the_topology_is_refused() {
    let text = format!(
        "{GOOD}\n[[faults]]\nkind = \"partition\"\nat = \"1m\"\nfrom = \"client-9\"\n\
         to = \"server\"\nduration = \"3s\"\n"
    );
    let e = error_of(&text);
    assert!(e.message.contains("client-0 … client-3"), "{}", e.message);
}

#[test]
fn a_fault_of_an_unknown_kind_names_the_kinds() {
    let text = format!("{GOOD}\n[[faults]]\nkind = \"explode\"\nat = \"1m\"\nhost = \"server\"\n");
    let e = error_of(&text);
    assert!(e.message.contains("explode"), "{}", e.message);
    assert!(e.message.contains("partition"), "{}", e.message);
}

#[test]
fn a_latency_distribution_with_impossible_parameters_is_refused_where_it_is_written() {
    let text = format!(
        "{GOOD}\n[network]\nlatency = {{ dist = \"lognormal\", min = \"20ms\", median = \"10ms\", sigma = 0.5 }}\n"
    );
    let e = error_of(&text);
    assert_eq!(e.line, line_of(&text, "latency = "));
    assert!(
        e.message.contains("median 10ms must be more than min 20ms"),
        "{}",
        e.message
    );
}

#[test]
fn a_fault_after_the_end_of_the_run_is_refused() {
    let text = format!(
        "{GOOD}\n[[faults]]\nkind = \"pause\"\nat = \"20m\"\nhost = \"server\"\nduration = \"1s\"\n"
    );
    let e = error_of(&text);
    assert!(
        e.message.contains("after the end of the run"),
        "{}",
        e.message
    );
}

#[test]
fn a_file_that_is_not_toml_is_refused_at_the_broken_line() {
    let e = error_of("duration = \"1m\"\n[topology\nsessions = 1\n");
    assert_eq!(e.line, 2);
}

#[test]
fn the_published_json_schema_is_the_one_the_code_derives() {
    let published = std::fs::read_to_string("docs/scenario.schema.json").unwrap();
    assert_eq!(
        published,
        schema(),
        "docs/scenario.schema.json is stale: run `cargo run -- schema > docs/scenario.schema.json`"
    );
}

#[test]
fn a_duration_that_is_not_a_whole_number_of_ticks_is_refused_naming_both() {
    let text = format!("tick = \"7ms\"\n{GOOD}");
    let e = error_of(&text);
    assert!(
        e.message
            .contains("duration (10m) must be a whole number of ticks (7ms)"),
        "{}",
        e.message
    );
}

#[test]
fn a_repeated_seed_is_refused_because_it_is_the_same_run_again() {
    let e = error_of(&GOOD.replace("seeds = 2", "seeds = [5, 7, 5]"));
    assert!(e.message.contains("seed 5 more than once"), "{}", e.message);
}

#[test]
fn a_grid_interval_the_server_would_not_grant_is_refused_at_the_grid() {
    let text = GOOD.replace("[\"500ms\", \"1s\"]", "[\"50ms\", \"1s\"]");
    let e = error_of(&text);
    assert_eq!(e.line, line_of(&text, "[grid]"));
    assert!(e.message.contains("server.min_interval"), "{}", e.message);
    // Lowering the server's bound makes it a pairing the binaries can run.
    let ok = text.replace(
        "[grid]",
        "[stack.server]\nmin_interval = \"10ms\"\n\n[grid]",
    );
    assert!(parse("ok.toml", "ok", &ok).is_ok());
}

#[test]
fn the_stack_table_is_the_stack_configuration_and_names_a_misspelt_key() {
    let text = GOOD.replace("[grid]", "[stack.heartbeat]\ngrase = \"100ms\"\n\n[grid]");
    let e = error_of(&text);
    assert_eq!(e.line, line_of(&text, "grase"));
    assert!(e.message.contains("unknown field `grase`"), "{}", e.message);
}

#[test]
fn the_user_timeout_is_the_stacks_not_the_networks() {
    let text = format!("{GOOD}\n[network.tcp]\nuser_timeout = \"3s\"\n");
    let e = error_of(&text);
    assert!(
        e.message.contains("unknown field `user_timeout`"),
        "{}",
        e.message
    );
    let moved = format!("{GOOD}\n[stack.tcp]\nuser_timeout = \"3s\"\n");
    let plan = parse("ok.toml", "ok", &moved).unwrap();
    assert_eq!(
        plan.scenario(0).stack.tcp.user_timeout.map(|d| d.0),
        Some(std::time::Duration::from_secs(3))
    );
}

#[test]
fn a_file_without_a_grid_runs_the_one_pairing_of_its_stack() {
    let text = r#"
duration = "1m"
[topology]
sessions = 2
[stack.heartbeat]
interval = "2s"
miss_threshold = 4
detector = "phi"
"#;
    let plan = parse("nogrid.toml", "nogrid", text).unwrap();
    assert_eq!(plan.pairings.len(), 1);
    assert_eq!(plan.stack(0).pairing_name(), "phi:2s/4");
}

#[test]
fn what_would_exhaust_memory_is_refused_with_its_bound() {
    let cases = [
        GOOD.replace("sessions = 4", "sessions = 1000000000"),
        GOOD.replace("seeds = 2", "seeds = 1000000000"),
        format!(
            "{GOOD}\n[[random_faults]]\nkind = \"crash\"\nhost = \"server\"\nper_hour = 1e12\nduration = \"1s\"\n"
        ),
        format!(
            "{GOOD}\n[[faults]]\nkind = \"crash\"\nat = \"1s\"\nhost = \"server\"\nrepeat = {{ every = \"1us\", times = 1000000000 }}\n"
        ),
        GOOD.replace("duration = \"10m\"", "duration = \"8760h\""),
    ];
    for text in cases {
        let e = error_of(&text);
        assert!(e.message.contains("bound"), "{}", e.message);
        assert!(e.line >= 1, "{e}");
    }
}

#[test]
fn a_grid_over_the_bound_is_refused_before_its_pairings_are_made() {
    let intervals: Vec<String> = (1..=101).map(|i| format!("\"{}ms\"", 100 + i)).collect();
    let text = GOOD
        .replace(
            "[\"500ms\", \"1s\"]",
            &format!("[{}]", intervals.join(", ")),
        )
        .replace("[2, 3]", "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]");
    let e = error_of(&text);
    assert!(e.message.contains("1010 pairings"), "{}", e.message);
}

#[test]
fn an_unknown_pairing_in_a_large_grid_names_a_few_and_the_count() {
    let intervals: Vec<String> = (1..=300).map(|i| format!("\"{}ms\"", 100 + i)).collect();
    let text = format!(
        "{}\n[[assert]]\npairing = \"9s/9\"\nmax_missed = 0\n",
        GOOD.replace(
            "[\"500ms\", \"1s\"]",
            &format!("[{}]", intervals.join(", "))
        )
    );
    let e = error_of(&text);
    assert!(e.message.contains("600 pairings in all"), "{}", e.message);
    assert!(e.message.len() < 1_000, "{} bytes", e.message.len());
}

#[test]
fn ten_thousand_assertions_are_checked_and_each_keeps_its_line() {
    let mut text = GOOD.to_string();
    for _ in 0..10_000 {
        text.push_str("\n[[assert]]\nmax_missed = 0\n");
    }
    let plan = parse("many.toml", "many", &text).unwrap();
    assert_eq!(plan.asserts.len(), 10_000);
    let last = &plan.asserts[9_999].location;
    assert_eq!(last, &format!("many.toml:{}:1", text.lines().count() - 1));
    text.push_str("\n[[assert]]\nmax_missed = 0\n");
    assert!(error_of(&text).message.contains("over the bound of 10000"));
}

#[test]
fn a_tick_that_is_not_a_whole_number_of_milliseconds_is_refused() {
    for tick in ["500us", "1.5ms"] {
        let text = GOOD.replace("seeds = 2", &format!("seeds = 2\ntick = \"{tick}\""));
        let e = error_of(&text);
        assert!(
            e.message.contains("whole number of milliseconds"),
            "{}",
            e.message
        );
    }
}

#[test]
fn a_link_rate_and_queue_compile_per_direction_with_the_defaults_inherited() {
    let text = format!(
        "{GOOD}\n[network]\nrate = \"10mbit\"\nqueue = 50\n\
         [network.direction.\"server->clients\"]\nrate = 512000\n\
         [network.direction.\"clients->server\"]\nqueue = 20\n\
         [network.tcp]\nsend_buffer = \"1MiB\"\n"
    );
    let plan = parse("rate.toml", "rate", &text).unwrap();
    let net = plan.scenario(0).network;
    let rate = |from: &str, to: &str| {
        let d = &net.directions[&(from.to_string(), to.to_string())];
        d.rate.map(|r| (r.bits_per_s, r.queue))
    };
    assert_eq!(
        net.default.rate.map(|r| (r.bits_per_s, r.queue)),
        Some((10_000_000, 50))
    );
    assert_eq!(rate("server", "clients"), Some((512_000, 50)));
    assert_eq!(rate("clients", "server"), Some((10_000_000, 20)));
    assert_eq!(net.tcp.send_buffer, 1 << 20);
    // Without a rate, no link queues and the default send buffer is 4 MiB.
    let plain = parse("plain.toml", "plain", GOOD)
        .unwrap()
        .scenario(0)
        .network;
    assert!(!plain.has_rate());
    assert_eq!(plain.tcp.send_buffer, 4 << 20);
}

#[test]
fn a_rate_in_bytes_per_second_is_refused_where_it_is_written() {
    let text = format!("{GOOD}\n[network]\nrate = \"10mbps\"\n");
    let e = error_of(&text);
    assert_eq!((e.line, e.column), (line_of(&text, "rate ="), 8));
    assert!(e.message.contains("bytes per second"), "{}", e.message);
    assert!(e.message.contains("\"10mbit\""), "{}", e.message);
}

#[test]
fn a_direction_rate_that_is_not_a_rate_is_refused_naming_the_form() {
    let text = format!("{GOOD}\n[network.direction.\"server->clients\"]\nrate = \"fast\"\n");
    let e = error_of(&text);
    assert_eq!(e.line, line_of(&text, "rate = \"fast\""));
    assert!(e.message.contains("expected a rate"), "{}", e.message);
}

#[test]
fn an_empty_queue_or_a_queue_without_a_rate_is_refused() {
    let text = format!("{GOOD}\n[network]\nrate = \"1mbit\"\nqueue = 0\n");
    let e = error_of(&text);
    assert_eq!(e.line, line_of(&text, "queue = 0"));
    assert!(e.message.contains("at least 1 packet"), "{}", e.message);
    let text = format!("{GOOD}\n[network]\nqueue = 10\n");
    let e = error_of(&text);
    assert_eq!(e.line, line_of(&text, "queue = 10"));
    assert!(e.message.contains("queue without a rate"), "{}", e.message);
    let text = format!("{GOOD}\n[network.direction.\"server->clients\"]\nqueue = 10\n");
    let e = error_of(&text);
    assert_eq!(e.line, line_of(&text, "queue = 10"));
    assert!(e.message.contains("queue without a rate"), "{}", e.message);
}

#[test]
fn an_rto_floor_above_its_ceiling_is_refused() {
    let text = format!("{GOOD}\n[network.tcp]\nrto_min = \"121s\"\n");
    let e = error_of(&text);
    assert_eq!(e.line, line_of(&text, "rto_min"));
    assert!(
        e.message.contains("above the RTO's ceiling"),
        "{}",
        e.message
    );
    let text = format!("{GOOD}\n[network.tcp]\nrto_min = \"120s\"\n");
    assert!(parse("ok.toml", "ok", &text).is_ok());
}

#[test]
fn a_send_buffer_below_one_segment_is_refused() {
    let text = format!("{GOOD}\n[network.tcp]\nsend_buffer = \"1KiB\"\n");
    let e = error_of(&text);
    assert_eq!(e.line, line_of(&text, "send_buffer"));
    assert!(e.message.contains("below one segment"), "{}", e.message);
    let text = format!("{GOOD}\n[network.tcp]\nsend_buffer = \"4 MiB\"\n");
    let e = error_of(&text);
    assert!(e.message.contains("expected a size"), "{}", e.message);
}
