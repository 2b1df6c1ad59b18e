//! The C ABI as a C caller uses it: `atrank_model_score`, `atrank_model_score_cached` and
//! `atrank_model_score_batch` on models loaded once per process through the builder (tract;
//! `tiny`, and `tiny-multigroup` with a 2-entry encoding cache so entries get evicted), with
//! `atrank_behavior` / `atrank_feature` / `atrank_request` structs built from the input:
//! NUL-terminated strings (any bytes, so invalid UTF-8 too) or NULL, arrays NULL (with a
//! length of 0 or not), empty, or misaligned, counts up to and past the package limits (real
//! allocations of that size), output buffers of the right length, short, long, NULL or
//! misaligned. Plus the builder's setters on a fresh builder (freed, not built).
//!
//! The harness never lies about memory: every length it passes is backed by that many
//! elements (a misaligned array is a byte buffer holding them at an odd offset).
//!
//! Checked on every call:
//! - an error is returned xor scores are written: on error the output buffer is untouched
//!   (filled with a sentinel before the call); on success every score is written and finite;
//! - error codes are 1..=9 and never `ATRANK_ERROR_PANIC` (8): a caught panic is a bug, and the
//!   target aborts on it; messages are non-NULL UTF-8; every error is freed;
//! - the call succeeds exactly when the arguments follow the documented contract (an
//!   independent model of it below);
//! - scores agree across entry points (`score_cached` and `score_batch` vs `score`).
#![no_main]

use std::ffi::{c_char, CStr};
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use atrank::ffi::*;
use atrank::spec::Spec;
use atrank_fuzz::{Fixture, FIXTURES};
use libfuzzer_sys::fuzz_target;

struct Model {
    ptr: *const atrank_model,
    spec: Spec,
    pool: Vec<String>,
}
// SAFETY: `atrank_model` is documented thread-safe (immutable once built); the harness never
// frees it.
unsafe impl Send for Model {}
// SAFETY: as above.
unsafe impl Sync for Model {}

fn models() -> &'static [Model; 2] {
    static M: OnceLock<[Model; 2]> = OnceLock::new();
    M.get_or_init(|| {
        FIXTURES.map(|name| {
            let f = Fixture::read(name);
            let dir = std::ffi::CString::new(f.dir.to_str().expect("UTF-8 path")).expect("no NUL");
            let mut b = std::ptr::null_mut();
            ok(atrank_model_builder_new(dir.as_ptr(), &mut b));
            ok(atrank_model_builder_set_backend(b, ATRANK_BACKEND_TRACT));
            if name == "tiny-multigroup" {
                ok(atrank_model_builder_set_cache_capacity(b, 2));
            }
            let mut m = std::ptr::null();
            ok(atrank_model_builder_build(b, &mut m));
            Model {
                ptr: m,
                pool: f.pool(),
                spec: f.spec,
            }
        })
    })
}

fn ok(e: *mut atrank_error) {
    if !e.is_null() {
        // SAFETY: a live error from atrank.
        let msg = unsafe { CStr::from_ptr(atrank_error_message(e)) };
        panic!("harness set-up failed: {msg:?}");
    }
}

/// Checks and frees an error; returns its code (0 for success).
fn code(e: *mut atrank_error, what: &str) -> u32 {
    if e.is_null() {
        return 0;
    }
    let c = atrank_error_code(e) as u32;
    let m = atrank_error_message(e);
    assert!(!m.is_null());
    // SAFETY: the message is NUL-terminated and owned by the live error.
    let msg = unsafe { CStr::from_ptr(m) }
        .to_str()
        .expect("error message is UTF-8")
        .to_owned();
    atrank_error_free(e);
    assert!(
        (1..=9).contains(&c),
        "{what}: code {c} outside 1..=9 ({msg})"
    );
    assert_ne!(c, 8, "{what}: ATRANK_ERROR_PANIC: {msg}");
    c
}

/// A C string argument.
#[derive(Debug)]
enum Text {
    Null,
    /// One of the package's own strings (ids, names, actions).
    Known(u16),
    /// Any bytes, NUL-terminated (an inner NUL ends the string early, as in C).
    Bytes(Vec<u8>),
}

impl<'a> Arbitrary<'a> for Text {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0..=15u8)? {
            0 => Text::Null,
            1..=3 => Text::Bytes(u.arbitrary()?),
            _ => Text::Known(u.arbitrary()?),
        })
    }
}

