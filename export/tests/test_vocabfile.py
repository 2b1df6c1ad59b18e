"""atv files, the "Indices" rule and catalog columns (docs/package-format.md)."""

import struct

import numpy as np
import pytest

from atrank_export.vocabfile import (
    Atv,
    TableIndex,
    bucket,
    index_find,
    index_slots,
    index_table,
    read_column,
    sorted_keys,
    write_atv,
    write_atv_index,
    write_column,
    xxh3_64,
)


def parse_by_hand(data: bytes):
    """The doc's table, read with struct: an independent reader of the layout."""
    assert data[:8] == b"ATRVOC01"
    n, key_bytes, reserved = struct.unpack_from("<QQQ", data, 8)
    assert reserved == 0
    offsets = struct.unpack_from(f"<{n + 1}Q", data, 32)
    base = 32 + 8 * (n + 1)
    assert len(data) == base + key_bytes
    assert offsets[0] == 0 and offsets[-1] == key_bytes
    return [data[base + offsets[k] : base + offsets[k + 1]].decode("utf-8") for k in range(n)]


def test_exact_layout(tmp_path):
    p = tmp_path / "v.atv"
    write_atv(p, ["a", "bc", "é"])
    data = p.read_bytes()
    # Written out from the doc's table: magic, n = 3, key_bytes = 1 + 2 + 2, reserved,
    # offsets 0, 1, 3, 5, then the keys.
    expected = (b"ATRVOC01" + (3).to_bytes(8, "little") + (5).to_bytes(8, "little")
                + bytes(8) + b"".join(o.to_bytes(8, "little") for o in (0, 1, 3, 5))
                + b"abc\xc3\xa9")
    assert data == expected


def test_round_trip_and_find(tmp_path):
    rng = np.random.default_rng(7)
    raw = [f"item-{int(x)}" for x in rng.integers(0, 10**9, 5000)] + ["ß", "日本", "a\tb", "zz"]
    keys = sorted_keys(raw)
    assert len(keys) == len(set(raw))
    # sorted_keys is byte order: compare with a sort on the encoded bytes.
    assert [k.encode() for k in keys] == sorted({k.encode() for k in raw})
    p = tmp_path / "v.atv"
    write_atv(p, keys)
    assert parse_by_hand(p.read_bytes()) == keys
    atv = Atv.open(p)
    assert len(atv) == atv.len() == len(keys)
    assert [atv.key(k) for k in range(len(keys))] == keys
    for k, s in enumerate(keys):
        assert atv.find(s) == k + 1
    for miss in ["", "item-", "item-x", "zzz", "\x00", "A", keys[-1] + "\x00"]:
        assert atv.find(miss) == 0
    with pytest.raises(IndexError):
        atv.key(len(keys))


def test_empty_table(tmp_path):
    p = tmp_path / "v.atv"
    write_atv(p, [])
    assert len(p.read_bytes()) == 40
    atv = Atv.open(p)
    assert len(atv) == 0 and atv.find("x") == 0


@pytest.mark.parametrize(
    "keys, message",
    [
        (["b", "a"], "out of order"),
        (["a", "a"], "duplicate"),
        (["a", ""], "empty"),
        (["a", "b" * 4097], "more than 4096"),
        (["é", "z"], "out of order"),  # code point order: "z" < "é" in bytes too
        (["\ud800"], "UTF-8"),
    ],
)
def test_write_refuses(tmp_path, keys, message):
    with pytest.raises(ValueError, match=message):
        write_atv(tmp_path / "v.atv", keys)


def test_write_refuses_non_str(tmp_path):
    with pytest.raises(TypeError, match="not a str"):
        write_atv(tmp_path / "v.atv", ["a", 3])
    with pytest.raises(TypeError, match="not a str"):
        sorted_keys(["a", b"b"])


def test_4096_byte_key_is_allowed(tmp_path):
    p = tmp_path / "v.atv"
    write_atv(p, ["a" * 4096])
    assert Atv.open(p).find("a" * 4096) == 1


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: b"ATRVOC02" + d[8:], "magic"),
        (lambda d: d[:-1], "bytes"),
        (lambda d: d + b"x", "bytes"),
        (lambda d: d[:8] + (99).to_bytes(8, "little") + d[16:], "n = 99"),
        (lambda d: d[:10], "too short"),
    ],
)
def test_open_refuses_damaged(tmp_path, damage, message):
    p = tmp_path / "v.atv"
    write_atv(p, ["a", "b"])
    p.write_bytes(damage(p.read_bytes()))
    with pytest.raises(ValueError, match=message):
        Atv.open(p)


