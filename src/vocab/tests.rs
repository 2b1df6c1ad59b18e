use super::*;

/// Written by the Python writer (tests/fixtures/vocab/README.md has the command).
const SMALL: &[u8] = include_bytes!("../../tests/fixtures/vocab/small.atv");
/// Its keys, in byte order, written out by hand.
const SMALL_KEYS: [&str; 8] = ["1", "10", "2", "a b", "apple", "item-42", "ß", "日本"];

fn small() -> Atv {
    Atv::open(SMALL.to_vec(), "vocab/small.atv", Some(8)).unwrap()
}

fn err(r: Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(e) => {
            assert_eq!(e.code(), crate::ErrorCode::InvalidPackage, "{e}");
            e.to_string()
        }
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// Strings that are not keys of the small file (near ones, prefixes, extensions, not UTF-8)
/// miss.
fn misses_of_small(atv: &Atv) {
    for miss in [
        "",
        "0",
        "100",
        "a",
        "apple ",
        "item-4",
        "item-420",
        "日",
        "日本人",
        "\u{10FFFF}",
    ] {
        assert_eq!(atv.get(miss).unwrap(), None, "{miss:?}");
    }
    // Bytes that are not UTF-8 can only miss.
    assert_eq!(atv.get_bytes(b"\xff\xfe").unwrap(), None);
    assert_eq!(atv.get_bytes(b"\xc3").unwrap(), None);
}

#[test]
fn reads_the_python_writers_file() {
    let atv = small();
    assert_eq!(atv.len(), 8);
    for (k, key) in SMALL_KEYS.iter().enumerate() {
        assert_eq!(atv.key(k).unwrap(), *key);
        assert_eq!(atv.get(key).unwrap(), Some(k), "{key}");
    }
    misses_of_small(&atv);
    assert!(err(atv.key(8)).contains("key 8 asked of a file of 8 keys"));
}

#[test]
fn rust_and_python_writers_agree() {
    assert_eq!(atv_bytes(&SMALL_KEYS).unwrap(), SMALL);
    assert!(atv_bytes(&["b", "a"]).is_err());
    assert!(atv_bytes(&["a", "a"]).is_err());
    assert!(atv_bytes(&[""]).is_err());
    assert!(atv_bytes(&["x".repeat(4097)]).is_err());
}

#[test]
fn empty_file_opens() {
    let atv = Atv::open(atv_bytes::<&str>(&[]).unwrap(), "e.atv", Some(0)).unwrap();
    assert!(atv.is_empty());
    assert_eq!(atv.get("x").unwrap(), None);
}

#[test]
fn open_refuses_damaged_files() {
    let open = |b: Vec<u8>, n: Option<u64>| Atv::open(b, "vocab/x.atv", n);
    // Truncated: anywhere, including inside the header.
    for cut in [0, 7, 20, 39, SMALL.len() - 1] {
        let msg = err(open(SMALL[..cut].to_vec(), None));
        assert!(msg.contains("vocab/x.atv"), "{msg}");
    }
    let mut longer = SMALL.to_vec();
    longer.push(0);
    assert!(err(open(longer, None)).contains("truncated or damaged"));
    let mut magic = SMALL.to_vec();
    magic[7] = b'2';
    assert!(err(open(magic, None)).contains("not an atv file"));
    assert!(err(open(SMALL.to_vec(), Some(9))).contains("holds 8 keys, but the spec says 9"));
    // n so large that the size overflows u64.
    let mut huge = SMALL.to_vec();
    huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err(open(huge, None)).contains("2^64"));
    let mut reserved = SMALL.to_vec();
    reserved[24] = 1;
    assert!(err(open(reserved, None)).contains("reserved"));
    // offsets[0] != 0 (the size still adds up).
    let mut first = SMALL.to_vec();
    first[32] = 1;
    assert!(err(open(first, None)).contains("offsets[0] = 1"));
}

/// Sets offsets[k] of the small file to `v`.
fn with_offset(k: usize, v: u64) -> Atv {
    let mut b = SMALL.to_vec();
    b[32 + 8 * k..40 + 8 * k].copy_from_slice(&v.to_le_bytes());
    Atv::open(b, "vocab/x.atv", None).unwrap()
}

