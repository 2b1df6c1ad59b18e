//! `Spec::from_json` on arbitrary bytes (as UTF-8, lossily): it must never panic, and a spec it
//! accepts must satisfy what the rest of the crate relies on without re-checking it.
#![no_main]

use atrank::spec::{Spec, HARD_LIMIT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(spec) = Spec::from_json(&text) else {
        return;
    };
    // What preprocessing and the model index without checking again.
    assert!(!spec.groups.is_empty());
    assert!(spec.target < spec.groups.len());
    let target = spec.target_group();
    assert!(spec.group_index(&target.name) == Some(spec.target));
    for g in &spec.groups {
        assert!((1..=HARD_LIMIT).contains(&g.max_history));
        assert!(!g.features.is_empty(), "group {:?} has no features", g.name);
        for f in &g.features {
            assert!(f.table < spec.tables.len());
        }
    }
    assert_eq!(spec.candidate_inputs.first().map(|c| c.0), Some(0));
    for (f, _) in &spec.candidate_inputs {
        assert!(*f < target.features.len());
    }
    assert!((1..=HARD_LIMIT).contains(&spec.limits.max_candidates));
    assert!((1..=HARD_LIMIT).contains(&spec.limits.max_behaviors));
    assert!(spec.time_buckets.unit_seconds > 0);
    assert!(spec
        .time_buckets
        .boundaries
        .windows(2)
        .all(|w| w[0] <= w[1]));
    // Every produced tensor name is a graph input, and no two share one.
    let mut produced: Vec<&str> = Vec::new();
    for g in &spec.groups {
        produced.extend(g.features.iter().map(|f| f.input.as_str()));
        produced.extend([
            g.action_input.as_str(),
            g.time_input.as_str(),
            g.length_input.as_str(),
        ]);
    }
    produced.extend(spec.candidate_inputs.iter().map(|(_, n)| n.as_str()));
    let mut graph: Vec<&str> = spec.inputs.iter().map(String::as_str).collect();
    produced.sort_unstable();
    graph.sort_unstable();
    assert_eq!(produced, graph);
    // Package files stay inside the package.
    assert_eq!(spec.version, 3);
    let mut files = vec![spec.graph_file.as_str()];
    files.extend(spec.external_data.iter().map(String::as_str));
    files.extend(spec.tables.iter().map(|t| t.vocab.as_str()));
    for c in spec.groups.iter().filter_map(|g| g.catalog.as_ref()) {
        files.push(c.keys.as_str());
        files.extend(c.columns.iter().map(|(_, f)| f.as_str()));
        assert!(c.rows <= u64::from(u32::MAX));
    }
    // Every embedding table's rows (keys + 1 + hashed buckets) fit a u32 catalog column.
    for t in &spec.tables {
        assert!(t
            .size
            .checked_add(1)
            .and_then(|n| n.checked_add(t.hash_buckets))
            .is_some_and(|n| n <= u64::from(u32::MAX)));
    }
    if let Some(sp) = &spec.split {
        files.extend([sp.encoder_file.as_str(), sp.scorer_file.as_str()]);
        assert_eq!(sp.encoder_outputs.len(), 2);
    }
    // The manifest lists exactly the files the spec names.
    let mut named = files.clone();
    named.sort_unstable();
    named.dedup();
    assert!(named.iter().all(|f| spec.files.contains_key(*f)));
    assert_eq!(named.len(), spec.files.len());
    for f in files {
        let p = std::path::Path::new(f);
        assert!(!f.is_empty() && p.is_relative(), "{f:?}");
        assert!(
            p.components()
                .all(|c| matches!(c, std::path::Component::Normal(_))),
            "{f:?} leaves the package"
        );
    }
});
