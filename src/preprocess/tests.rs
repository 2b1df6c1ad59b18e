use super::*;
use crate::spec::{Spec, TimeBuckets};

fn buckets() -> TimeBuckets {
    TimeBuckets {
        unit_seconds: 86_400,
        offset: 1,
        boundaries: vec![2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
    }
}

fn spec(max_history: usize) -> Spec {
    // The manifest is required; these tests read no file, so its digests are placeholders.
    let entry = format!(r#"{{"sha256": "{}", "bytes": 0}}"#, "0".repeat(64));
    let files = format!(
        r#"{{"model.onnx": {entry}, "vocab/item.txt": {entry}, "vocab/category.txt": {entry},
            "catalog.tsv": {entry}}}"#
    );
    let json = format!(
        r#"{{"format": "atrank-model-package", "spec_version": 1,
        "graph": {{"file": "model.onnx", "opset": 20, "output": "logits",
          "inputs": {{"history": {{"item": "hist_item", "category": "hist_category",
                                  "action": "hist_action", "time_bucket": "hist_time"}},
                     "history_length": "hist_len",
                     "candidate": {{"item": "cand_item", "category": "cand_category"}}}}}},
        "groups": [{{"name": "item", "max_history": {max_history},
                    "features": [{{"name": "item", "vocab": "vocab/item.txt"}},
                                 {{"name": "category", "vocab": "vocab/category.txt"}}]}}],
        "actions": ["like", "other"],
        "time_buckets": {{"unit_seconds": 86400, "offset": 1,
                         "boundaries": [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]}},
        "catalog": {{"file": "catalog.tsv", "key": "item", "features": ["category"]}},
        "limits": {{"max_candidates": 3, "max_behaviors": 5}},
        "files": {files}}}"#
    );
    Spec::from_json(&json).unwrap()
}

fn preprocessor(max_history: usize) -> Preprocessor {
    let spec = spec(max_history);
    let tables = vec![
        TableIndex::Lines(Vocab::from_ids(["a", "b", "c", "d"].map(String::from)).unwrap()),
        TableIndex::Lines(Vocab::from_ids(["x", "y"].map(String::from)).unwrap()),
    ];
    let catalog = parse_catalog(
        "a\tx\nb\ty\nc\tx\nz\ty\nq\tnot-a-category\n",
        false,
        &spec.groups[0],
        &tables,
    )
    .unwrap();
    let groups = GroupTables::build(catalog, 2, &tables[0]).unwrap();
    Preprocessor {
        spec,
        tables,
        groups: vec![GroupCatalog::Tsv(groups)],
        actions: Vocab::from_ids(["like", "other"].map(String::from)).unwrap(),
    }
}

fn col<'p>(p: &'p Prepared, name: &str) -> &'p [i64] {
    &p.get(name).unwrap().data
}

fn len_of(p: &Prepared) -> usize {
    p.get("hist_item").unwrap().shape[1]
}

const DAY: i64 = 86_400;

#[test]
fn time_buckets_follow_the_original_gap_rule() {
    let tb = buckets();
    let req = 1000 * DAY + 5;
    // Same day: d = 1 -> below the first boundary (2).
    assert_eq!(time_bucket(&tb, req, req), 0);
    // One day earlier: d = 2 -> one boundary (2) <= d.
    assert_eq!(time_bucket(&tb, req, req - DAY), 1);
    // Three days: d = 4 -> boundaries 2, 4.
    assert_eq!(time_bucket(&tb, req, req - 3 * DAY), 2);
    // Very old: all 12 boundaries.
    assert_eq!(time_bucket(&tb, req, req - 5000 * DAY), 12);
    // In the future: bucket 0.
    assert_eq!(time_bucket(&tb, req, req + 10 * DAY), 0);
    // Day boundaries use floor division, also before 1970.
    assert_eq!(
        time_bucket(&tb, 0, -1),
        1,
        "t=-1 lies on day -1, one day before day 0"
    );
    assert_eq!(time_bucket(&tb, DAY - 1, 0), 0, "same day");
}

#[test]
fn vocab_maps_line_k_to_k_plus_1_and_unknown_to_0() {
    let v = Vocab::from_ids(["10", "7"].map(String::from)).unwrap();
    assert_eq!(v.get("10"), 1);
    assert_eq!(v.get("7"), 2);
    assert_eq!(v.get("8"), 0);
    assert_eq!(v.get(""), 0);
    assert!(
        Vocab::from_ids(["1", "1"].map(String::from)).is_err(),
        "duplicates are rejected"
    );
}

#[test]
fn prepare_sorts_truncates_and_looks_up_categories() {
    let p = preprocessor(2);
    let t = 100 * DAY;
    let behaviors = [
        Behavior::item("c", None, Some("like"), t - 2 * DAY),
        Behavior::item("a", Some("y"), Some("other"), t - 9 * DAY),
        Behavior::item("zz", None, Some("shrug"), t - DAY),
    ];
    let req = Request {
        behaviors: &behaviors,
        candidates: &["b", "nope", "z"],
        request_time: t,
    };
    let out = p.prepare(&[req]).unwrap();
    assert_eq!((out.users, len_of(&out), out.candidates), (1, 2, 3));
    // Oldest ("a", 9 days) is dropped; order is oldest first: c, then zz.
    assert_eq!(col(&out, "hist_item"), vec![3, 0]);
    assert_eq!(
        col(&out, "hist_category"),
        vec![1, 0],
        "c from catalog (x=1); unknown item -> 0"
    );
    assert_eq!(col(&out, "hist_action"), vec![1, 0], "unknown action -> 0");
    assert_eq!(
        col(&out, "hist_time"),
        vec![1, 1],
        "d = 3 and d = 2 both pass only the boundary 2"
    );
    assert_eq!(col(&out, "hist_len"), vec![2]);
    assert_eq!(col(&out, "cand_item"), vec![2, 0, 0]);
    // "z" is not in the item vocabulary but the catalog knows its category.
    assert_eq!(col(&out, "cand_category"), vec![2, 0, 2]);
}