/// How an array is passed.
#[derive(Debug, Arbitrary, Clone, Copy, PartialEq)]
enum Array {
    Normal,
    /// NULL with the true length (valid only when it is 0).
    Null,
    /// NULL with length 0 (the elements are dropped).
    NullEmpty,
    /// The elements at an odd address (in a byte buffer that holds them).
    Misaligned,
}

#[derive(Debug, Arbitrary)]
enum Time {
    Extreme(u8),
    Near(i32),
    Raw(i64),
}

impl Time {
    fn get(&self) -> i64 {
        const E: [i64; 6] = [i64::MIN, -1, 0, 1, i64::MAX, 881_251_000];
        match self {
            Time::Extreme(k) => E[*k as usize % E.len()],
            Time::Near(d) => 881_251_000 + i64::from(*d),
            Time::Raw(t) => *t,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Feat {
    name: Text,
    value: Text,
}

#[derive(Debug, Arbitrary)]
struct Beh {
    item: Text,
    category: Option<Text>,
    action: Option<Text>,
    time: Time,
    group: Option<Text>,
    features: Vec<Feat>,
    features_array: Array,
}

/// Counts at the package limits, by repeating the request's own elements.
#[derive(Debug, Arbitrary)]
enum Bulk {
    None,
    /// `max_candidates - 1 + k % 3` candidates.
    Candidates(u8),
    /// `max_behaviors - 1 + k % 3` behaviors.
    Behaviors(u8),
}

#[derive(Debug, Arbitrary)]
struct Req {
    behaviors: Vec<Beh>,
    behaviors_array: Array,
    candidates: Vec<Text>,
    candidates_array: Array,
    time: Time,
    bulk: Bulk,
}

#[derive(Debug, Arbitrary)]
enum Out {
    Exact,
    Short(u8),
    Long(u8),
    Null,
    Misaligned,
}

#[derive(Debug, Arbitrary)]
enum Call {
    Score,
    Cached(Text),
    Batch {
        requests_array: Array,
        /// 4097 requests (one past `ATRANK_MAX_BATCH_REQUESTS`), all the first one.
        too_many: bool,
    },
}

#[derive(Debug, Arbitrary)]
enum Setter {
    Backend(u32),
    IntraThreads(usize),
    GpuPolicy(u32),
    OrtLibrary(Text),
    Sessions(usize),
    CacheCapacity(usize),
}

#[derive(Debug, Arbitrary)]
struct Input {
    multigroup: bool,
    null_model: bool,
    call: Call,
    requests: Vec<Req>,
    out: Out,
    /// Also score each request alone with `atrank_model_score` and compare.
    compare: bool,
    setters: Vec<Setter>,
}

/// Owns every allocation the C structs point into; nothing moves once a pointer is taken
/// (inner buffers keep their address when the outer vectors grow).
#[derive(Default)]
struct Arena {
    strings: Vec<Vec<u8>>,
    bytes: Vec<Vec<u8>>,
    features: Vec<Vec<atrank_feature>>,
    behaviors: Vec<Vec<atrank_behavior>>,
    candidates: Vec<Vec<*const c_char>>,
    requests: Vec<Vec<atrank_request>>,
}

impl Arena {
    /// The string's pointer, and whether the contract accepts it (non-NULL, UTF-8).
    fn text(&mut self, t: &Text, pool: &[String]) -> (*const c_char, bool) {
        let mut bytes = match t {
            Text::Null => return (std::ptr::null(), false),
            Text::Known(k) => pool[*k as usize % pool.len()].as_bytes().to_vec(),
            Text::Bytes(b) => b.clone(),
        };
        bytes.push(0);
        let end = bytes.iter().position(|&c| c == 0).expect("terminated");
        let valid = std::str::from_utf8(&bytes[..end]).is_ok();
        self.strings.push(bytes);
        (self.strings.last().expect("pushed").as_ptr().cast(), valid)
    }

    /// The value a string argument has in Rust, if valid.
    fn str_of(p: *const c_char) -> Option<&'static str> {
        if p.is_null() {
            return None;
        }
        // SAFETY: a NUL-terminated string of this arena, alive for the whole input.
        unsafe { CStr::from_ptr(p) }.to_str().ok()
    }

    /// Places `items` as the array kind says; returns (pointer, length, contract-valid).
    fn array<T: Copy>(
        &mut self,
        items: Vec<T>,
        kind: Array,
        store: fn(&mut Arena) -> &mut Vec<Vec<T>>,
    ) -> (*const T, usize, bool) {
        let len = items.len();
        match kind {
            Array::Normal => {
                let v = store(self);
                v.push(items);
                (v.last().expect("pushed").as_ptr(), len, true)
            }
            Array::Null => (std::ptr::null(), len, len == 0),
            Array::NullEmpty => (std::ptr::null(), 0, true),
            Array::Misaligned => {
                let size = std::mem::size_of::<T>() * len;
                let align = std::mem::align_of::<T>();
                let mut buf = vec![0u8; size + 2 * align];
                let base = buf.as_mut_ptr() as usize;
                let off = (align - base % align) % align + 1;
                // SAFETY: `buf` has room for `len` Ts at `off` (off < 2 * align); a byte copy
                // needs no alignment.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        items.as_ptr().cast::<u8>(),
                        buf.as_mut_ptr().add(off),
                        size,
                    )
                };
                let p = buf[off..].as_ptr().cast::<T>();
                self.bytes.push(buf);
                (p, len, align == 1)
            }
        }
    }
}