def test_xxh3_reference_values():
    # The published XXH3_64bits value of the empty input (xxHash's sanity checks).
    assert xxh3_64(b"") == 0x2D06800538D394C2
    # Computed by the Rust crate xxhash-rust 0.8 (xxh3_64_with_seed), an independent
    # implementation; the same values are asserted in src/vocab.rs's tests.
    for data, seed, value in RUST_XXH3:
        assert xxh3_64(data, seed) == value, (data, seed)


# (input, seed, xxh3_64) from xxhash_rust::xxh3::xxh3_64_with_seed (asserted in
# src/vocab/tests.rs, xxh3_matches_reference_values).
RUST_XXH3 = [
    (b"", 7, 0x913AE0873E9B7EB8),
    (b"a", 0, 0xE6C632B61E964E1F),
    (b"item-42", 0, 0x65865DB6CDB57724),
    (b"item-42", 1234567, 0x1E894D30246CC21B),
    ("日本".encode(), 0, 0x2C17FB837F1A1BC0),
    (b"x" * 100, 0, 0xC90984FFDF50CE42),
    (b"y" * 300, 99, 0x6E0F03E3F76ACEA7),
]


def test_indices_rule(tmp_path):
    keys = ["apple", "banana", "cherry"]
    p = tmp_path / "v.atv"
    write_atv(p, keys)
    for source in (keys, Atv.open(p)):
        t = TableIndex(source, hash_buckets=5, seed=11)
        assert t.rows == 3 + 1 + 5
        assert [t.index(k) for k in keys] == [1, 2, 3]
        assert t.index(None) == 0
        for s in ["durian", "", "Apple", "日本"]:
            expected = 3 + 1 + xxh3_64(s.encode("utf-8"), 11) % 5
            assert t.index(s) == expected == bucket(s, 3, 5, seed=11)
            assert 4 <= t.index(s) < t.rows
        out = t.indices(["banana", None, "durian"])
        assert out.dtype == np.int64
        assert out.tolist() == [2, 0, 3 + 1 + xxh3_64(b"durian", 11) % 5]
        no_buckets = TableIndex(source, hash_buckets=0)
        assert no_buckets.index("durian") == 0 and no_buckets.index("cherry") == 3
    with pytest.raises(ValueError):
        TableIndex(["b", "a"])


def test_column_round_trip(tmp_path):
    p = tmp_path / "c.u32"
    v = np.array([0, 1, 7, 2**32 - 1], dtype=np.int64)
    write_column(p, v)
    assert p.read_bytes() == struct.pack("<4I", 0, 1, 7, 2**32 - 1)
    assert read_column(p).tolist() == v.tolist()
    for bad in (np.array([-1]), np.array([2**32]), np.array([[1]]), np.array([1.5])):
        with pytest.raises(ValueError):
            write_column(p, bad)
    p.write_bytes(b"\x00" * 5)
    with pytest.raises(ValueError, match="whole number"):
        read_column(p)


def test_many_keys_written_vectorised(tmp_path):
    # 200k keys: the offsets come from a cumsum, the check is a C-level loop.
    keys = sorted_keys(str(i) for i in range(200_000))
    p = tmp_path / "v.atv"
    write_atv(p, keys)
    atv = Atv.open(p)
    assert len(atv) == 200_000
    assert atv.find("199999") == keys.index("199999") + 1
    assert atv.find("200000") == 0


