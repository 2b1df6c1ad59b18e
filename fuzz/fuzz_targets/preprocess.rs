//! `Preprocessor::prepare` and `prepare_bucketed` on fuzzed batches of requests, against both
//! fixture packages' real vocabularies and catalogs (loaded once per process).
//!
//! Checked on every input, against an independent model of the documented rules
//! (docs/package-format-v3.md, `Preprocessor` docs):
//! - it errors exactly when a request breaks a documented rule (no candidates, too many
//!   candidates or behaviors, an unknown group, a feature its group does not have), and then
//!   with `InvalidArgument`;
//! - on success: the batch and tensor shapes, every index within its vocabulary (or actions,
//!   time buckets), lengths = min(behaviors of the group, max_history), zero padding, the ids of
//!   the kept behaviors (stable sort by time, most recent max_history) and of the candidates;
//! - the bucketed batch holds the plain batch in its top-left corner and zeros elsewhere.
#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use atrank::preprocess::{Behavior, Prepared, Preprocessor, Request};
use atrank::spec::Spec;
use atrank::ErrorCode;
use atrank_fuzz::{Fixture, Vocab, FIXTURES};
use libfuzzer_sys::fuzz_target;

struct Package {
    spec: Spec,
    pre: Preprocessor,
    /// The spec's tables, read independently of the preprocessor.
    vocabs: Vec<Vocab>,
    pool: Vec<String>,
}

fn packages() -> &'static [Package; 2] {
    static P: OnceLock<[Package; 2]> = OnceLock::new();
    P.get_or_init(|| {
        FIXTURES.map(|name| {
            let f = Fixture::read(name);
            let pre = Preprocessor::load(&f.spec, &f.dir).expect("fixture preprocessor");
            let vocabs = f
                .spec
                .tables
                .iter()
                .map(|t| {
                    let bytes = f.files.get(&t.vocab).expect("fixture vocab");
                    Vocab::read(bytes, t.hash_buckets, f.spec.hash_seed).expect("fixture vocab")
                })
                .collect();
            let pool = f.pool();
            Package {
                spec: f.spec.clone(),
                pre,
                vocabs,
                pool,
            }
        })
    })
}

/// A string: one of the package's own (ids, names, actions) or any other.
#[derive(Debug)]
enum Str {
    Known(u16),
    Raw(String),
}

impl<'a> Arbitrary<'a> for Str {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(if u.ratio(3, 4)? {
            Str::Known(u.arbitrary()?)
        } else {
            Str::Raw(u.arbitrary()?)
        })
    }
}

impl Str {
    fn get<'p>(&'p self, pool: &'p [String]) -> &'p str {
        match self {
            Str::Known(k) => &pool[*k as usize % pool.len()],
            Str::Raw(s) => s,
        }
    }
}

/// A timestamp: extremes, near the request time, or anything.
#[derive(Debug, Arbitrary)]
enum Time {
    Extreme(u8),
    Near(i32),
    Raw(i64),
}

const EXTREMES: [i64; 8] = [
    i64::MIN,
    i64::MIN + 1,
    -1,
    0,
    1,
    i64::MAX - 1,
    i64::MAX,
    881_251_000,
];

impl Time {
    fn get(&self, request_time: i64) -> i64 {
        match self {
            Time::Extreme(k) => EXTREMES[*k as usize % EXTREMES.len()],
            Time::Near(d) => request_time.saturating_add(i64::from(*d)),
            Time::Raw(t) => *t,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Beh {
    group: Option<Str>,
    id: Str,
    category: Option<Str>,
    features: Vec<(Str, Str)>,
    action: Option<Str>,
    time: Time,
}

/// Sizes at the package limits, built by repetition (cheap: the strings are shared).
#[derive(Debug, Arbitrary)]
enum Bulk {
    None,
    /// `max_candidates - 1 + (k % 3)` candidates (repeating the request's own).
    Candidates(u8),
    /// `max_behaviors - 1 + (k % 3)` behaviors (repeating the request's own).
    Behaviors(u8),
}

#[derive(Debug, Arbitrary)]
struct Req {
    behaviors: Vec<Beh>,
    candidates: Vec<Str>,
    time: Time,
    bulk: Bulk,
}

#[derive(Debug, Arbitrary)]
struct Input {
    multigroup: bool,
    requests: Vec<Req>,
}

/// One request's borrowed strings.
struct Built<'a> {
    behaviors: Vec<Behavior<'a>>,
    candidates: Vec<&'a str>,
    request_time: i64,
}

fn build<'a>(r: &'a Req, feats: &'a [Vec<(&'a str, &'a str)>], p: &'a Package) -> Built<'a> {
    let request_time = r.time.get(881_251_000);
    let mut behaviors: Vec<Behavior<'a>> = r
        .behaviors
        .iter()
        .zip(feats)
        .map(|(b, f)| Behavior {
            group: b.group.as_ref().map(|g| g.get(&p.pool)),
            id: b.id.get(&p.pool),
            category: b.category.as_ref().map(|c| c.get(&p.pool)),
            features: f,
            action: b.action.as_ref().map(|a| a.get(&p.pool)),
            timestamp: b.time.get(request_time),
        })
        .collect();
    let mut candidates: Vec<&'a str> = r.candidates.iter().map(|c| c.get(&p.pool)).collect();
    let limits = &p.spec.limits;
    match r.bulk {
        Bulk::None => {}
        Bulk::Candidates(k) => {
            let n = limits.max_candidates - 1 + k as usize % 3;
            let fill = candidates.first().copied().unwrap_or("i1");
            candidates = (0..n)
                .map(|i| candidates.get(i).copied().unwrap_or(fill))
                .collect();
        }
        Bulk::Behaviors(k) => {
            let n = limits.max_behaviors - 1 + k as usize % 3;
            let fill = behaviors
                .first()
                .copied()
                .unwrap_or_else(|| Behavior::item("i1", None, None, 0));
            behaviors = (0..n)
                .map(|i| behaviors.get(i).copied().unwrap_or(fill))
                .collect();
        }
    }
    Built {
        behaviors,
        candidates,
        request_time,
    }
}