#[test]
fn damaged_offsets_give_errors_or_misses_never_panics() {
    // Offsets past the end, out of order, or empty keys: each look-up that meets one is an
    // error naming the key, a look-up that does not is still answered.
    // The small file's offsets are [0, 1, 3, 4, 7, 12, 19, 21, 27].
    for (k, v) in [(4, 1 << 40), (4, u64::MAX), (4, 2), (3, 3), (5, 27)] {
        let atv = with_offset(k, v);
        // A key next to the damaged offset is refused when read.
        let damaged = [k - 1, k]
            .iter()
            .filter(|&&j| atv.key_bytes(j).is_err())
            .count();
        assert!(damaged > 0, "offsets[{k}] = {v}");
        // The binary search's first probe is key 4 (of 8): with offsets[4] or offsets[5]
        // damaged past the keys, every look-up meets it.
        if v > 27 {
            assert!(err(atv.get("apple")).contains("are damaged"));
        }
        // Every look-up is answered: a hit, a miss, or the error naming the damage.
        for key in SMALL_KEYS.iter().chain(&["zzz", "0", "b", "a c"]) {
            if let Err(e) = atv.get(key) {
                assert_eq!(e.code(), crate::ErrorCode::InvalidPackage);
                assert!(e.to_string().contains("are damaged"), "{e}");
            }
        }
    }
}

#[test]
fn unsorted_or_non_utf8_keys_never_panic() {
    // Keys out of order: binary search answers (a miss or a wrong rank), never reads outside.
    let mut b = atv_bytes(&["a", "b", "c", "d"]).unwrap();
    let keys_at = 32 + 8 * 5;
    b.swap(keys_at, keys_at + 3); // "d", "b", "c", "a"
    let atv = Atv::open(b, "u.atv", Some(4)).unwrap();
    for key in ["a", "b", "c", "d", "e"] {
        let got = atv.get(key).unwrap();
        assert!(got.is_none_or(|k| k < 4), "{key}: {got:?}");
    }
    // "d", first, is a fence key (every 64th key is held in memory): found where it is.
    assert_eq!(atv.get("d").unwrap(), Some(0));
    // A key that is not UTF-8: look-ups compare bytes; reading it as text is an error.
    let mut b = atv_bytes(&["a", "b"]).unwrap();
    let last = b.len() - 1;
    b[last] = 0xff;
    let atv = Atv::open(b, "u.atv", Some(2)).unwrap();
    assert_eq!(atv.get("a").unwrap(), Some(0));
    assert_eq!(atv.get("b").unwrap(), None);
    assert!(err(atv.key(1)).contains("not valid UTF-8"));
}

#[test]
fn xxh3_matches_reference_values() {
    // The published XXH3_64bits of the empty input; the rest computed by the C xxHash library
    // (Python `xxhash` 4.1.0, xxh3_64_intdigest), an independent implementation. The same
    // values are asserted in export/tests/test_vocabfile.py.
    let cases: [(&[u8], u64, u64); 8] = [
        (b"", 0, 0x2d06800538d394c2),
        (b"", 7, 0x913ae0873e9b7eb8),
        (b"a", 0, 0xe6c632b61e964e1f),
        (b"item-42", 0, 0x65865db6cdb57724),
        (b"item-42", 1234567, 0x1e894d30246cc21b),
        ("日本".as_bytes(), 0, 0x2c17fb837f1a1bc0),
        (&[b'x'; 100], 0, 0xc90984ffdf50ce42),
        (&[b'y'; 300], 99, 0x6e0f03e3f76acea7),
    ];
    for (data, seed, want) in cases {
        assert_eq!(xxh3_64(data, seed), want, "{data:?} seed {seed}");
    }
}

#[test]
fn table_applies_the_indices_rule() {
    let t = Table {
        atv: small(),
        hash_buckets: 5,
        seed: 1234567,
    };
    assert_eq!(t.rows(), 8 + 1 + 5);
    assert_eq!(t.index("1").unwrap(), 1);
    assert_eq!(t.index("日本").unwrap(), 8);
    // "item-42" is a key; "item-43" is not: 8 + 1 + xxh3_64("item-43", seed) % 5.
    assert_eq!(t.index("item-42").unwrap(), 6);
    let want = 9 + (xxhash_rust::xxh3::xxh3_64_with_seed(b"item-43", 1234567) % 5) as i64;
    assert_eq!(t.index("item-43").unwrap(), want);
    // 0x1e894d30246cc21b % 5 = 2 (the reference value above): the bucket of "item-42" had it
    // been unseen is 8 + 1 + 2. Check with an empty vocabulary.
    let empty = Table {
        atv: Atv::open(atv_bytes::<&str>(&[]).unwrap(), "e", None).unwrap(),
        hash_buckets: 5,
        seed: 1234567,
    };
    assert_eq!(empty.index("item-42").unwrap(), 1 + 2);
    for s in ["", "x", "item-43", "ß2"] {
        let i = t.index(s).unwrap();
        assert!((9..14).contains(&i), "{s:?} -> {i}");
    }
    let no_buckets = Table {
        atv: small(),
        hash_buckets: 0,
        seed: 0,
    };
    assert_eq!(no_buckets.index("item-43").unwrap(), 0);
    assert_eq!(no_buckets.rows(), 9);
}