def probe_by_hand(table: list[int], seed: int, key: bytes) -> int | None:
    """The slot holding ``key``'s rank + 1 by the doc's rule, read slot by slot (no max_probes:
    an independent check that every key is reachable from its home through full slots)."""
    h = xxh3_64(key, seed)
    i = h % len(table)
    for _ in range(len(table)):
        if table[i] == 0:
            return None
        if table[i] >> 32 == h >> 32:
            return i
        i = (i + 1) % len(table)
    return None


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 100, 5000])
def test_index_layout_and_lookups(tmp_path, n):
    keys = sorted_keys(f"item-{k * 7919 % 100003}" for k in range(n))
    write_atv(tmp_path / "v.atv", keys)
    write_atv_index(tmp_path / "v.atvx", keys, seed=11)
    data = (tmp_path / "v.atvx").read_bytes()
    assert data[:8] == b"ATRVIX01"
    n_, slots, seed, max_probes = struct.unpack_from("<QQQQ", data, 8)
    assert (n_, seed) == (n, 11)
    # the smallest power of two >= 4/3 n and > n
    assert slots == index_slots(n) and slots & (slots - 1) == 0 and slots > n
    assert 3 * slots >= 4 * n and (slots == 1 or 3 * slots < 8 * n + 8)
    assert len(data) == 40 + 8 * slots
    table = list(struct.unpack_from(f"<{slots}Q", data, 40))
    assert sum(v != 0 for v in table) == n
    longest = 0
    for r, k in enumerate(keys):
        enc = k.encode()
        i = probe_by_hand(table, 11, enc)
        assert i is not None and table[i] & 0xFFFFFFFF == r + 1, k
        longest = max(longest, (i - xxh3_64(enc, 11) % slots) % slots + 1)
    assert max_probes == max(longest, 1)
    atv = Atv.open(tmp_path / "v.atv")
    for r, k in enumerate(keys):
        assert index_find(data, atv, k) == r + 1
    for miss in ["", "item-", "item-100003", "zzz", "日本"]:
        assert index_find(data, atv, miss) == 0


def test_index_table_places_colliding_keys_in_rank_order():
    # hashes chosen by hand: tags 1..6 in the high halves, homes 3, 3, 4, 15, 15, 3
    tag = [(k + 1) << 32 for k in range(6)]
    homes = [3, 3, 4, 15, 15, 3]
    hashes = np.array([t | h for t, h in zip(tag, homes)], dtype=np.uint64)
    table, max_probes = index_table(hashes)
    assert len(table) == 8          # 6 keys: 8 slots (>= 8, > 6)
    # homes mod 8: 3, 3, 4, 7, 7, 3. Round 0: ranks 0, 2, 3 take 3, 4, 7. Round 1: rank 1
    # tries 4 (taken), rank 4 tries 0 (free), rank 5 tries 4 (taken). Round 2: ranks 1, 5
    # both try 5: rank 1 takes it. Round 3: rank 5 takes 6.
    want = {3: 0, 4: 2, 7: 3, 0: 4, 5: 1, 6: 5}
    for slot, r in want.items():
        assert int(table[slot]) == tag[r] | (r + 1), slot
    assert int(table[1]) == int(table[2]) == 0
    assert max_probes == 4


def test_index_command_upgrades_a_package(tmp_path):
    import json
    import shutil
    from pathlib import Path

    from atrank_export.cli import main
    from atrank_export.manifest import verify

    src = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "tiny"
    pkg = tmp_path / "tiny"
    shutil.copytree(src, pkg)
    spec = json.loads((pkg / "spec.json").read_text())
    for rel in spec["atv_index"].values():
        (pkg / rel).unlink()
    del spec["atv_index"]
    (pkg / "spec.json").write_text(json.dumps(spec))
    assert main(["manifest", "--package", str(pkg)]) == 0
    assert main(["index", "--package", str(pkg)]) == 0
    spec = json.loads((pkg / "spec.json").read_text())
    assert spec["atv_index"] == {"vocab/category.atv": "vocab/category.atvx",
                                 "vocab/item_id.atv": "vocab/item_id.atvx",
                                 "catalog/item.atv": "catalog/item.atvx"}
    assert verify(pkg) == []
    for atv_rel, rel in spec["atv_index"].items():
        # the same bytes as the committed fixture's (written by the same command)
        assert (pkg / rel).read_bytes() == (src / rel).read_bytes()
        atv = Atv.open(pkg / atv_rel)
        data = (pkg / rel).read_bytes()
        keys = atv.keys()          # a list (Atv is not a dict)
        assert [index_find(data, atv, k) for k in keys] == list(range(1, len(atv) + 1))
