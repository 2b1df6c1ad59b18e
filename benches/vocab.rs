//! The atv sorted string table against the `fst` crate's Map, for a 10M-id vocabulary
//! (docs/package-format-v3.md, "Why a sorted string table"):
//!
//!     cargo bench --no-default-features --bench vocab [-- N_KEYS]
//!
//! (release profile, no backend: only the vocab module is measured). Builds N_KEYS (default
//! 10,000,000) production-like ids (`item-<n>`, n a random 9-digit number), writes them as an
//! atv file (`atrank::vocab::atv_bytes`, the exporter's layout) and as an fst Map (key ->
//! rank), then for each: file size, open time (map + header checks; the atv file through
//! `PackageDir::map`, the runtime's path), RSS growth after open (VmRSS of /proc/self/status),
//! and look-up time per key, for hits and misses in random order, after one warm-up pass; and
//! the same atv file with its hashed index (`atrank::vocab::atv_index_bytes`, docs "The atv
//! index file"). The files go to $TMPDIR and are removed at the end.

use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use atrank::package::{sha256_hex, PackageDir};
use atrank::spec::FileDigest;
use atrank::vocab::{atv_bytes, atv_index_bytes, Atv};

/// splitmix64: a small deterministic generator (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A field of /proc/self/status, in KiB (0 where there is none).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resident KiB: (all, of them file-backed).
fn rss() -> (u64, u64) {
    (status_kib("VmRSS:"), status_kib("RssFile:"))
}

/// Median of 5 runs of `f` over `probes`, per probe.
fn per_lookup(probes: &[String], mut f: impl FnMut(&str) -> bool) -> (Duration, usize) {
    let mut found = 0;
    for p in probes {
        found += usize::from(f(p)); // warm-up: touch the pages once
    }
    let mut runs: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for p in probes {
                black_box(f(black_box(p)));
            }
            t.elapsed() / probes.len() as u32
        })
        .collect();
    runs.sort();
    (runs[2], found)
}

fn delta(before: (u64, u64)) -> (u64, u64) {
    let now = rss();
    (
        now.0.saturating_sub(before.0),
        now.1.saturating_sub(before.1),
    )
}