#[test]
fn catalog_columns_are_checked_on_read() {
    let values: Vec<u8> = [0u32, 3, 9, 10]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let keys = Atv::open(atv_bytes(&["a", "b", "c", "d"]).unwrap(), "k", Some(4)).unwrap();
    assert!(err(Column::open(values[..15].to_vec(), "c.u32", 4, 10)).contains("15 bytes"));
    let col = Column::open(values, "catalog/item.category.u32", 4, 10).unwrap();
    let cat = Catalog {
        keys,
        columns: vec![(1, col)],
    };
    assert_eq!(cat.row("c").unwrap(), Some(2));
    assert_eq!(cat.value(0, 1).unwrap(), 0);
    assert_eq!(cat.value(1, 1).unwrap(), 3);
    assert_eq!(cat.value(2, 1).unwrap(), 9);
    assert_eq!(cat.value(2, 2).unwrap(), 0); // no column for feature 2
    let msg = err(cat.value(3, 1));
    assert!(
        msg.contains("catalog/item.category.u32: row 3 holds index 10"),
        "{msg}"
    );
    assert!(err(cat.value(4, 1)).contains("out of range"));
    assert!(err(cat.value(usize::MAX, 1)).contains("out of range"));
}

/// Look-ups through the in-memory fence keys (every 64th) give the rank a plain search of the
/// sorted keys gives, for every key and for absent keys before, between and after them, at
/// sizes around the stride.
/// `get_many` of `probes`: the same as `get_bytes` one by one, or an error when one of those
/// is one.
fn get_many_agrees(atv: &Atv, probes: &[Vec<u8>]) {
    let one: Result<Vec<Option<usize>>> = probes.iter().map(|p| atv.get_bytes(p)).collect();
    let mut many = vec![Some(usize::MAX)]; // appended to, not replaced
    match (one, atv.get_many(probes, &mut many)) {
        (Ok(one), Ok(())) => assert_eq!(many[1..], one[..]),
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "{a} / {b}"),
        (a, b) => panic!("one by one {a:?}, get_many {b:?}"),
    }
}

#[test]
fn fenced_lookup_matches_a_sorted_reference() {
    // 4,096 = 64²: the sizes around it have one or two upper fences.
    for n in [
        1usize, 63, 64, 65, 128, 129, 1000, 4095, 4096, 4097, 4160, 9000,
    ] {
        let mut keys: Vec<String> = (0..n).map(|k| format!("k{:07}", k * 7 + 3)).collect();
        keys.sort();
        let atv = Atv::open(atv_bytes(&keys).unwrap(), "f.atv", Some(n as u64)).unwrap();
        for (rank, key) in keys.iter().enumerate() {
            assert_eq!(atv.get(key).unwrap(), Some(rank), "n = {n}, {key}");
            // just below and just above a key: absent
            for probe in [format!("{key}0"), key[..key.len() - 1].to_owned()] {
                let want = keys.binary_search(&probe).ok();
                assert_eq!(atv.get(&probe).unwrap(), want, "n = {n}, {probe}");
            }
        }
        let mut probes: Vec<Vec<u8>> = Vec::new();
        for probe in ["", "a", "k", "k9999999", "z"] {
            assert_eq!(
                atv.get(probe).unwrap(),
                keys.binary_search(&probe.to_owned()).ok()
            );
            probes.push(probe.into());
        }
        // get_many over hits, misses and fence keys, in a scrambled order longer than
        // LOOKAHEAD.
        for (k, key) in keys.iter().enumerate() {
            let p = (k * 7919) % n;
            probes.push(keys[p].clone().into());
            probes.push(format!("{key}0").into());
        }
        get_many_agrees(&atv, &probes);
        let mut found = Vec::new();
        atv.get_many(&keys, &mut found).unwrap();
        assert_eq!(found, (0..n).map(Some).collect::<Vec<_>>(), "n = {n}");
    }
}

