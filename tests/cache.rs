//! The user-encoding cache (split encoder/scorer graphs): results identical with and without
//! the cache, on both backends; hits when a user comes back with the same history, misses when
//! the history or request time changes; the capacity bound holds.

mod common;

use atrank::{Backend, LoadOptions, Model};
use common::{packages, read_golden, request_tolerance, with_request};

fn check_backend(backend: Backend) {
    let pkg = &packages()[1]; // the multigroup fixture, with the split graphs
    assert!(common::has_split(pkg));
    let golden = read_golden(pkg);
    let mut opts = LoadOptions::new(backend);
    opts.cache_capacity = 8;
    let model = Model::load_with(pkg, &opts).unwrap();
    for round in 0..2 {
        for (k, req) in golden.requests.iter().enumerate() {
            // Any two float32 evaluations of this request's logits (cached or not, runtime or
            // trainer): its derived 2 D U M (docs/tolerances.md).
            let tol = request_tolerance(&golden, req);
            let key = format!("user-{k}");
            let (plain, cached) =
                with_request(&req.behaviors, &req.candidates, req.request_time, |r| {
                    (
                        model.score(r).unwrap(),
                        model.score_cached(&key, r).unwrap(),
                    )
                });
            for (i, (p, c)) in plain.iter().zip(&cached).enumerate() {
                assert!(
                    (f64::from(*p) - f64::from(*c)).abs() <= tol,
                    "{backend} round {round} {} cand {i}: {p} vs {c}",
                    req.name
                );
                assert!(
                    (f64::from(*c) - f64::from(req.scores[i])).abs() <= tol,
                    "{backend} {}: {c} vs trainer {}",
                    req.name,
                    req.scores[i]
                );
            }
        }
    }
    let stats = model.cache_stats();
    assert_eq!(stats.capacity, 8);
    assert!(stats.entries <= 8, "{stats:?}");
    // 22 distinct users twice through a cache of 8 in the same order: every lookup misses.
    assert_eq!(
        stats.hits + stats.misses,
        2 * golden.requests.len() as u64,
        "{stats:?}"
    );

    // The same user and history right away: a hit. A later request time changes the time
    // buckets, so the fingerprint: a miss.
    let req = &golden.requests[0];
    let before = model.cache_stats();
    with_request(&req.behaviors, &req.candidates, req.request_time, |r| {
        model.score_cached("again", r).unwrap()
    });
    with_request(&req.behaviors, &req.candidates, req.request_time, |r| {
        model.score_cached("again", r).unwrap()
    });
    with_request(
        &req.behaviors,
        &req.candidates,
        req.request_time + 30 * 86_400,
        |r| model.score_cached("again", r).unwrap(),
    );
    let after = model.cache_stats();
    assert_eq!(
        (after.hits - before.hits, after.misses - before.misses),
        (1, 2),
        "{after:?}"
    );
}

#[test]
fn cached_scores_equal_uncached_on_tract() {
    check_backend(Backend::Tract);
}

#[test]
fn cached_scores_equal_uncached_on_ort() {
    let Some(lib) = common::ort_library() else {
        return;
    };
    atrank::backend::ort::init(Some(&lib)).unwrap();
    check_backend(Backend::Ort);
}

#[test]
fn without_split_graphs_score_cached_is_score() {
    // A format-3 package may come without encoder/scorer: a copy of the fixture without them.
    let pkg = common::package_without_split(&packages()[0], "nosplit-cache");
    assert!(!common::has_split(&pkg));
    let model = Model::load(&*pkg, Backend::Tract).unwrap();
    let req = &read_golden(&pkg).requests[0];
    let (a, b) = with_request(&req.behaviors, &req.candidates, req.request_time, |r| {
        (model.score(r).unwrap(), model.score_cached("u", r).unwrap())
    });
    assert_eq!(a, b);
    assert_eq!(model.cache_stats(), atrank::CacheStats::default());
}

#[test]
fn eviction_drops_the_least_recently_used_user() {
    let pkg = &packages()[1];
    let golden = read_golden(pkg);
    let mut opts = LoadOptions::new(Backend::Tract);
    opts.cache_capacity = 2;
    let model = Model::load_with(pkg, &opts).unwrap();
    let req = &golden.requests[0];
    // Returns whether scoring `user` hit the cache.
    let hit = |user: &str| {
        let before = model.cache_stats().hits;
        with_request(&req.behaviors, &req.candidates, req.request_time, |r| {
            model.score_cached(user, r).unwrap()
        });
        model.cache_stats().hits > before
    };
    assert!(!hit("a") && !hit("b"));
    assert!(hit("a"), "a was just cached"); // a is now the most recently used
    assert!(!hit("c")); // evicts b, the least recently used, not a
    assert!(hit("a"), "a was used after b, so b went first");
    assert!(!hit("b"), "b was evicted");
    assert_eq!(model.cache_stats().entries, 2);
}