/// Whether the documented rules reject `r`.
fn invalid(p: &Package, r: &Request<'_>) -> bool {
    let spec = &p.spec;
    if r.candidates.is_empty()
        || r.candidates.len() > spec.limits.max_candidates
        || r.behaviors.len() > spec.limits.max_behaviors
    {
        return true;
    }
    r.behaviors.iter().any(|b| {
        let g = match b.group {
            None => spec.target,
            Some(name) => match spec.group_index(name) {
                Some(g) => g,
                None => return true,
            },
        };
        let known = &spec.groups[g].features[1..];
        b.features
            .iter()
            .any(|(name, _)| !known.iter().any(|f| f.name == *name))
    })
}

fn tensor<'p>(p: &'p Prepared, name: &str) -> &'p atrank::preprocess::Tensor {
    p.get(name).unwrap_or_else(|| panic!("no tensor {name:?}"))
}

/// Checks a successful `prepare` / `prepare_bucketed` result against the requests.
fn check(p: &Package, requests: &[Request<'_>], out: &Prepared, bucket: bool) {
    let spec = &p.spec;
    let b = requests.len();
    let n_max = requests
        .iter()
        .map(|r| r.candidates.len())
        .max()
        .unwrap_or(0);
    if bucket {
        assert_eq!(out.users, b.next_power_of_two());
        let cap = spec.limits.max_candidates.max(n_max);
        assert_eq!(out.candidates, n_max.next_power_of_two().min(cap));
    } else {
        assert_eq!(out.users, b);
        assert_eq!(out.candidates, n_max);
    }
    let rows = out.users;
    let mut expected_names = Vec::new();
    for (g, group) in spec.groups.iter().enumerate() {
        // The model of the rules: this group's behaviors, stable-sorted by time, the most
        // recent max_history kept.
        let kept: Vec<Vec<&Behavior<'_>>> = requests
            .iter()
            .map(|r| {
                let mut list: Vec<&Behavior<'_>> = r
                    .behaviors
                    .iter()
                    .filter(|b| {
                        b.group
                            .map_or(spec.target, |n| spec.group_index(n).expect("checked"))
                            == g
                    })
                    .collect();
                list.sort_by_key(|b| b.timestamp);
                let skip = list.len().saturating_sub(group.max_history);
                list.split_off(skip)
            })
            .collect();
        let longest = kept.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let len = tensor(out, &group.length_input);
        assert_eq!(len.shape, [rows]);
        let l = tensor(out, &group.action_input).shape[1];
        if bucket {
            // the next power of two, capped; a length above 16 then a multiple of 16
            let b = longest
                .next_power_of_two()
                .min(group.max_history.max(longest));
            let want = if b > 16 { b.div_ceil(16) * 16 } else { b };
            assert_eq!(l, want);
        } else {
            assert_eq!(l, longest);
        }
        for u in 0..rows {
            let want = kept.get(u).map_or(0, Vec::len);
            assert_eq!(
                len.data[u], want as i64,
                "group {} row {u} length",
                group.name
            );
        }
        let mut names: Vec<(&str, usize)> = group
            .features
            .iter()
            .map(|f| (f.input.as_str(), p.vocabs[f.table].max_index()))
            .collect();
        names.push((group.action_input.as_str(), spec.actions.len()));
        names.push((
            group.time_input.as_str(),
            spec.time_buckets.boundaries.len(),
        ));
        for (name, max) in names {
            let t = tensor(out, name);
            assert_eq!(t.shape, [rows, l], "{name}");
            assert_eq!(t.data.len(), rows * l);
            for u in 0..rows {
                let real = kept.get(u).map_or(0, Vec::len);
                for j in 0..l {
                    let v = t.data[u * l + j];
                    assert!(
                        (0..=max as i64).contains(&v),
                        "{name}[{u},{j}] = {v} outside 0..={max}"
                    );
                    if j >= real {
                        assert_eq!(v, 0, "{name}[{u},{j}] is padding");
                    }
                }
            }
            expected_names.push(name.to_owned());
        }
        expected_names.push(group.length_input.clone());
        // The id column holds the kept behaviors' ids, in time order.
        let ids = tensor(out, &group.features[0].input);
        let vocab = &p.vocabs[group.features[0].table];
        for (u, k) in kept.iter().enumerate() {
            for (j, beh) in k.iter().enumerate() {
                assert_eq!(
                    ids.data[u * l + j],
                    vocab.get(beh.id),
                    "{}[{u},{j}]",
                    group.features[0].input
                );
            }
        }
    }
    let target = spec.target_group();
    for (f, input) in &spec.candidate_inputs {
        let t = tensor(out, input);
        let n = out.candidates;
        assert_eq!(t.shape, [rows, n], "{input}");
        assert_eq!(t.data.len(), rows * n);
        let vocab = &p.vocabs[target.features[*f].table];
        for u in 0..rows {
            let real = requests.get(u).map_or(0, |r| r.candidates.len());
            for c in 0..n {
                let v = t.data[u * n + c];
                assert!(
                    (0..=vocab.max_index() as i64).contains(&v),
                    "{input}[{u},{c}] = {v}"
                );
                if c >= real {
                    assert_eq!(v, 0, "{input}[{u},{c}] is padding");
                } else if *f == 0 {
                    assert_eq!(v, vocab.get(requests[u].candidates[c]), "{input}[{u},{c}]");
                }
            }
        }
        expected_names.push(input.clone());
    }
    let mut have: Vec<&str> = out.tensors.iter().map(|t| t.name.as_str()).collect();
    let mut want: Vec<&str> = expected_names.iter().map(String::as_str).collect();
    have.sort_unstable();
    want.sort_unstable();
    assert_eq!(have, want, "tensor names");
}

/// The bucketed batch is the plain one padded with zeros.
fn check_bucketed_extends_plain(plain: &Prepared, bucketed: &Prepared) {
    for t in &plain.tensors {
        let bt = tensor(bucketed, &t.name);
        assert_eq!(t.shape.len(), bt.shape.len());
        let (rows, cols) = (t.shape[0], t.shape.get(1).copied().unwrap_or(1));
        let bcols = bt.shape.get(1).copied().unwrap_or(1);
        assert!(
            bt.shape[0] >= rows && bcols >= cols,
            "{}: {:?} < {:?}",
            t.name,
            bt.shape,
            t.shape
        );
        for u in 0..bt.shape[0] {
            for j in 0..bcols {
                let v = bt.data[u * bcols + j];
                let want = if u < rows && j < cols {
                    t.data[u * cols + j]
                } else {
                    0
                };
                assert_eq!(v, want, "{}[{u},{j}] bucketed vs plain", t.name);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    if input.requests.is_empty() || input.requests.len() > 16 {
        return;
    }
    let p = &packages()[usize::from(input.multigroup)];
    let feats: Vec<Vec<Vec<(&str, &str)>>> = input
        .requests
        .iter()
        .map(|r| {
            r.behaviors
                .iter()
                .map(|b| {
                    b.features
                        .iter()
                        .map(|(k, v)| (k.get(&p.pool), v.get(&p.pool)))
                        .collect()
                })
                .collect()
        })
        .collect();
    let built: Vec<Built<'_>> = input
        .requests
        .iter()
        .zip(&feats)
        .map(|(r, f)| build(r, f, p))
        .collect();
    let requests: Vec<Request<'_>> = built
        .iter()
        .map(|b| Request {
            behaviors: &b.behaviors,
            candidates: &b.candidates,
            request_time: b.request_time,
        })
        .collect();
    let bad = requests.iter().any(|r| invalid(p, r));
    let plain = p.pre.prepare(&requests);
    let bucketed = p.pre.prepare_bucketed(&requests);
    match (&plain, &bucketed) {
        (Ok(plain), Ok(bucketed)) => {
            assert!(!bad, "accepted a request the rules reject");
            check(p, &requests, plain, false);
            check(p, &requests, bucketed, true);
            check_bucketed_extends_plain(plain, bucketed);
        }
        (Err(e), Err(f)) => {
            assert!(bad, "rejected a valid request: {e}");
            assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
            assert_eq!(e.to_string(), f.to_string(), "plain and bucketed disagree");
        }
        _ => panic!(
            "plain and bucketed disagree: {:?} vs {:?}",
            plain.as_ref().err(),
            bucketed.as_ref().err()
        ),
    }
});