#[test]
fn get_many_on_damaged_files_agrees_with_get() {
    let probes: Vec<Vec<u8>> = SMALL_KEYS
        .iter()
        .chain(&["zzz", "0", "b", "a c", ""])
        .map(|k| k.as_bytes().to_vec())
        .collect();
    for (k, v) in [
        (4, 1 << 40),
        (4, u64::MAX),
        (4, 2),
        (3, 3),
        (5, 27),
        (7, 30),
    ] {
        let atv = with_offset(k, v);
        get_many_agrees(&atv, &probes);
        for p in &probes {
            get_many_agrees(&atv, std::slice::from_ref(p));
        }
    }
    // Out of order keys: the same (wrong) answers as one by one, no reads outside.
    let mut b = atv_bytes(&["a", "b", "c", "d"]).unwrap();
    let keys_at = 32 + 8 * 5;
    b.swap(keys_at, keys_at + 3);
    let atv = Atv::open(b, "u.atv", Some(4)).unwrap();
    get_many_agrees(&atv, &probes);
}

#[test]
fn touch_reads_inside_the_slice_only() {
    let b: Vec<u8> = (0..200u8).collect();
    assert_eq!(touch(&b, 0..0), 0);
    let (hi, lo) = (5, 10); // a reversed range is empty
    assert_eq!(touch(&b, lo..hi), 0);
    assert_eq!(touch(&b, 300..400), 0);
    // one byte per 64 from the start, and the last one
    assert_eq!(
        touch(&b, 0..usize::MAX),
        b[0] ^ b[64] ^ b[128] ^ b[192] ^ b[199]
    );
    assert_eq!(touch(&b, 1..2), b[1] ^ b[1]);
    assert_eq!(touch(&b, 3..70), b[3] ^ b[67] ^ b[69]);
}

/// Written by the Python writer (tests/fixtures/vocab/README.md has the command).
const SMALL_INDEX: &[u8] = include_bytes!("../../tests/fixtures/vocab/small.atvx");

fn indexed(keys: &[String], index: Vec<u8>) -> Result<Atv> {
    Atv::open(atv_bytes(keys).unwrap(), "f.atv", Some(keys.len() as u64))
        .unwrap()
        .with_index(index, "f.atvx")
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn reads_the_python_writers_index() {
    let atv = small()
        .with_index(SMALL_INDEX.to_vec(), "vocab/small.atvx")
        .unwrap();
    assert!(atv.has_index());
    // The header, by the format's rule: 8 keys -> 16 slots (>= 4/3 n, above n, a power of 2).
    assert_eq!(&SMALL_INDEX[..8], b"ATRVIX01");
    assert_eq!(u64_at(SMALL_INDEX, 8), 8);
    assert_eq!(u64_at(SMALL_INDEX, 16), 16);
    assert_eq!(SMALL_INDEX.len(), 40 + 8 * 16);
    // Every non-empty slot is one key's: its fingerprint is the high half of the key's hash.
    let seed = u64_at(SMALL_INDEX, 24);
    let mut ranks = Vec::new();
    for i in 0..16 {
        let v = u64_at(SMALL_INDEX, 40 + 8 * i);
        if v != 0 {
            let r = (v & 0xFFFF_FFFF) as usize - 1;
            assert_eq!(v >> 32, xxh3_64(SMALL_KEYS[r].as_bytes(), seed) >> 32);
            ranks.push(r);
        }
    }
    ranks.sort_unstable();
    assert_eq!(ranks, (0..8).collect::<Vec<_>>());
    for (k, key) in SMALL_KEYS.iter().enumerate() {
        assert_eq!(atv.get(key).unwrap(), Some(k), "{key}");
    }
    misses_of_small(&atv);
}

#[test]
fn index_slots_follow_the_rule() {
    for (n, slots) in [
        (0, 1),
        (1, 2),
        (2, 4),
        (3, 4),
        (4, 8),
        (6, 8),
        (7, 16),
        (12, 16),
        (13, 32),
    ] {
        assert_eq!(index_slots(n), slots, "n = {n}");
    }
    // 10^7 keys: 2^24 slots, a load of 0.6
    assert_eq!(index_slots(10_000_000), 1 << 24);
    for n in 1..5000u64 {
        let s = index_slots(n);
        assert!(
            s.is_power_of_two() && s > n && 3 * s >= 4 * n && (s == 2 || 3 * s / 2 < 4 * n + 8),
            "n = {n}: {s}"
        );
    }
}

#[test]
fn indexed_lookup_matches_the_sorted_search() {
    for n in [1usize, 2, 7, 64, 1000, 9000] {
        let mut keys: Vec<String> = (0..n).map(|k| format!("k{:07}", k * 7 + 3)).collect();
        keys.sort();
        let plain = Atv::open(atv_bytes(&keys).unwrap(), "f.atv", Some(n as u64)).unwrap();
        for seed in [0u64, 0x9E37_79B9_7F4A_7C15] {
            let atv = indexed(&keys, atv_index_bytes(&keys, seed).unwrap()).unwrap();
            let mut probes: Vec<Vec<u8>> = Vec::new();
            for (rank, key) in keys.iter().enumerate() {
                assert_eq!(atv.get(key).unwrap(), Some(rank), "n = {n}, {key}");
                probes.push(keys[(rank * 7919) % n].clone().into());
                probes.push(format!("{key}0").into());
                probes.push(key.as_bytes()[..key.len() - 1].to_vec());
            }
            probes.extend(["", "a", "k", "z"].map(|p| p.as_bytes().to_vec()));
            for p in &probes {
                assert_eq!(
                    atv.get_bytes(p).unwrap(),
                    plain.get_bytes(p).unwrap(),
                    "{p:?}"
                );
            }
            get_many_agrees(&atv, &probes);
            let mut found = Vec::new();
            atv.get_many(&keys, &mut found).unwrap();
            assert_eq!(found, (0..n).map(Some).collect::<Vec<_>>(), "n = {n}");
        }
    }
}

#[test]
fn with_index_refuses_damaged_headers() {
    let keys: Vec<String> = SMALL_KEYS.iter().map(|k| k.to_string()).collect();
    let good = atv_index_bytes(&keys, 0).unwrap();
    let set = |at: usize, v: u64| {
        let mut b = good.clone();
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        b
    };
    let mut magic = good.clone();
    magic[..8].copy_from_slice(b"ATRVOC01");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (good[..47].to_vec(), "too short"),
        (magic, "not an atv index"),
        (set(8, 9), "indexes 9 keys"),
        (set(16, 12), "power of two"),
        (set(16, 8), "power of two above"),
        (set(16, 32), "truncated or damaged"),
        (set(16, 1 << 61), "truncated or damaged"),
        (set(16, 1 << 63), "truncated or damaged"),
        (set(32, 0), "max_probes 0"),
        (set(32, 17), "max_probes 17"),
        (good[..good.len() - 8].to_vec(), "truncated or damaged"),
    ];
    for (bytes, want) in cases {
        let e = err(indexed(&keys, bytes));
        assert!(
            e.contains(want) && e.contains("f.atvx"),
            "{e} (wanted {want:?})"
        );
    }
    indexed(&keys, good).unwrap();
}

