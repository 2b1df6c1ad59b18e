//! `Model::load_with` (tract) on model packages made from a fixture (`tiny` or
//! `tiny-multigroup`, chosen by the input) with the fuzz input's edits applied: spec.json
//! fields set to other values (JSON-aware), byte and structured edits of spec.json, the atv
//! vocabularies and catalog keys, the u32 catalog columns and tables.bin (keys added, out of
//! order or repeated; header fields, offsets, column values and table bytes overwritten;
//! truncation), and (a separate, rarer edit) splices into the graph files. When the package loads, one
//! simple request is scored through `score`, `score_batch` and `score_cached`.
//!
//! Checked: nothing panics (libFuzzer aborts on a panic), loading and scoring return
//! `Ok` or an `Err` whose code is not `Panic`, and scores come one per candidate.
//!
//! The package is written to one scratch directory per process, rewritten for every input;
//! spec.json's manifest is recomputed after the edits unless the input asks to leave it stale.
//! Every package that loads is scored: a package whose vocabularies, actions or time buckets
//! outgrow its graph's embedding tables must be refused at load (it used to load, then fail or
//! panic in tract's Gather at every score).
#![no_main]

use libfuzzer_sys::fuzz_target;

const TARGET: &str = "package_load";
include!("package_edits.rs");

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    if input.edits.len() > 8 {
        return;
    }
    let s = state();
    let base = &s.bases[usize::from(input.multigroup)];
    let mut files = base.fixture.files.clone();
    for e in &input.edits {
        apply(base, &mut files, e);
    }
    if !input.stale_manifest {
        rehash(&mut files);
    }
    write_package(&s.dir, &files);
    let mut options = LoadOptions::new(Backend::Tract);
    options.cache_capacity = usize::from(input.cache_capacity % 4);
    options.tract_plans = usize::from(input.tract_plans % 3);
    let loaded = Model::load_with(&s.dir, &options);
    not_a_panic(&loaded, "load");
    let Ok(model) = loaded else {
        return;
    };
    let history = [
        Behavior::item("i1", None, Some("like"), 881_000_000),
        Behavior::item("i2", Some("c1"), None, 881_100_000),
        Behavior::item("no-such-item", None, Some("click"), 881_200_000),
    ];
    let candidates = ["i1", "i5", "no-such-item"];
    let request = Request {
        behaviors: &history,
        candidates: &candidates,
        request_time: 881_251_000,
    };
    for (what, r) in [
        ("score", model.score(&request)),
        ("score_cached", model.score_cached("user", &request)),
        ("score_cached again", model.score_cached("user", &request)),
    ] {
        not_a_panic(&r, what);
        if let Ok(scores) = r {
            assert_eq!(scores.len(), candidates.len(), "{what}");
        }
    }
    let batch = model.score_batch(&[request, request]);
    not_a_panic(&batch, "score_batch");
    if let Ok(rows) = batch {
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.len() == candidates.len()));
    }
});
