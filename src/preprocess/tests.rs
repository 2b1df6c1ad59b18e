//! The preprocessing rules on a package built in memory: vocabularies and catalog keys from
//! [`crate::vocab::atv_bytes`] (byte-identical to the exporter's writer), expected indices
//! worked out by hand from docs/package-format-v3.md.

use super::*;
use crate::spec::{Spec, TimeBuckets};
use crate::vocab::atv_bytes;

fn buckets() -> TimeBuckets {
    TimeBuckets {
        unit_seconds: 86_400,
        offset: 1,
        boundaries: vec![2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
    }
}

/// Item vocabulary a, b, c, d (indices 1..=4); categories x, y (1, 2); a catalog of its own
/// keys a, b, c, q, z with categories x, y, x, none, y ("z" is not an item id, "q" has none).
const ITEMS: [&str; 4] = ["a", "b", "c", "d"];
const CATEGORIES: [&str; 2] = ["x", "y"];
const CATALOG_KEYS: [&str; 5] = ["a", "b", "c", "q", "z"];
const CATALOG_CATEGORY: [u32; 5] = [1, 2, 1, 0, 2];

fn spec(max_history: usize) -> Spec {
    // The manifest is required; these tests read no file, so its digests are placeholders
    // (sizes large enough for what the spec says).
    let entry = |bytes: usize| format!(r#"{{"sha256": "{}", "bytes": {bytes}}}"#, "0".repeat(64));
    let json = format!(
        r#"{{"format": "atrank-model-package", "spec_version": 3,
        "graph": {{"file": "model.onnx", "opset": 20, "output": "logits",
          "inputs": ["item_id", "item_category", "item_action", "item_time", "item_len",
                     "cand_id", "cand_category"]}},
        "hash": {{"function": "xxh3_64", "seed": 0}},
        "tables": {{"item_id": {{"vocab": "vocab/item_id.atv", "size": 4, "hash_buckets": 0}},
                   "category": {{"vocab": "vocab/category.atv", "size": 2, "hash_buckets": 0}}}},
        "groups": [{{"name": "item", "max_history": {max_history},
                    "features": [{{"name": "id", "table": "item_id", "input": "item_id"}},
                                 {{"name": "category", "table": "category",
                                   "input": "item_category"}}],
                    "inputs": {{"action": "item_action", "time_bucket": "item_time",
                               "length": "item_len"}},
                    "catalog": {{"keys": "catalog/item.atv", "rows": 5,
                                "columns": {{"category": "catalog/item.category.u32"}}}}}}],
        "target_group": "item",
        "candidate_inputs": {{"id": "cand_id", "category": "cand_category"}},
        "actions": ["like", "other"],
        "time_buckets": {{"unit_seconds": 86400, "offset": 1,
                         "boundaries": [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]}},
        "limits": {{"max_candidates": 3, "max_behaviors": 5}},
        "files": {{"model.onnx": {model}, "vocab/item_id.atv": {items},
                  "vocab/category.atv": {categories}, "catalog/item.atv": {keys},
                  "catalog/item.category.u32": {column}}}}}"#,
        model = entry(1),
        items = entry(1000),
        categories = entry(1000),
        keys = entry(1000),
        column = entry(20),
    );
    Spec::from_json(&json).unwrap()
}

fn table(name: &str, keys: &[&str]) -> Table {
    Table {
        atv: Atv::open(atv_bytes(keys).unwrap(), name, Some(keys.len() as u64)).unwrap(),
        hash_buckets: 0,
        seed: 0,
    }
}

/// The spec, tables and catalog of [`preprocessor`].
fn parts(max_history: usize) -> (Spec, Vec<Table>, Vec<Option<GroupCatalog>>) {
    let spec = spec(max_history);
    // Tables in the spec's (name) order: category, item_id.
    let tables = vec![
        table("vocab/category.atv", &CATEGORIES),
        table("vocab/item_id.atv", &ITEMS),
    ];
    assert_eq!(spec.tables[0].name, "category");
    let column: Vec<u8> = CATALOG_CATEGORY
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let catalog = Catalog {
        keys: table("catalog/item.atv", &CATALOG_KEYS).atv,
        columns: vec![(
            1,
            Column::open(column, "catalog/item.category.u32", 5, tables[0].rows()).unwrap(),
        )],
    };
    let groups = vec![Some(GroupCatalog {
        catalog,
        keys_are_ids: false,
    })];
    (spec, tables, groups)
}

