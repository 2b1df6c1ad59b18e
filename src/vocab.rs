//! Vocabularies and catalogs of package format 3, read in place from memory-mapped files
//! (`docs/package-format.md`, "The atv file", "Indices", "Catalog columns").
//!
//! An [`Atv`] file is a sorted string table: a 32-byte header, `n + 1` u64 offsets and the keys
//! concatenated. Opening it checks the header and the exact file size (constant time, nothing
//! parsed); the first look-up copies every 64th key into memory (n / 64 keys, the only heap
//! that grows with the file); a look-up is a binary search over those, then over at most 64
//! neighbouring keys of the file, in which every offset read is bounds- and order-checked, so
//! a damaged file gives a miss or an [`Error::InvalidPackage`], never an out-of-bounds read or
//! a panic. [`Atv::get_many`] does many look-ups with their cache misses overlapped.
//!
//! A package may give an atv file a hashed index (spec `atv_index`, [`Atv::with_index`]): a
//! mapped table of u64 slots (linear probing over XXH3), so that a look-up reads one or two
//! slots and compares one key instead of searching the sorted keys. Its answers are the same;
//! a damaged index can hide a key or report the damage, never give another key's rank.

use std::cmp::Ordering;
use std::sync::{Arc, OnceLock};

use crate::{Error, Result};

/// `ATRVOC01`: the first 8 bytes of every atv file.
const MAGIC: &[u8; 8] = b"ATRVOC01";
const HEADER: usize = 32;
/// Longest key an atv file may hold (bytes).
const MAX_KEY: u64 = 4096;
/// `ATRVIX01`: the first 8 bytes of every atv index file.
const INDEX_MAGIC: &[u8; 8] = b"ATRVIX01";
const INDEX_HEADER: usize = 40;

/// The bytes of a vocabulary or catalog file: mapped from the package, or owned (tests, and
/// files built in memory).
#[derive(Clone)]
pub enum Data {
    /// A read-only memory map of a package file.
    Mapped(Arc<memmap2::Mmap>),
    /// Bytes held in memory.
    Owned(Arc<[u8]>),
}

impl Data {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Data::Mapped(m) => m,
            Data::Owned(b) => b,
        }
    }
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Data::Mapped(m) => write!(f, "Mapped({} bytes)", m.len()),
            Data::Owned(b) => write!(f, "Owned({} bytes)", b.len()),
        }
    }
}

impl From<memmap2::Mmap> for Data {
    fn from(m: memmap2::Mmap) -> Data {
        Data::Mapped(Arc::new(m))
    }
}

impl From<Vec<u8>> for Data {
    fn from(v: Vec<u8>) -> Data {
        Data::Owned(v.into())
    }
}