/// One request in C form, and whether the contract accepts it.
struct Built {
    request: atrank_request,
    valid: bool,
}

fn build(arena: &mut Arena, r: &Req, m: &Model) -> Built {
    let spec = &m.spec;
    let mut valid = true;
    let mut behaviors = Vec::with_capacity(r.behaviors.len());
    for b in &r.behaviors {
        let (item, item_ok) = arena.text(&b.item, &m.pool);
        let opt = |arena: &mut Arena, t: &Option<Text>| match t {
            None => (std::ptr::null(), true),
            Some(t) => {
                let (p, ok) = arena.text(t, &m.pool);
                (p, ok || p.is_null())
            }
        };
        let (category, cat_ok) = opt(arena, &b.category);
        let (action, action_ok) = opt(arena, &b.action);
        let (group, group_ok) = opt(arena, &b.group);
        let g = match Arena::str_of(group) {
            None if group.is_null() => Some(spec.target),
            None => None,
            Some(name) => spec.group_index(name),
        };
        valid &= item_ok && cat_ok && action_ok && group_ok && g.is_some();
        let mut feats = Vec::with_capacity(b.features.len());
        for f in &b.features {
            let (name, name_ok) = arena.text(&f.name, &m.pool);
            let (value, value_ok) = arena.text(&f.value, &m.pool);
            let known = match (g, Arena::str_of(name)) {
                (Some(g), Some(n)) => spec.groups[g].features[1..].iter().any(|f| f.name == n),
                _ => false,
            };
            if b.features_array != Array::NullEmpty {
                valid &= name_ok && value_ok && known;
            }
            feats.push(atrank_feature { name, value });
        }
        let (features, features_len, features_ok) =
            arena.array(feats, b.features_array, |a| &mut a.features);
        valid &= features_ok;
        behaviors.push(atrank_behavior {
            item,
            category,
            action,
            timestamp: b.time.get(),
            group,
            features,
            features_len,
        });
    }
    let mut candidates = Vec::with_capacity(r.candidates.len());
    let mut candidates_ok = true;
    for c in &r.candidates {
        let (p, ok) = arena.text(c, &m.pool);
        candidates_ok &= ok;
        candidates.push(p);
    }
    let limits = &spec.limits;
    match r.bulk {
        Bulk::None => {}
        Bulk::Candidates(k) => {
            if let Some(&first) = candidates.first() {
                let n = limits.max_candidates - 1 + k as usize % 3;
                candidates.resize(n, first);
            }
        }
        Bulk::Behaviors(k) => {
            if let Some(&first) = behaviors.first() {
                let n = limits.max_behaviors - 1 + k as usize % 3;
                behaviors.resize(n, first);
            }
        }
    }
    // Elements behind a NULL, length-0 array are never read: only their count matters.
    if r.behaviors_array == Array::NullEmpty {
        valid = true;
    }
    if r.candidates_array != Array::NullEmpty {
        valid &= candidates_ok;
    }
    let (bp, bl, bok) = arena.array(behaviors, r.behaviors_array, |a| &mut a.behaviors);
    let (cp, cl, cok) = arena.array(candidates, r.candidates_array, |a| &mut a.candidates);
    valid &= bok && cok && (1..=limits.max_candidates).contains(&cl) && bl <= limits.max_behaviors;
    Built {
        request: atrank_request {
            behaviors: bp,
            behaviors_len: bl,
            candidates: cp,
            candidates_len: cl,
            request_time: r.time.get(),
        },
        valid,
    }
}