fn preprocessor(max_history: usize) -> Preprocessor {
    let (spec, tables, groups) = parts(max_history);
    Preprocessor::assemble(&spec, tables, groups, RESOLVE_MAX_IDS)
}

/// `p` without its resolved features: every object takes the full look-up.
pub(super) fn unresolved(p: &Preprocessor) -> Preprocessor {
    let mut q = p.clone();
    q.resolved = vec![None; q.resolved.len()];
    q
}

fn col<'p>(p: &'p Prepared, name: &str) -> &'p [i64] {
    &p.get(name).unwrap().data
}

fn len_of(p: &Prepared) -> usize {
    p.get("item_id").unwrap().shape[1]
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
fn key_k_maps_to_k_plus_1_unknown_to_0_and_actions_likewise() {
    let t = table("vocab/v.atv", &["10", "7"]);
    assert_eq!(t.index("10").unwrap(), 1);
    assert_eq!(t.index("7").unwrap(), 2);
    assert_eq!(t.index("8").unwrap(), 0);
    assert_eq!(t.index("").unwrap(), 0);
    let actions = Actions::new(&["like".to_owned(), "other".to_owned()]);
    assert_eq!(
        (actions.get("like"), actions.get("other"), actions.get("x")),
        (1, 2, 0)
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
    assert_eq!(col(&out, "item_id"), vec![3, 0]);
    assert_eq!(
        col(&out, "item_category"),
        vec![1, 0],
        "c from catalog (x=1); unknown item -> 0"
    );
    assert_eq!(col(&out, "item_action"), vec![1, 0], "unknown action -> 0");
    assert_eq!(
        col(&out, "item_time"),
        vec![1, 1],
        "d = 3 and d = 2 both pass only the boundary 2"
    );
    assert_eq!(col(&out, "item_len"), vec![2]);
    assert_eq!(col(&out, "cand_id"), vec![2, 0, 0]);
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
    assert_eq!(col(&out, "item_id"), vec![4, 1, 3]);
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
    assert_eq!(col(&out, "item_len"), vec![0]);
    assert_eq!(col(&out, "item_id"), vec![0]);
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
    assert_eq!(col(&out, "item_id"), vec![1, 0, 1, 2]);
    assert_eq!(col(&out, "item_len"), vec![1, 2]);
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
    assert_eq!(col(&out, "cand_id"), [1, 0, 1, 2]);
}

#[test]
fn a_catalog_column_of_the_wrong_length_is_refused() {
    for len in [0, 19, 21] {
        let e = Column::open(vec![0u8; len], "catalog/item.category.u32", 5, 3).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidPackage);
        assert!(
            e.to_string().contains(&format!(
                "catalog/item.category.u32: {len} bytes, expected 4 x 5 rows"
            )),
            "{e}"
        );
    }
}

#[test]
fn a_group_without_a_catalog_gets_missing_features() {
    let (spec, tables, _) = parts(4);
    let p = Preprocessor::assemble(&spec, tables, vec![None], RESOLVE_MAX_IDS);
    let own = [("category", "y")];
    let behaviors = [
        Behavior::item("a", None, None, 1),
        Behavior {
            features: &own,
            ..Behavior::item("c", None, None, 2)
        },
    ];
    let out = p
        .prepare(&[Request {
            behaviors: &behaviors,
            candidates: &["a", "z"],
            request_time: 3,
        }])
        .unwrap();
    assert_eq!(col(&out, "item_id"), [1, 3]);
    assert_eq!(col(&out, "item_category"), [0, 2]);
    assert_eq!(col(&out, "cand_category"), [0, 0]);
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
    let id = [("id", "b")];
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
    assert_eq!(col(&prepared, "item_category"), &[2]);
}

#[test]
fn bucketed_histories_are_powers_of_two_and_a_cap_above_16_a_multiple_of_16() {
    // (longest, cap) -> padded length
    for (longest, cap, want) in [
        (3, 50, 4),
        (16, 50, 16),
        (17, 50, 32),
        (33, 50, 64), // the cap 50 rounded up to 64: one SIMD-aligned row of keys
        (50, 50, 64),
        (64, 50, 64), // a batch already longer than the cap keeps its power of two
        (10, 12, 12), // a cap of 16 or less stays as it is
        (90, 100, 112),
        (1, 1, 1),
    ] {
        assert_eq!(
            Preprocessor::bucketed_history(true, longest, cap),
            want,
            "longest {longest} cap {cap}"
        );
        // never beyond the power of two, so tract's plans do not multiply
        assert!(want <= longest.next_power_of_two().max(cap.min(16)));
        // without bucketing (ONNX Runtime): the longest history itself
        assert_eq!(Preprocessor::bucketed_history(false, longest, cap), longest);
    }
    // a bucketed request of 50 behaviors on a model of max_history 50
    let mut p = preprocessor(50);
    p.spec.limits.max_behaviors = 1000;
    let behaviors: Vec<Behavior<'_>> = (0..50)
        .map(|k| Behavior::item("a", None, Some("like"), 100 * DAY - k))
        .collect();
    let req = Request {
        behaviors: &behaviors,
        candidates: &["b"],
        request_time: 100 * DAY,
    };
    let padded = p.prepare_bucketed(std::slice::from_ref(&req)).unwrap();
    let exact = p.prepare(std::slice::from_ref(&req)).unwrap();
    assert_eq!((len_of(&padded), len_of(&exact)), (64, 50));
    // the length input still says 50: the graph masks the 14 padded keys
    assert_eq!(col(&padded, "item_len"), vec![50]);
    assert_eq!(col(&padded, "item_id")[..50], col(&exact, "item_id")[..]);
    assert!(col(&padded, "item_id")[50..].iter().all(|&i| i == 0));
}

#[test]
fn resolved_features_are_the_full_look_ups() {
    let p = preprocessor(5);
    let res = p.resolved[0].as_deref().expect("4 ids are resolved");
    // Every id with the catalog's category (its own keys: "d" has no row, so 0).
    for (id, want) in [("a", [1, 1]), ("b", [2, 2]), ("c", [3, 1]), ("d", [4, 0])] {
        assert_eq!(res.get(id), Some(&want[..]), "{id}");
    }
    // Catalog keys that are not ids, and unknown ids, are not resolved.
    for id in ["q", "z", "e", ""] {
        assert_eq!(res.get(id), None, "{id}");
    }
    // The same inputs with and without them, on every mix: resolved ids, a catalog-only key
    // ("z": unknown id, category y), unknown ids, and callers' own categories and features.
    let q = unresolved(&p);
    assert!(q.resolved[0].is_none());
    let own = [("category", "x")];
    let behaviors = [
        Behavior::item("a", None, Some("like"), 10),
        Behavior::item("z", None, None, 20),
        Behavior::item("d", Some("y"), Some("other"), 30),
        Behavior {
            features: &own,
            ..Behavior::item("b", None, None, 40)
        },
        Behavior::item("nope", None, Some("like"), 50),
    ];
    for candidates in [&["a", "b", "c"][..], &["d", "z", "q"], &["", "e", "a"]] {
        let reqs = [
            Request {
                behaviors: &behaviors,
                candidates,
                request_time: 100,
            },
            Request {
                behaviors: &behaviors[1..3],
                candidates: &candidates[1..],
                request_time: 60,
            },
        ];
        assert_eq!(p.prepare(&reqs).unwrap(), q.prepare(&reqs).unwrap());
        assert_eq!(
            p.prepare_bucketed(&reqs).unwrap(),
            q.prepare_bucketed(&reqs).unwrap()
        );
    }
    // Through the catalog: z's category is y (2) for both.
    let out = p
        .prepare(&[Request {
            behaviors: &[],
            candidates: &["z", "d"],
            request_time: 0,
        }])
        .unwrap();
    assert_eq!(col(&out, "cand_id"), [0, 4]);
    assert_eq!(col(&out, "cand_category"), [2, 0]);
}

#[test]
fn only_groups_up_to_the_cap_are_resolved() {
    let (spec, tables, groups) = parts(5);
    let at_cap = Preprocessor::assemble(&spec, tables.clone(), groups.clone(), ITEMS.len());
    assert!(at_cap.resolved[0].is_some());
    let above = Preprocessor::assemble(&spec, tables, groups, ITEMS.len() - 1);
    assert!(above.resolved[0].is_none());
}
