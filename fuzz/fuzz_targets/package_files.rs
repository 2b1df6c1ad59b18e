//! The fast half of `package_load`: the same edited packages (see package_edits.rs), read by
//! `Spec::read` and `Preprocessor::load` only (no graph, so thousands of packages a second
//! instead of one), then one small request prepared plain and bucketed. The edits reach every
//! data file of format 3: spec.json, the `.atv` vocabularies and catalog keys, the `.u32`
//! catalog columns and `tables.bin` (read here only through the manifest's size and hash).
//!
//! Checked: nothing panics (libFuzzer aborts on a panic), errors are not `Panic`, and a
//! prepared batch fits the package it was loaded from: every tensor holds shape-product values,
//! each within 0..= its input's largest value in the loaded package (keys plus hashed buckets
//! of each table, number of actions and time buckets, `max_history` for lengths;
//! `atrank_fuzz::max_values`). A damaged vocabulary or catalog value met by a request is an
//! `InvalidPackage` error, never an out-of-range index.
#![no_main]
// package_edits.rs also serves package_load, which uses more of its imports and fields.
#![allow(unused_imports, dead_code)]

use atrank::preprocess::Preprocessor;
use atrank::spec::Spec;
use atrank_fuzz::max_values;
use libfuzzer_sys::fuzz_target;

const TARGET: &str = "package_files";
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
    let spec = Spec::read(&s.dir);
    not_a_panic(&spec, "spec");
    let Ok(spec) = spec else {
        return;
    };
    let pre = Preprocessor::load(&spec, &s.dir);
    not_a_panic(&pre, "preprocessor");
    let Ok(pre) = pre else {
        return;
    };
    let max = max_values(&spec, &s.dir);
    let history = [
        Behavior::item("i1", None, Some("like"), 881_000_000),
        Behavior::item("i2", Some("c1"), None, 881_100_000),
        Behavior::item("no-such-item", None, Some("click"), i64::MIN),
    ];
    let candidates = ["i1", "i5", "no-such-item"];
    let request = Request {
        behaviors: &history,
        candidates: &candidates,
        request_time: 881_251_000,
    };
    for (what, r) in [
        ("prepare", pre.prepare(&[request])),
        (
            "prepare_bucketed",
            pre.prepare_bucketed(&[request, request, request]),
        ),
    ] {
        not_a_panic(&r, what);
        let Ok(p) = r else {
            continue;
        };
        for t in &p.tensors {
            assert_eq!(
                t.data.len(),
                t.shape.iter().product::<usize>(),
                "{what}: {}",
                t.name
            );
            let top = max[&t.name] as i64;
            for &v in &t.data {
                assert!(
                    (0..=top).contains(&v),
                    "{what}: {} holds {v}, outside 0..={top}",
                    t.name
                );
            }
        }
    }
});