#[test]
fn damaged_slots_give_errors_or_misses_never_a_wrong_rank() {
    let mut keys: Vec<String> = (0..300).map(|k| format!("item-{}", k * 13)).collect();
    keys.sort();
    let good = atv_index_bytes(&keys, 7).unwrap();
    let slots = (good.len() - 40) / 8;
    let mut probes: Vec<Vec<u8>> = keys.iter().map(|k| k.clone().into_bytes()).collect();
    probes.extend((0..300).map(|k| format!("item-{}", k * 13 + 5).into_bytes()));
    // Each slot in turn: emptied, its rank moved to the next key's, zeroed, pushed past n, or
    // its fingerprint changed; and max_probes cut to 1.
    let mut cases = Vec::new();
    for i in 0..slots {
        let at = 40 + 8 * i;
        let v = u64_at(&good, at);
        for w in [
            0,
            v + 1,
            v & !0xFFFF_FFFF,
            (v & !0xFFFF_FFFF) | 301,
            v ^ (1 << 40),
        ] {
            let mut b = good.clone();
            b[at..at + 8].copy_from_slice(&w.to_le_bytes());
            cases.push(b);
        }
    }
    let mut one = good.clone();
    one[32..40].copy_from_slice(&1u64.to_le_bytes());
    cases.push(one);
    let (mut errors, mut misses) = (0, 0);
    for b in cases {
        let atv = indexed(&keys, b).unwrap();
        for p in &probes {
            match atv.get_bytes(p) {
                Ok(Some(r)) => assert_eq!(keys[r].as_bytes(), &p[..]),
                Ok(None) => {
                    misses += usize::from(
                        keys.binary_search(&String::from_utf8(p.clone()).unwrap())
                            .is_ok(),
                    )
                }
                Err(e) => {
                    assert_eq!(e.code(), crate::ErrorCode::InvalidPackage);
                    assert!(e.to_string().contains("damaged index"), "{e}");
                    errors += 1;
                }
            }
        }
        get_many_agrees(&atv, &probes);
    }
    // the damage was seen: present keys missed and damaged slots reported
    assert!(errors > 0 && misses > 0, "errors {errors}, misses {misses}");
}
