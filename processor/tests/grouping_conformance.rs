//! Hash parity with Sentry's own grouping snapshots (`newstyle:2023-01-11`).
//!
//! Reads every `NAME.json` of the fixture corpus (env `OSPREY_GROUPING_FIXTURES`, else
//! `$CARGO_MANIFEST_DIR/../../shared/fixtures/grouping`), applies the harness keys
//! `_fingerprinting_rules` and `_grouping.enhancements`, and compares our `hashes` with the
//! snapshot's `contributing_hashes`. Every mismatch is printed with our contributing values
//! next to Sentry's. The test fails when the corpus is missing or fewer than `MIN_EXACT`
//! cases match exactly.

use std::path::PathBuf;

use processor::grouping::{compute, compute_hashes, compute_with_embedded_rules, GroupingConfig};
use processor::value::Value;

/// Exact matches achieved so far; raise it when the implementation improves.
const MIN_EXACT: usize = 87;

fn fixtures_dir() -> PathBuf {
    match std::env::var_os("OSPREY_GROUPING_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/grouping"),
    }
}

#[test]
fn grouping_hashes_match_sentry_snapshots() {
    let dir = fixtures_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "grouping fixtures not found at {} ({e}); set OSPREY_GROUPING_FIXTURES to the corpus directory",
            dir.display()
        )
    });
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.ends_with(".json") && !n.ends_with(".expected.json"))
        .map(|n| n.trim_end_matches(".json").to_owned())
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixtures in {}", dir.display());

    let mut exact = 0;
    let mut primary = 0;
    let mut failures = Vec::new();
    // Fixtures without rules of their own, grouped again below through one shared config.
    let mut plain: Vec<(String, Value, Vec<String>)> = Vec::new();
    for name in &names {
        let read = |file: String| -> Value {
            let text =
                std::fs::read_to_string(dir.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
        };
        let input = read(format!("{name}.json"));
        let expected = read(format!("{name}.expected.json"));
        let info = compute_with_embedded_rules(&input)
            .unwrap_or_else(|e| panic!("{name}: bad harness rules: {e}"));
        // A config kept across events replays stack-trace rule outcomes from its memo: the
        // replay must give exactly what a fresh evaluation gives.
        let config = GroupingConfig::from_rules(
            input.get("_fingerprinting_rules").filter(|v| !v.is_null()),
            input
                .get("_grouping")
                .and_then(|g| g.get("enhancements"))
                .and_then(Value::as_str),
        )
        .unwrap_or_else(|e| panic!("{name}: bad harness rules: {e}"));
        let fresh = compute(&input, &config);
        let replayed = compute(&input, &config);
        assert_eq!(fresh.render_text(), info.render_text(), "{name}: fresh");
        assert_eq!(
            replayed.render_text(),
            info.render_text(),
            "{name}: replayed"
        );
        // The pipeline's hashes-only path skips display-only work: same hashes, also when
        // replayed from the config's memo of whole results.
        assert_eq!(
            compute_hashes(&input, &config),
            info.hashes,
            "{name}: hashes only"
        );
        assert_eq!(
            compute_hashes(&input, &config),
            info.hashes,
            "{name}: hashes only, replayed"
        );
        let has_rules = |v: Option<&Value>| v.is_some_and(|v| !v.is_null());
        if !has_rules(input.get("_fingerprinting_rules"))
            && !has_rules(input.get("_grouping").and_then(|g| g.get("enhancements")))
        {
            plain.push((name.clone(), input.clone(), info.hashes.clone()));
        }
        let want: Vec<String> = expected["contributing_hashes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if info.hashes.first() == want.first() {
            primary += 1;
        }
        if info.hashes == want {
            exact += 1;
            continue;
        }
        let mut report = format!(
            "MISMATCH {name}\n  expected: {want:?}\n  got:      {:?}\n",
            info.hashes
        );
        if let Some(vars) = expected["variants"].as_object() {
            for (vname, v) in vars {
                let ours_name = vname.replace('_', "-");
                let ours = info.variants.get(&ours_name);
                let ours_hash = ours.and_then(|o| o.hash.clone());
                report.push_str(&format!(
                    "  variant {vname}: expected {:?}, got {:?}\n",
                    v["hash"].as_str(),
                    ours_hash
                ));
                if let (Some(cv), Some(o)) = (v.get("contributing_values"), ours) {
                    let got: Vec<&str> = o
                        .component
                        .as_ref()
                        .map(|c| c.contributing_values())
                        .unwrap_or_default();
                    report.push_str(&format!(
                        "    expected values: {cv}\n    our values:      {got:?}\n"
                    ));
                }
            }
        }
        failures.push(report);
    }
    // All rule-less fixtures through one config, twice: every memo sees the whole corpus, so a
    // key that confused two fixtures would hand one the other's hashes.
    assert!(plain.len() > 50, "{} fixtures without rules", plain.len());
    let shared = GroupingConfig::default();
    for pass in 0..2 {
        for (name, input, want) in &plain {
            assert_eq!(
                &compute_hashes(input, &shared),
                want,
                "{name}: shared memo, pass {pass}"
            );
        }
    }
    for f in &failures {
        println!("{f}");
    }
    let total = names.len();
    println!(
        "grouping conformance: {exact}/{total} exact ({:.1}%), primary hash {primary}/{total}",
        100.0 * exact as f64 / total as f64
    );
    assert!(
        exact >= MIN_EXACT,
        "only {exact} of {total} fixtures match exactly (floor {MIN_EXACT})"
    );
}