const SENTINEL: u32 = 0x7fc0_dead;

/// An output buffer: `len` floats (or NULL / misaligned), pre-filled with the sentinel.
struct OutBuf {
    buf: Vec<u8>,
    off: usize,
    len: usize,
    null: bool,
}

impl OutBuf {
    fn new(kind: &Out, expected: usize) -> OutBuf {
        let (len, misaligned, null) = match kind {
            Out::Exact => (expected, false, false),
            Out::Short(k) => (expected.saturating_sub(1 + *k as usize % 4), false, false),
            Out::Long(k) => (expected + 1 + *k as usize % 4, false, false),
            Out::Null => (expected, false, true),
            Out::Misaligned => (expected, true, false),
        };
        let mut buf = Vec::with_capacity(len * 4 + 8);
        for _ in 0..len + 2 {
            buf.extend_from_slice(&SENTINEL.to_ne_bytes());
        }
        let base = buf.as_ptr() as usize;
        let mut off = (4 - base % 4) % 4;
        if misaligned {
            off += 1;
        }
        OutBuf {
            buf,
            off,
            len,
            null,
        }
    }

    fn ptr(&mut self) -> *mut f32 {
        if self.null {
            std::ptr::null_mut()
        } else {
            // SAFETY: `off` <= 4 and the buffer holds `len + 2` floats' bytes.
            unsafe { self.buf.as_mut_ptr().add(self.off) }.cast()
        }
    }

    fn valid(&self, expected: usize) -> bool {
        !self.null && self.off % 4 == 0 && self.len == expected
    }

    fn floats(&self) -> Vec<f32> {
        self.buf[self.off..self.off + 4 * self.len]
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes(c.try_into().expect("4 bytes")))
            .collect()
    }

    fn untouched(&self) -> bool {
        let mut s = SENTINEL.to_ne_bytes().repeat(self.buf.len() / 4 + 1);
        // The pattern as seen from byte 0 of the buffer (it was filled from byte 0).
        s.truncate(self.buf.len());
        self.buf == s
    }
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-4 * x.abs().max(y.abs()).max(1.0))
}

/// Scores one request alone with `atrank_model_score` (for comparisons; it must succeed).
fn score_alone(model: *const atrank_model, r: &atrank_request) -> Vec<f32> {
    let mut out = vec![0f32; r.candidates_len];
    let e = atrank_model_score(
        model,
        r.behaviors,
        r.behaviors_len,
        r.candidates,
        r.candidates_len,
        r.request_time,
        out.as_mut_ptr(),
        out.len(),
    );
    assert_eq!(code(e, "score (comparison)"), 0);
    out
}