/// Median over 5 passes (after a checked warm-up) of the time per key of looking up `hits`
/// through [`Atv::get_many`] (the runtime's path for candidates), 1,000 keys per call.
fn through_get_many(atv: &Atv, hits: &[&[u8]]) -> Duration {
    let mut out = Vec::with_capacity(1000);
    let mut many = |check: bool| {
        let t = Instant::now();
        for chunk in hits.chunks(1000) {
            out.clear();
            atv.get_many(black_box(chunk), &mut out).unwrap();
            if check {
                assert!(out.iter().all(Option::is_some));
            }
            black_box(&out);
        }
        t.elapsed() / hits.len() as u32
    };
    many(true);
    let mut runs: Vec<Duration> = (0..5).map(|_| many(false)).collect();
    runs.sort();
    runs[2]
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let dir = std::env::temp_dir().join(format!("atrank-vocab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Keys: item-<9 digits>, unique, sorted by bytes.
    let t = Instant::now();
    let mut rng = Rng(42);
    let mut nums: Vec<u64> = (0..n + n / 8)
        .map(|_| 100_000_000 + rng.next() % 900_000_000)
        .collect();
    nums.sort_unstable();
    nums.dedup();
    nums.truncate(n);
    let mut keys: Vec<String> = nums.iter().map(|x| format!("item-{x}")).collect();
    keys.sort_unstable(); // same length: numeric order is byte order, but say it
    let n = keys.len();
    // Probes: hits (keys in random order) and misses (ids between the keys), 1M of each.
    let m = n.min(1_000_000);
    let hits: Vec<String> = (0..m)
        .map(|_| keys[(rng.next() % n as u64) as usize].clone())
        .collect();
    let misses: Vec<String> = (0..m)
        .map(|_| format!("item-{}x", 100_000_000 + rng.next() % 900_000_000))
        .collect();
    eprintln!("{n} keys generated in {:.1?}", t.elapsed());

    let atv_path = dir.join("vocab.atv");
    let t = Instant::now();
    let bytes = atv_bytes(&keys).unwrap();
    let digest = FileDigest {
        sha256: sha256_hex(&bytes),
        bytes: bytes.len() as u64,
    };
    std::fs::write(&atv_path, &bytes).unwrap();
    drop(bytes);
    let atv_write = t.elapsed();

    let index_path = dir.join("vocab.atvx");
    let t = Instant::now();
    let index = atv_index_bytes(&keys, 0).unwrap();
    let index_digest = FileDigest {
        sha256: sha256_hex(&index),
        bytes: index.len() as u64,
    };
    std::fs::write(&index_path, &index).unwrap();
    drop(index);
    let index_write = t.elapsed();

    let fst_path = dir.join("vocab.fst");
    let t = Instant::now();
    {
        let w = std::io::BufWriter::new(std::fs::File::create(&fst_path).unwrap());
        let mut b = fst::MapBuilder::new(w).unwrap();
        for (k, key) in keys.iter().enumerate() {
            b.insert(key, k as u64).unwrap();
        }
        b.into_inner().unwrap().flush().unwrap();
    }
    let fst_write = t.elapsed();
    drop(keys);

    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    let (atv_size, fst_size, index_size) = (size(&atv_path), size(&fst_path), size(&index_path));

    // atv: the runtime's path (checked resolve, mmap, no hash above 64 MiB, header checks).
    let pkg = PackageDir::open(&dir).unwrap();
    let rss0 = rss();
    let t = Instant::now();
    let map = pkg.map("vocab.atv", &digest, false).unwrap();
    let atv = Atv::open(map, "vocab.atv", Some(n as u64)).unwrap();
    let atv_open = t.elapsed();
    let atv_rss = delta(rss0);
    let (atv_hit, found) = per_lookup(&hits, |s| atv.get(s).unwrap().is_some());
    assert_eq!(found, m);
    let (atv_miss, found) = per_lookup(&misses, |s| atv.get(s).unwrap().is_some());
    assert_eq!(found, 0);
    let atv_rss_used = delta(rss0).0;
    // The same hits through get_many (the runtime's path for candidates), 1,000 per call.
    let hit_refs: Vec<&[u8]> = hits.iter().map(|h| h.as_bytes()).collect();
    let atv_many = through_get_many(&atv, &hit_refs);

    // atv + its hashed index (what the exporter writes): the same map, the index mapped too.
    let rss0 = rss();
    let t = Instant::now();
    let imap = pkg.map("vocab.atvx", &index_digest, false).unwrap();
    let indexed = atv.clone().with_index(imap, "vocab.atvx").unwrap();
    let index_open = t.elapsed();
    let index_rss = delta(rss0);
    let (index_hit, found) = per_lookup(&hits, |s| indexed.get(s).unwrap().is_some());
    assert_eq!(found, m);
    let (index_miss, found) = per_lookup(&misses, |s| indexed.get(s).unwrap().is_some());
    assert_eq!(found, 0);
    let index_rss_used = delta(rss0).0;
    let index_many = through_get_many(&indexed, &hit_refs);

    let rss0 = rss();
    let t = Instant::now();
    let file = std::fs::File::open(&fst_path).unwrap();
    // SAFETY: the file is this benchmark's own and is not modified while mapped.
    #[allow(unsafe_code)]
    let mmap = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    let fmap = fst::Map::new(mmap).unwrap();
    let fst_open = t.elapsed();
    let fst_rss = delta(rss0);
    let (fst_hit, found) = per_lookup(&hits, |s| fmap.get(s).is_some());
    assert_eq!(found, m);
    let (fst_miss, found) = per_lookup(&misses, |s| fmap.get(s).is_some());
    assert_eq!(found, 0);
    let fst_rss_used = delta(rss0).0;

    // For the record: what VerifyHashes::All costs on this file.
    let t = Instant::now();
    drop(pkg.map("vocab.atv", &digest, true).unwrap());
    let verify = t.elapsed();

    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("{n} keys (item-<9 digits>), {m} random hits and {m} random misses, release build");
    println!(
        "| | file | write | open | RSS growth after open (file-backed) | lookup hit | lookup miss | RSS growth after lookups |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, file, write, open, rss, hit, miss, used) in [
        (
            "atv",
            atv_size,
            atv_write,
            atv_open,
            atv_rss,
            atv_hit,
            atv_miss,
            atv_rss_used,
        ),
        (
            "atv + index (the index file)",
            index_size,
            index_write,
            index_open,
            index_rss,
            index_hit,
            index_miss,
            index_rss_used,
        ),
        (
            "fst",
            fst_size,
            fst_write,
            fst_open,
            fst_rss,
            fst_hit,
            fst_miss,
            fst_rss_used,
        ),
    ] {
        println!(
            "| {name} | {:.1} MiB | {:.2?} | {:.3?} | {} KiB ({} KiB), {:.3}% of the file | {} ns | {} ns | {:.1} MiB |",
            mib(file),
            write,
            open,
            rss.0,
            rss.1,
            rss.0 as f64 * 1024.0 * 100.0 / file as f64,
            hit.as_nanos(),
            miss.as_nanos(),
            used as f64 / 1024.0,
        );
    }
    println!(
        "atv hits through get_many, 1,000 keys per call: {} ns per key (one by one: {} ns)",
        atv_many.as_nanos(),
        atv_hit.as_nanos()
    );
    println!(
        "atv + index hits through get_many, 1,000 keys per call: {} ns per key (one by one: {} ns)",
        index_many.as_nanos(),
        index_hit.as_nanos()
    );
    println!("atv open with VerifyHashes::All (SHA-256 of the whole file): {verify:.2?}");
    let _ = std::fs::remove_dir_all(&dir);
}
