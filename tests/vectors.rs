//! The shared preprocessing vectors (tests/fixtures/preprocess-vectors.json, written by the
//! exporter's reference preprocessing): the runtime's independent implementation must turn
//! every raw request into exactly the same tensors. The exporter's tests read the same file.
//! Each vector names its package, a format-3 package (memory-mapped atv vocabularies and
//! catalogs, hashed buckets).

mod common;

use std::collections::BTreeMap;

use atrank::preprocess::Preprocessor;
use atrank::spec::Spec;
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    format: String,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    package: String,
    request: common::GoldenRequestRaw,
    tensors: BTreeMap<String, TensorJson>,
}

#[derive(Deserialize, PartialEq, Debug)]
struct TensorJson {
    shape: Vec<usize>,
    data: Vec<i64>,
}

#[test]
fn runtime_preprocessing_matches_the_shared_vectors() {
    let path = common::repo().join("tests/fixtures/preprocess-vectors.json");
    let all: Vectors = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(all.format, "atrank-preprocess-vectors");
    assert!(all.vectors.len() >= 50);
    let mut cache: BTreeMap<String, Preprocessor> = BTreeMap::new();
    let mut versions = std::collections::BTreeSet::new();
    for v in &all.vectors {
        let pre = cache.entry(v.package.clone()).or_insert_with(|| {
            let dir = common::repo().join(&v.package);
            let spec = Spec::read(&dir).unwrap_or_else(|e| panic!("{}: {e}", v.package));
            assert_eq!(spec.version, 3);
            versions.insert(spec.version);
            Preprocessor::load(&spec, &dir).unwrap_or_else(|e| panic!("{}: {e}", v.package))
        });
        let r = &v.request;
        let p = common::with_request(&r.behaviors, &r.candidates, r.request_time, |req| {
            pre.prepare(std::slice::from_ref(req))
        })
        .unwrap_or_else(|e| panic!("{}: {e}", r.name));
        let got: BTreeMap<String, TensorJson> = p
            .tensors
            .into_iter()
            .map(|t| {
                (
                    t.name,
                    TensorJson {
                        shape: t.shape,
                        data: t.data,
                    },
                )
            })
            .collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            v.tensors.keys().collect::<Vec<_>>(),
            "{}",
            r.name
        );
        for (name, want) in &v.tensors {
            assert_eq!(&got[name], want, "{} {}: {name}", v.package, r.name);
        }
    }
    eprintln!(
        "{} vectors over {} packages, spec versions {versions:?}",
        all.vectors.len(),
        cache.len()
    );
}