fn le_u64(data: &[u8], at: usize) -> Option<u64> {
    let b = data.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Every [`FENCE_STRIDE`]-th key of a file, and every [`FENCE_STRIDE`]-th of those, is copied
/// into memory by its first look-up.
pub const FENCE_STRIDE: usize = 64;

/// Look-ups whose memory reads [`Atv::get_many`] issues together (and the chunk of rows the
/// runtime's table gathers read ahead): enough to keep the core's outstanding cache misses
/// busy, few enough that what they bring in (about 1.6 KB each) stays in the L1 and L2 caches.
pub const LOOKAHEAD: usize = 32;

/// Where a key can be, after the fences.
#[derive(Debug, Clone, Copy)]
enum Narrowed {
    Done(Option<usize>),
    Range(usize, usize),
}

/// Reads one byte of every 64-byte cache line of `bytes[range]` (clamped to `bytes`), and the
/// last one, and returns their XOR: a prefetch in safe code. The loads do not depend on each
/// other, so their cache misses overlap.
pub fn touch(bytes: &[u8], range: std::ops::Range<usize>) -> u8 {
    let end = range.end.min(bytes.len());
    let mut sum = 0u8;
    let mut at = range.start;
    while at < end {
        sum ^= bytes[at];
        at += 64;
    }
    if range.start < end {
        sum ^= bytes[end - 1];
    }
    sum
}

/// Keys held in memory, concatenated: the file's keys of rank 0, S, 2S, ... (S =
/// [`FENCE_STRIDE`]), and every S-th of those again (ranks 0, S², 2S², ...). A look-up
/// searches the upper list (n / 4,096 keys: in the L1 or L2 cache), then S neighbouring keys
/// of the lower one (one stretch of memory), then S neighbouring keys of the file. A plain
/// binary search of a 10^7-key file touches about 23 keys spread over the whole mapping, and
/// the lower dozen of them miss every cache: 3.4 µs per look-up at 10^7 keys against 0.25 µs
/// at 1,682 (benches/scale.py). The copy is about n / 64 keys: 1.6 MB at 10^7 keys.
#[derive(Debug, Default)]
struct Fences {
    lower: KeyList,
    upper: KeyList,
}

/// Sorted keys, concatenated.
#[derive(Debug, Default)]
struct KeyList {
    bytes: Vec<u8>,
    /// End of key i in `bytes`.
    ends: Vec<usize>,
}

impl KeyList {
    fn push(&mut self, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.bytes[self.start(i)..self.ends[i]]
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// The first index in `lo..hi` whose key is greater than `key` (`hi` when none is).
    fn upper_bound(&self, key: &[u8], mut lo: usize, mut hi: usize) -> usize {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid) <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Reads the cache lines of keys `lo..hi` and of their ends (see [`touch`]).
    fn touch(&self, lo: usize, hi: usize) -> u8 {
        if lo >= hi {
            return 0;
        }
        let mut sum = 0u8;
        // 8 ends to a 64-byte line
        for i in (lo..hi).step_by(8).chain([hi - 1]) {
            sum ^= self.ends[i] as u8;
        }
        sum ^ touch(&self.bytes, self.start(lo)..self.ends[hi - 1])
    }
}

/// An atv file's hashed index (docs/package-format.md, "The atv index file"): `slots` (a
/// power of two, more than `n`) u64 slots, each 0 (empty) or `(xxh3_64(key, seed) >> 32) << 32
/// | (rank + 1)`, with key k in the first free slot from `xxh3_64(key, seed) mod slots` on
/// (linear probing). A look-up reads the slots from the key's home on until an empty one or
/// `max_probes` of them, and compares the key only where the 32-bit fingerprint matches: one
/// or two cache misses for the slots, then one for the key's offsets and bytes. Every rank
/// it reads is checked against `n` and every hit compared with the atv file's key, so a
/// damaged index can make a key missed (or report the damage), never a wrong rank.
#[derive(Debug, Clone)]
struct HashIndex {
    data: Data,
    name: Arc<str>,
    mask: u64,
    seed: u64,
    max_probes: u64,
}

/// A slot's first probe and what to look for there.
#[derive(Debug, Clone, Copy)]
struct Probe {
    home: u64,
    fingerprint: u64,
}

impl HashIndex {
    fn probe_of(&self, key: &[u8]) -> Probe {
        let h = xxh3_64(key, self.seed);
        Probe {
            home: h & self.mask,
            fingerprint: h >> 32,
        }
    }

    /// Slot `i` (`i <= mask`: in the file, whose size was checked at open).
    fn slot(&self, i: u64) -> u64 {
        le_u64(self.data.bytes(), INDEX_HEADER + 8 * i as usize).unwrap_or(0)
    }

    /// The rank a non-empty slot holds; 0 in its low half (no rank) or a rank past `n` is
    /// damage.
    fn rank(&self, i: u64, slot: u64, n: usize) -> Result<usize> {
        let r = (slot & 0xFFFF_FFFF) as usize;
        if r == 0 || r > n {
            return Err(Error::package(format!(
                "{}: slot {i} holds rank {r} (1..={n} allowed): damaged index",
                self.name
            )));
        }
        Ok(r - 1)
    }

    /// The slots a look-up of `p` compares a key at: (slot, value) of each slot from the
    /// key's home on whose fingerprint matches, until an empty slot or `max_probes` slots.
    fn matches(&self, p: Probe) -> impl Iterator<Item = (u64, u64)> + '_ {
        (0..self.max_probes)
            .map(move |k| {
                let i = (p.home + k) & self.mask;
                (i, self.slot(i))
            })
            .take_while(|&(_, v)| v != 0)
            .filter(move |&(_, v)| v >> 32 == p.fingerprint)
    }
}

/// An opened atv file (sorted string table). Cheap to clone: the bytes are shared.
#[derive(Debug, Clone)]
pub struct Atv {
    data: Data,
    name: Arc<str>,
    n: usize,
    /// Byte offset of the keys region.
    keys_at: usize,
    key_bytes: usize,
    /// Read by the first look-up (opening stays constant time and touches two pages), shared
    /// by clones; `None` when a fence key could not be read (a damaged file): plain binary
    /// search, which reports the damage where it meets it.
    fences: Arc<OnceLock<Option<Fences>>>,
    /// The file's hashed index, when the package has one: then look-ups use it alone.
    index: Option<HashIndex>,
}

impl Atv {
    /// Opens the atv file in `data`; `name` (the package-relative path) appears in errors.
    /// With `expect_n`, the file must hold exactly that many keys (the spec's `size`/`rows`).
    /// Constant time: checks the magic, the header, `offsets[0]`, `offsets[n]` and that the
    /// file is exactly `32 + 8 (n + 1) + key_bytes` bytes. The first look-up reads every 64th
    /// key ([`FENCE_STRIDE`]; 3 ms at 10^7 keys).
    pub fn open(data: impl Into<Data>, name: &str, expect_n: Option<u64>) -> Result<Atv> {
        let data = data.into();
        let bad = |msg: String| Err(Error::package(format!("{name}: {msg}")));
        let bytes = data.bytes();
        let size = bytes.len() as u64;
        if size < (HEADER + 8) as u64 {
            return bad(format!(
                "{size} bytes is too short for an atv file (at least 40)"
            ));
        }
        if &bytes[..8] != MAGIC {
            return bad(format!(
                "not an atv file (magic {:?}, expected \"ATRVOC01\")",
                String::from_utf8_lossy(&bytes[..8])
            ));
        }
        let field = |at: usize| le_u64(bytes, at).unwrap_or(u64::MAX);
        let (n, key_bytes, reserved) = (field(8), field(16), field(24));
        if reserved != 0 {
            return bad(format!("reserved header field is {reserved}, expected 0"));
        }
        let expected = n
            .checked_add(1)
            .and_then(|m| m.checked_mul(8))
            .and_then(|o| o.checked_add(HEADER as u64))
            .and_then(|o| o.checked_add(key_bytes));
        if expected != Some(size) {
            return bad(format!(
                "{size} bytes, but the header's n = {n} and key_bytes = {key_bytes} make {} \
                 (truncated or damaged)",
                expected.map_or_else(|| "more than 2^64".to_owned(), |e| e.to_string())
            ));
        }
        if let Some(want) = expect_n {
            if n != want {
                return bad(format!("holds {n} keys, but the spec says {want}"));
            }
        }
        // Both fit in usize: together they are at most the mapped file's size.
        let n = n as usize;
        let keys_at = HEADER + 8 * (n + 1);
        let (first, last) = (field(HEADER), field(keys_at - 8));
        if first != 0 || last != key_bytes {
            return bad(format!(
                "offsets[0] = {first} and offsets[n] = {last}, expected 0 and {key_bytes}"
            ));
        }
        Ok(Atv {
            n,
            keys_at,
            key_bytes: key_bytes as usize,
            data,
            name: name.into(),
            fences: Arc::new(OnceLock::new()),
            index: None,
        })
    }

    /// This file with the hashed index in `data` (`name` appears in errors), which every
    /// look-up then uses instead of searching the sorted keys; the answers are the same.
    /// Constant time: checks the magic, that the index is for `n` keys, that `slots` is a
    /// power of two above `n`, that `1 <= max_probes <= slots`, and that the file is exactly
    /// `40 + 8 slots` bytes.
    pub fn with_index(mut self, data: impl Into<Data>, name: &str) -> Result<Atv> {
        let data = data.into();
        let bad = |msg: String| Err(Error::package(format!("{name}: {msg}")));
        let bytes = data.bytes();
        let size = bytes.len() as u64;
        if size < INDEX_HEADER as u64 + 8 {
            return bad(format!(
                "{size} bytes is too short for an atv index (at least 48)"
            ));
        }
        if &bytes[..8] != INDEX_MAGIC {
            return bad(format!(
                "not an atv index (magic {:?}, expected \"ATRVIX01\")",
                String::from_utf8_lossy(&bytes[..8])
            ));
        }
        let field = |at: usize| le_u64(bytes, at).unwrap_or(u64::MAX);
        let (n, slots, seed, max_probes) = (field(8), field(16), field(24), field(32));
        if n != self.n as u64 {
            return bad(format!(
                "indexes {n} keys, but {} holds {}",
                self.name, self.n
            ));
        }
        if !slots.is_power_of_two() || slots <= n {
            return bad(format!(
                "{slots} slots: must be a power of two above the {n} keys"
            ));
        }
        if slots
            .checked_mul(8)
            .and_then(|b| b.checked_add(INDEX_HEADER as u64))
            != Some(size)
        {
            return bad(format!(
                "{size} bytes, but {slots} slots make 40 + 8 x {slots} (truncated or damaged)"
            ));
        }
        if max_probes == 0 || max_probes > slots {
            return bad(format!("max_probes {max_probes} is not in 1..={slots}"));
        }
        self.index = Some(HashIndex {
            data,
            name: name.into(),
            mask: slots - 1,
            seed,
            max_probes,
        });
        Ok(self)
    }

    /// Whether look-ups use a hashed index ([`Atv::with_index`]).
    pub fn has_index(&self) -> bool {
        self.index.is_some()
    }

    /// Look-up through the hashed index: the slots from the key's home on, comparing the key
    /// where the fingerprint matches.
    fn lookup_hashed(&self, ix: &HashIndex, p: Probe, key: &[u8]) -> Result<Option<usize>> {
        for (i, v) in ix.matches(p) {
            let r = ix.rank(i, v, self.n)?;
            if self.key_bytes(r)? == key {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// [`Atv::get_many`] through the hashed index: each stage's reads for the whole chunk are
    /// issued before any look-up waits on one (home slots, then the first matching rank's
    /// offsets, then its key bytes), then each look-up runs from cache.
    fn get_many_hashed<K: AsRef<[u8]>>(
        &self,
        ix: &HashIndex,
        keys: &[K],
        out: &mut Vec<Option<usize>>,
    ) -> Result<()> {
        let bytes = self.data.bytes();
        let mut probes = Vec::with_capacity(LOOKAHEAD.min(keys.len()));
        let mut ranks = Vec::with_capacity(LOOKAHEAD.min(keys.len()));
        for chunk in keys.chunks(LOOKAHEAD) {
            probes.clear();
            probes.extend(chunk.iter().map(|k| ix.probe_of(k.as_ref())));
            let mut sum = 0u8;
            for p in &probes {
                sum ^= ix.slot(p.home) as u8;
            }
            ranks.clear();
            // The first matching slot's rank (a damaged one is left to the look-up).
            ranks.extend(probes.iter().map(|p| {
                let (i, v) = ix.matches(*p).next()?;
                ix.rank(i, v, self.n).ok()
            }));
            for r in ranks.iter().flatten() {
                sum ^= touch(bytes, HEADER + 8 * r..HEADER + 8 * (r + 2));
            }
            for &r in ranks.iter().flatten() {
                sum ^= self.touch_keys(r, r + 1);
            }
            std::hint::black_box(sum);
            for (k, p) in chunk.iter().zip(&probes) {
                out.push(self.lookup_hashed(ix, *p, k.as_ref())?);
            }
        }
        Ok(())
    }

    /// Reads the cache lines of keys `lo..hi` (see [`touch`]), their offsets being in cache; a
    /// damaged pair of offsets is left to the look-up, which reports it.
    fn touch_keys(&self, lo: usize, hi: usize) -> u8 {
        let bytes = self.data.bytes();
        let offset = |k: usize| le_u64(bytes, HEADER + 8 * k).unwrap_or(u64::MAX);
        let (a, b) = (offset(lo), offset(hi));
        if a <= b && b <= self.key_bytes as u64 {
            touch(bytes, self.keys_at + a as usize..self.keys_at + b as usize)
        } else {
            0
        }
    }

    fn read_fences(&self) -> Option<Fences> {
        let mut f = Fences::default();
        for k in (0..self.n).step_by(FENCE_STRIDE) {
            f.lower.push(self.key_bytes(k).ok()?);
        }
        for i in (0..f.lower.len()).step_by(FENCE_STRIDE) {
            let key = f.lower.key(i).to_vec();
            f.upper.push(&key);
        }
        Some(f)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the file has no keys.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The package-relative name the file was opened under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes of the underlying file.
    pub fn file_bytes(&self) -> usize {
        self.data.bytes().len()
    }

    /// The bytes of key `k`, with both offsets checked: in bounds, in order, at most 4,096
    /// bytes apart.
    pub fn key_bytes(&self, k: usize) -> Result<&[u8]> {
        if k >= self.n {
            return Err(Error::package(format!(
                "{}: key {k} asked of a file of {} keys",
                self.name, self.n
            )));
        }
        let bytes = self.data.bytes();
        let at = HEADER + 8 * k;
        let (a, b) = (
            le_u64(bytes, at).unwrap_or(u64::MAX),
            le_u64(bytes, at + 8).unwrap_or(u64::MAX),
        );
        if a > b || b > self.key_bytes as u64 || b - a > MAX_KEY || a == b {
            return Err(Error::package(format!(
                "{}: offsets of key {k} ({a}..{b}) are damaged (keys are 1..=4096 bytes \
                 inside the {} key bytes)",
                self.name, self.key_bytes
            )));
        }
        let (a, b) = (self.keys_at + a as usize, self.keys_at + b as usize);
        bytes
            .get(a..b)
            .ok_or_else(|| Error::package(format!("{}: key {k} lies outside the file", self.name)))
    }

    /// Key `k` as text; a key that is not UTF-8 is a damaged file.
    pub fn key(&self, k: usize) -> Result<&str> {
        std::str::from_utf8(self.key_bytes(k)?).map_err(|e| {
            Error::package(format!(
                "{}: key {k} is not valid UTF-8 (at byte {})",
                self.name,
                e.valid_up_to()
            ))
        })
    }

    /// The rank of `key` (0-based), `None` when it is not in the file. Binary search; a damaged
    /// offset met on the way is an error.
    pub fn get_bytes(&self, key: &[u8]) -> Result<Option<usize>> {
        if let Some(ix) = &self.index {
            return self.lookup_hashed(ix, ix.probe_of(key), key);
        }
        match self.narrow(key) {
            Narrowed::Done(found) => Ok(found),
            Narrowed::Range(lo, hi) => self.search(key, lo, hi),
        }
    }

    /// The ranks of `keys`, in order, appended to `out`: the same answers as
    /// [`Atv::get_bytes`] one by one, but with the file's memory reads of up to [`LOOKAHEAD`]
    /// look-ups issued together. A look-up in a big file waits on two or three cache misses
    /// (its block's offsets, then its keys); one after another, the waits add up (about 1 µs
    /// per look-up at 10^7 keys). Here the look-ups of a chunk go through each stage together:
    /// each one's stretch of lower fences, then its block's offsets, then its block's keys
    /// are read (one byte of each cache line), with no look-up waiting on another, so the
    /// misses overlap; the binary searches that follow read from cache.
    pub fn get_many<K: AsRef<[u8]>>(&self, keys: &[K], out: &mut Vec<Option<usize>>) -> Result<()> {
        if let Some(ix) = &self.index {
            return self.get_many_hashed(ix, keys, out);
        }
        let bytes = self.data.bytes();
        let mut steps = Vec::with_capacity(LOOKAHEAD.min(keys.len()));
        let mut uppers = Vec::with_capacity(LOOKAHEAD.min(keys.len()));
        for chunk in keys.chunks(LOOKAHEAD) {
            steps.clear();
            let mut sum = 0u8;
            match self.fences.get_or_init(|| self.read_fences()) {
                None => steps.extend(chunk.iter().map(|_| Narrowed::Range(0, self.n))),
                Some(f) => {
                    // The upper fences (in cache), then the stretches of lower fences.
                    uppers.clear();
                    uppers.extend(chunk.iter().map(|k| Atv::narrow_upper(f, k.as_ref())));
                    for &(lo, hi) in uppers.iter().flatten() {
                        sum ^= f.lower.touch(lo, hi);
                    }
                    steps.extend(chunk.iter().zip(&uppers).map(|(k, u)| match *u {
                        Err(found) => Narrowed::Done(found),
                        Ok((lo, hi)) => self.narrow_lower(f, k.as_ref(), lo, hi),
                    }));
                }
            }
            // The file block's offsets, then (with those in cache) the keys they point at.
            // (Only fence blocks: without fences, a range is the whole file.)
            let block = |s: &Narrowed| match *s {
                Narrowed::Range(lo, hi) if hi - lo <= FENCE_STRIDE => Some((lo, hi)),
                _ => None,
            };
            for (lo, hi) in steps.iter().filter_map(block) {
                sum ^= touch(bytes, HEADER + 8 * lo..HEADER + 8 * (hi + 1));
            }
            for (lo, hi) in steps.iter().filter_map(block) {
                sum ^= self.touch_keys(lo, hi);
            }
            std::hint::black_box(sum);
            for (k, step) in chunk.iter().zip(&steps) {
                out.push(match *step {
                    Narrowed::Done(found) => found,
                    Narrowed::Range(lo, hi) => self.search(k.as_ref(), lo, hi)?,
                });
            }
        }
        Ok(())
    }

    /// Where `key` can be: answered by the fences alone, or a range of ranks to search (the
    /// whole file when there are no fences).
    fn narrow(&self, key: &[u8]) -> Narrowed {
        match self.fences.get_or_init(|| self.read_fences()) {
            None => Narrowed::Range(0, self.n),
            Some(f) => match Atv::narrow_upper(f, key) {
                Err(found) => Narrowed::Done(found),
                Ok((lo, hi)) => self.narrow_lower(f, key, lo, hi),
            },
        }
    }

    /// The lower fences `lo..hi` among which the last one <= `key` is (the first of them is
    /// <= `key`), or the answer (`key` is before the first key).
    fn narrow_upper(f: &Fences, key: &[u8]) -> std::result::Result<(usize, usize), Option<usize>> {
        let a = f.upper.upper_bound(key, 0, f.upper.len());
        if a == 0 {
            return Err(None);
        }
        Ok(((a - 1) * FENCE_STRIDE, f.lower.len().min(a * FENCE_STRIDE)))
    }

    /// The last lower fence <= `key` among `lo..hi` (lower fence `lo` is <= `key`): the key,
    /// if present, is in its block of S keys of the file.
    fn narrow_lower(&self, f: &Fences, key: &[u8], lo: usize, hi: usize) -> Narrowed {
        let block = f.lower.upper_bound(key, lo + 1, hi) - 1;
        if f.lower.key(block) == key {
            return Narrowed::Done(Some(block * FENCE_STRIDE));
        }
        Narrowed::Range(
            block * FENCE_STRIDE + 1,
            self.n.min((block + 1) * FENCE_STRIDE),
        )
    }

    /// Binary search of `key` among the ranks `lo..hi`.
    fn search(&self, key: &[u8], mut lo: usize, mut hi: usize) -> Result<Option<usize>> {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key_bytes(mid)?.cmp(key) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(Some(mid)),
            }
        }
        Ok(None)
    }

    /// [`Atv::get_bytes`] for a string (matched byte for byte).
    pub fn get(&self, key: &str) -> Result<Option<usize>> {
        self.get_bytes(key.as_bytes())
    }
}

/// XXH3 64-bit of `bytes` with `seed`: the package's `hash.function` `xxh3_64`.
pub fn xxh3_64(bytes: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, seed)
}

/// One embedding table's index rule (docs "Indices"): key k maps to k + 1; an unseen string
/// to `n + 1 + xxh3_64(s, seed) mod hash_buckets` when there are buckets, else 0.
#[derive(Debug, Clone)]
pub struct Table {
    /// The table's vocabulary.
    pub atv: Atv,
    /// Rows reserved for unseen keys.
    pub hash_buckets: u64,
    /// `hash.seed` of the spec.
    pub seed: u64,
}

impl Table {
    /// The index of `s`.
    pub fn index(&self, s: &str) -> Result<i64> {
        Ok(self.index_of(s, self.atv.get(s)?))
    }

    /// The indices of `keys`, appended to `out`: [`Table::index`] of each, with the
    /// vocabulary's reads overlapped ([`Atv::get_many`]).
    pub fn index_many<K: AsRef<str>>(&self, keys: &[K], out: &mut Vec<i64>) -> Result<()> {
        let mut found = Vec::with_capacity(keys.len());
        let bytes: Vec<&[u8]> = keys.iter().map(|k| k.as_ref().as_bytes()).collect();
        self.atv.get_many(&bytes, &mut found)?;
        for (k, f) in keys.iter().zip(found) {
            out.push(self.index_of(k.as_ref(), f));
        }
        Ok(())
    }

    /// The index of `s` given its rank in the vocabulary.
    fn index_of(&self, s: &str, found: Option<usize>) -> i64 {
        if let Some(k) = found {
            return k as i64 + 1;
        }
        if self.hash_buckets == 0 {
            return 0;
        }
        let bucket = xxh3_64(s.as_bytes(), self.seed) % self.hash_buckets;
        // size + 1 + hash_buckets fits in u32 (the spec's limit on table rows).
        (self.atv.len() as u64 + 1 + bucket) as i64
    }

    /// Rows of the table's embedding: `size + 1 + hash_buckets`.
    pub fn rows(&self) -> u64 {
        self.atv.len() as u64 + 1 + self.hash_buckets
    }
}

/// One catalog column: `rows` u32 LE table indices.
#[derive(Debug, Clone)]
pub struct Column {
    data: Data,
    name: Arc<str>,
    /// Rows of the feature's table: every value must be below.
    table_rows: u64,
}

impl Column {
    /// Opens a column of `rows` values whose values index a table of `table_rows` rows. The
    /// size is checked now; each value when it is read.
    pub fn open(data: impl Into<Data>, name: &str, rows: usize, table_rows: u64) -> Result<Column> {
        let data = data.into();
        let len = data.bytes().len();
        if Some(len) != rows.checked_mul(4) {
            return Err(Error::package(format!(
                "{name}: {len} bytes, expected 4 x {rows} rows"
            )));
        }
        Ok(Column {
            data,
            name: name.into(),
            table_rows,
        })
    }

    /// Reads the cache line of value `row` (nothing when it is out of range): see [`touch`].
    pub fn touch(&self, row: usize) -> u8 {
        let at = row.saturating_mul(4);
        touch(self.data.bytes(), at..at.saturating_add(4))
    }

    /// Value `row`; a value past the table's last row is a damaged package.
    pub fn value(&self, row: usize) -> Result<i64> {
        let at = row.checked_mul(4);
        let b = at
            .and_then(|a| self.data.bytes().get(a..a + 4))
            .ok_or_else(|| Error::package(format!("{}: row {row} is out of range", self.name)))?;
        let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if u64::from(v) >= self.table_rows {
            return Err(Error::package(format!(
                "{}: row {row} holds index {v}, past the table's last row {} (damaged catalog)",
                self.name,
                self.table_rows - 1
            )));
        }
        Ok(i64::from(v))
    }
}

/// A group's catalog: the objects' keys and one column per catalog feature.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The keys; key r is the object of row r.
    pub keys: Atv,
    /// (index of the feature in its group, column).
    pub columns: Vec<(usize, Column)>,
}

impl Catalog {
    /// The value of feature `feature` (its index in the group) for catalog row `row`; 0 when
    /// the catalog has no column for it.
    pub fn value(&self, row: usize, feature: usize) -> Result<i64> {
        match self.columns.iter().find(|(f, _)| *f == feature) {
            Some((_, c)) => c.value(row),
            None => Ok(0),
        }
    }

    /// The catalog row of key `key`.
    pub fn row(&self, key: &str) -> Result<Option<usize>> {
        self.keys.get(key)
    }
}

/// Writes an atv file's bytes for `keys` (strictly increasing in byte order, non-empty, at
/// most 4,096 bytes each): for tests and benchmarks. The exporter writes the same layout
/// (`export/src/atrank_export/vocabfile.py`).
pub fn atv_bytes<K: AsRef<[u8]>>(keys: &[K]) -> Result<Vec<u8>> {
    let mut offsets = Vec::with_capacity(keys.len() + 1);
    let mut total = 0u64;
    offsets.push(0u64);
    for (i, k) in keys.iter().enumerate() {
        let k = k.as_ref();
        if k.is_empty() || k.len() as u64 > MAX_KEY {
            return Err(Error::invalid(format!(
                "key {i} has {} bytes (1..=4096 allowed)",
                k.len()
            )));
        }
        if i > 0 && keys[i - 1].as_ref() >= k {
            return Err(Error::invalid(format!(
                "keys {} and {i} are not strictly increasing",
                i - 1
            )));
        }
        total += k.len() as u64;
        offsets.push(total);
    }
    let mut out = Vec::with_capacity(HEADER + 8 * offsets.len() + total as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(keys.len() as u64).to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    for o in offsets {
        out.extend_from_slice(&o.to_le_bytes());
    }
    for k in keys {
        out.extend_from_slice(k.as_ref());
    }
    Ok(out)
}

/// Slots of the hashed index of `n` keys: the smallest power of two at least 4/3 n and above
/// n (a load of 3/8 to 3/4).
pub fn index_slots(n: u64) -> u64 {
    (n + n.div_ceil(3)).max(n + 1).next_power_of_two()
}

/// Writes the hashed index of an atv file's `keys` (in the file's order: key k has rank k):
/// for tests and benchmarks; the exporter writes the same layout
/// (`vocabfile.write_atv_index`), with its own placement order: any placement in which each
/// key is reached from its home slot through occupied slots is valid.
pub fn atv_index_bytes<K: AsRef<[u8]>>(keys: &[K], seed: u64) -> Result<Vec<u8>> {
    let n = keys.len() as u64;
    if n >= u64::from(u32::MAX) {
        return Err(Error::invalid(format!(
            "{n} keys: an index holds fewer than 2^32 - 1"
        )));
    }
    let slots = index_slots(n);
    let mask = slots - 1;
    let mut table = vec![0u64; slots as usize];
    let mut max_probes = 1u64;
    for (r, k) in keys.iter().enumerate() {
        let h = xxh3_64(k.as_ref(), seed);
        let mut i = h & mask;
        let mut probes = 1;
        while table[i as usize] != 0 {
            i = (i + 1) & mask;
            probes += 1;
        }
        table[i as usize] = (h >> 32) << 32 | (r as u64 + 1);
        max_probes = max_probes.max(probes);
    }
    let mut out = Vec::with_capacity(INDEX_HEADER + 8 * table.len());
    out.extend_from_slice(INDEX_MAGIC);
    for v in [n, slots, seed, max_probes] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in table {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