fn setters(list: &[Setter], arena: &mut Arena, pool: &[String]) {
    let dir = c"/nonexistent-atrank-package";
    let mut b = std::ptr::null_mut();
    assert_eq!(
        code(
            atrank_model_builder_new(dir.as_ptr(), &mut b),
            "builder_new"
        ),
        0
    );
    for s in list {
        let (e, valid) = match s {
            Setter::Backend(v) => (atrank_model_builder_set_backend(b, *v), *v <= 1),
            Setter::IntraThreads(n) => (
                atrank_model_builder_set_intra_threads(b, *n),
                (1..=1024).contains(n),
            ),
            Setter::GpuPolicy(p) => (atrank_model_builder_set_gpu_policy(b, *p), *p <= 2),
            Setter::OrtLibrary(t) => {
                let (p, ok) = arena.text(t, pool);
                (atrank_model_builder_set_ort_library(b, p), ok)
            }
            Setter::Sessions(n) => (
                atrank_model_builder_set_sessions(b, *n),
                (1..=64).contains(n),
            ),
            Setter::CacheCapacity(n) => (
                atrank_model_builder_set_cache_capacity(b, *n),
                *n <= ATRANK_MAX_CACHE_ENTRIES,
            ),
        };
        let c = code(e, "builder setter");
        assert_eq!(c == 0, valid, "setter {s:?}: code {c}");
    }
    atrank_model_builder_free(b);
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    if input.requests.len() > 8 || input.setters.len() > 8 {
        return;
    }
    let m = &models()[usize::from(input.multigroup)];
    let mut arena = Arena::default();
    setters(&input.setters, &mut arena, &m.pool);
    let model = if input.null_model {
        std::ptr::null()
    } else {
        m.ptr
    };
    let built: Vec<Built> = input
        .requests
        .iter()
        .map(|r| build(&mut arena, r, m))
        .collect();
    let empty = Built {
        request: atrank_request {
            behaviors: std::ptr::null(),
            behaviors_len: 0,
            candidates: std::ptr::null(),
            candidates_len: 0,
            request_time: 0,
        },
        valid: false,
    };
    let first = built.first().unwrap_or(&empty);
    let (what, e, expected, valid, out) = match &input.call {
        Call::Score | Call::Cached(_) => {
            let r = &first.request;
            let mut out = OutBuf::new(&input.out, r.candidates_len);
            let (what, e, key_ok) = match &input.call {
                Call::Cached(key) => {
                    let (k, ok) = arena.text(key, &m.pool);
                    let e = atrank_model_score_cached(
                        model,
                        k,
                        r.behaviors,
                        r.behaviors_len,
                        r.candidates,
                        r.candidates_len,
                        r.request_time,
                        out.ptr(),
                        out.len,
                    );
                    ("score_cached", e, ok)
                }
                _ => {
                    let e = atrank_model_score(
                        model,
                        r.behaviors,
                        r.behaviors_len,
                        r.candidates,
                        r.candidates_len,
                        r.request_time,
                        out.ptr(),
                        out.len,
                    );
                    ("score", e, true)
                }
            };
            let valid = first.valid && key_ok && out.valid(r.candidates_len);
            (what, e, r.candidates_len, valid, out)
        }
        Call::Batch {
            requests_array,
            too_many,
        } => {
            let mut reqs: Vec<atrank_request> = built.iter().map(|b| b.request).collect();
            let mut valid = built.iter().all(|b| b.valid);
            if *too_many {
                let r = first.request;
                reqs.resize(ATRANK_MAX_BATCH_REQUESTS + 1, r);
            }
            let expected: usize = reqs.iter().map(|r| r.candidates_len).sum();
            let (p, n, ok) = arena.array(reqs, *requests_array, |a| &mut a.requests);
            valid &= ok && !p.is_null() && (1..=ATRANK_MAX_BATCH_REQUESTS).contains(&n);
            let mut out = OutBuf::new(&input.out, expected);
            let e = atrank_model_score_batch(model, p, n, out.ptr(), out.len);
            valid &= out.valid(expected);
            ("score_batch", e, expected, valid, out)
        }
    };
    let valid = valid && !input.null_model;
    let c = code(e, what);
    if c != 0 {
        assert!(!valid, "{what} rejected a valid call: code {c}");
        assert!(
            out.untouched(),
            "{what} wrote scores_out and returned error {c}"
        );
        return;
    }
    assert!(valid, "{what} accepted a call the contract rejects");
    let scores = out.floats();
    assert_eq!(scores.len(), expected);
    for (i, s) in scores.iter().enumerate() {
        assert_ne!(s.to_bits(), SENTINEL, "{what}: scores_out[{i}] not written");
        assert!(s.is_finite(), "{what}: scores_out[{i}] = {s}");
    }
    if input.compare {
        match &input.call {
            Call::Score => {}
            Call::Cached(_) => {
                let alone = score_alone(m.ptr, &first.request);
                assert!(
                    close(&scores, &alone),
                    "score_cached {scores:?} vs score {alone:?}"
                );
            }
            Call::Batch { .. } => {
                let mut at = 0;
                for b in &built {
                    let alone = score_alone(m.ptr, &b.request);
                    let part = &scores[at..at + alone.len()];
                    assert!(
                        close(part, &alone),
                        "score_batch {part:?} vs score {alone:?}"
                    );
                    at += alone.len();
                }
            }
        }
    }
});