#[test]
fn equal_timestamps_keep_caller_order() {
    let p = preprocessor(10);
    let b = |item| Behavior::item(item, None, None, 5);
    let behaviors = [b("d"), b("a"), b("c")];
    let out = p
        .prepare(&[Request {
            behaviors: &behaviors,
            candidates: &["a"],
            request_time: 5,
        }])
        .unwrap();
    assert_eq!(col(&out, "hist_item"), vec![4, 1, 3]);
}

#[test]
fn empty_history_is_one_padded_position_with_length_0() {
    let p = preprocessor(4);
    let out = p
        .prepare(&[Request {
            behaviors: &[],
            candidates: &["a"],
            request_time: 0,
        }])
        .unwrap();
    assert_eq!(len_of(&out), 1);
    assert_eq!(col(&out, "hist_len"), vec![0]);
    assert_eq!(col(&out, "hist_item"), vec![0]);
}

#[test]
fn batches_pad_to_the_longest_history() {
    let p = preprocessor(4);
    let one = [Behavior::item("a", None, None, 0)];
    let two = [one[0], Behavior::item("b", None, None, 1)];
    let reqs = [
        Request {
            behaviors: &one,
            candidates: &["a"],
            request_time: 0,
        },
        Request {
            behaviors: &two,
            candidates: &["b"],
            request_time: 0,
        },
    ];
    let out = p.prepare(&reqs).unwrap();
    assert_eq!(len_of(&out), 2);
    assert_eq!(col(&out, "hist_item"), vec![1, 0, 1, 2]);
    assert_eq!(col(&out, "hist_len"), vec![1, 2]);
}

#[test]
fn limits_are_enforced_with_messages_that_say_what() {
    let p = preprocessor(4);
    let none: [&str; 0] = [];
    let e = p
        .prepare(&[Request {
            behaviors: &[],
            candidates: &none,
            request_time: 0,
        }])
        .unwrap_err();
    assert_eq!(e.code(), crate::ErrorCode::InvalidArgument);
    assert!(e.to_string().contains("candidates is empty"), "{e}");
    let many = ["a"; 4];
    let e = p
        .prepare(&[Request {
            behaviors: &[],
            candidates: &many,
            request_time: 0,
        }])
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("4 candidates exceed this model's limit of 3"),
        "{e}"
    );
    let b = Behavior::item("a", None, None, 0);
    let lots = [b; 6];
    let e = p
        .prepare(&[Request {
            behaviors: &lots,
            candidates: &["a"],
            request_time: 0,
        }])
        .unwrap_err();
    assert!(e.to_string().contains("6 behaviors exceed"), "{e}");
    let reqs = [
        Request {
            behaviors: &[],
            candidates: &["a"],
            request_time: 0,
        },
        Request {
            behaviors: &[],
            candidates: &["a", "b"],
            request_time: 0,
        },
    ];
    // Different candidate counts are padded with the unknown object (index 0).
    let out = p.prepare(&reqs).unwrap();
    assert_eq!(out.candidates, 2);
    assert_eq!(col(&out, "cand_item"), [1, 0, 1, 2]);
}

#[test]
fn catalog_rejects_lines_without_a_tab() {
    let categories = Vocab::from_ids(["x".to_string()]).unwrap();
    let spec = spec(4);
    let tables = vec![
        TableIndex::Lines(Vocab::default()),
        TableIndex::Lines(categories),
    ];
    let e = parse_catalog("a\tx\nbroken line\n", false, &spec.groups[0], &tables).unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[test]
fn a_feature_the_group_does_not_have_is_refused_and_a_known_one_overrides_the_catalog() {
    let p = preprocessor(10);
    let typo = [("categroy", "y")];
    let behaviors = [Behavior {
        features: &typo,
        ..Behavior::item("a", None, None, 100)
    }];
    let req = Request {
        behaviors: &behaviors,
        candidates: &["a"],
        request_time: 200,
    };
    let e = p.prepare(&[req]).unwrap_err();
    assert_eq!(e.code(), crate::ErrorCode::InvalidArgument);
    let msg = e.to_string();
    assert!(
        msg.contains("behaviors[0].features")
            && msg.contains("\"categroy\"")
            && msg.contains("category"),
        "{msg}"
    );
    // The id feature is not a caller feature either: it is `id`.
    let id = [("item", "b")];
    let behaviors = [Behavior {
        features: &id,
        ..Behavior::item("a", None, None, 100)
    }];
    let req = Request {
        behaviors: &behaviors,
        candidates: &["a"],
        request_time: 200,
    };
    assert!(p.prepare(&[req]).is_err());
    // A known feature: "a" has category x (index 1) in the catalog; the caller says y (2).
    let own = [("category", "y")];
    let behaviors = [Behavior {
        features: &own,
        ..Behavior::item("a", None, None, 100)
    }];
    let req = Request {
        behaviors: &behaviors,
        candidates: &["a"],
        request_time: 200,
    };
    let prepared = p.prepare(&[req]).unwrap();
    assert_eq!(col(&prepared, "hist_category"), &[2]);
}
