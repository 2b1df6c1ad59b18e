"""Vocabulary and catalog files of package format 3 (docs/package-format.md).

* atv file (sorted string table): a header, ``n + 1`` u64 offsets and the keys concatenated,
  all little-endian. Keys are non-empty UTF-8, at most 4,096 bytes, strictly increasing in
  byte order, so a key's table index is its rank + 1 and lookup is a binary search.
* the "Indices" rule: a key maps to ``k + 1``; an unseen string to a hashed bucket
  ``n + 1 + xxh3_64(utf8(s), seed) % h`` when the table has ``h > 0`` buckets; else 0.
* atv index file: the hashed index of an atv file (linear probing over xxh3_64), so that a
  look-up reads one or two slots and one key instead of searching the sorted keys.
* catalog columns: ``rows`` u32 LE values.

numpy + xxhash only: the runtime (src/vocab.rs) reads the same bytes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import xxhash

MAGIC = b"ATRVOC01"
HEADER_BYTES = 32
MAX_KEY_BYTES = 4096
HASH_FUNCTION = "xxh3_64"

PathLike = str | os.PathLike


def sorted_keys(keys: Iterable[str]) -> list[str]:
    """The unique keys in atv order: by UTF-8 bytes (the same as Python's code point order)."""
    out = set()
    for k in keys:
        if not isinstance(k, str):
            raise TypeError(f"vocabulary key {k!r} is not a str")
        out.add(k)
    return sorted(out)


def _encode(keys: Sequence[str]) -> list[bytes]:
    enc = []
    for i, k in enumerate(keys):
        if not isinstance(k, str):
            raise TypeError(f"key {i} ({k!r}) is not a str")
        try:
            enc.append(k.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise ValueError(f"key {i} ({k!r}) is not encodable as UTF-8: {e}") from None
    return enc


def write_atv(path: PathLike, keys: Sequence[str]) -> None:
    """Write ``keys`` (strictly increasing in byte order, non-empty, <= 4096 bytes each) as an
    atv file. ValueError names the first offending key."""
    enc = _encode(keys)
    n = len(enc)
    lengths = np.fromiter(map(len, enc), dtype=np.int64, count=n)
    if n:
        if lengths.min() == 0:
            i = int(np.argmin(lengths))
            raise ValueError(f"key {i} is empty (keys must be non-empty)")
        if lengths.max() > MAX_KEY_BYTES:
            i = int(np.argmax(lengths))
            raise ValueError(
                f"key {i} ({enc[i][:40]!r}...) is {int(lengths[i])} bytes, "
                f"more than {MAX_KEY_BYTES}"
            )
        # bytes comparison is byte order; a C-level loop over the pairs.
        ordered = list(map(bytes.__lt__, enc[:-1], enc[1:]))
        if not all(ordered):
            i = ordered.index(False)
            what = "duplicate" if enc[i] == enc[i + 1] else "out of order"
            raise ValueError(
                f"keys {i} ({keys[i]!r}) and {i + 1} ({keys[i + 1]!r}) are {what}: "
                "keys must be strictly increasing in UTF-8 byte order (use sorted_keys)"
            )
    offsets = np.zeros(n + 1, dtype="<u8")
    np.cumsum(lengths, out=offsets[1:])
    key_bytes = int(offsets[-1])
    header = MAGIC + struct.pack("<QQQ", n, key_bytes, 0)
    with open(path, "wb") as f:
        f.write(header)
        f.write(offsets.tobytes())
        f.write(b"".join(enc))


INDEX_MAGIC = b"ATRVIX01"
INDEX_HEADER_BYTES = 40


def index_slots(n: int) -> int:
    """Slots of the hashed index of ``n`` keys: the smallest power of two at least 4/3 n and
    above n (a load of 3/8 to 3/4)."""
    least = max(n + -(-n // 3), n + 1)
    return 1 << (least - 1).bit_length()


def index_table(hashes: np.ndarray) -> tuple[np.ndarray, int]:
    """The slots of the hashed index of keys whose xxh3_64 hashes are ``hashes`` (uint64, in
    rank order), and the most slots any key's look-up reads (``max_probes``).

    Linear probing, placed in rounds (vectorised): in round p every key still unplaced
    tries slot ``(home + p) mod slots``; of those trying one free slot, the lowest rank takes
    it. A key placed in round p passed p slots that were taken, so a look-up that reads the
    slots from the key's home on, until an empty one, finds it."""
    n = len(hashes)
    slots = index_slots(n)
    mask = np.uint64(slots - 1)
    table = np.zeros(slots, dtype="<u8")
    home = (hashes & mask).astype(np.int64)
    tagged = (hashes >> np.uint64(32)) << np.uint64(32)
    pending = np.arange(n, dtype=np.int64)
    probe = 0
    while pending.size:
        pos = (home[pending] + probe) & (slots - 1)
        free = np.flatnonzero(table[pos] == 0)
        # pending is in rank order, so the first of each position is the lowest rank
        taken, first = np.unique(pos[free], return_index=True)
        winners = pending[free[first]]
        table[taken] = tagged[winners] | (winners + 1).astype(np.uint64)
        keep = np.ones(pending.size, dtype=bool)
        keep[free[first]] = False
        pending = pending[keep]
        probe += 1
    return table, max(probe, 1)


def write_atv_index(path: PathLike, keys: Sequence[str], seed: int = 0) -> None:
    """Write the hashed index of the atv file of ``keys`` (in its order: key k has rank k):
    a 40-byte header (magic, n, slots, seed, max_probes) and ``slots`` u64 LE, each 0 or
    ``(h >> 32) << 32 | (rank + 1)`` with h = xxh3_64(utf8(key), seed)."""
    enc = _encode(keys)
    if len(enc) >= 0xFFFFFFFF:
        raise ValueError(f"{len(enc)} keys: an index holds fewer than 2^32 - 1")
    hashes = np.fromiter((xxhash.xxh3_64_intdigest(k, seed=seed) for k in enc),
                         dtype=np.uint64, count=len(enc))
    table, max_probes = index_table(hashes)
    with open(path, "wb") as f:
        f.write(INDEX_MAGIC + struct.pack("<QQQQ", len(enc), len(table), seed, max_probes))
        f.write(table.tobytes())


def index_find(index: bytes | np.ndarray, atv: Atv, s: str) -> int:
    """``k + 1`` when ``s`` is key k of ``atv``, else 0, through its hashed index (the bytes
    of an index file): the reference look-up (tests; the runtime is src/vocab.rs)."""
    data = np.frombuffer(bytes(index), dtype=np.uint8)
    if bytes(data[:8]) != INDEX_MAGIC:
        raise ValueError("not an atv index")
    n, slots, seed, max_probes = struct.unpack("<QQQQ", bytes(data[8:40]))
    table = data[INDEX_HEADER_BYTES:].view("<u8")
    if n != len(atv) or len(table) != slots:
        raise ValueError("the index does not fit the atv file")
    target = s.encode("utf-8", errors="surrogatepass")
    h = xxhash.xxh3_64_intdigest(target, seed=seed)
    i = h & (slots - 1)
    for _ in range(max_probes):
        v = int(table[i])
        if v == 0:
            return 0
        r = v & 0xFFFFFFFF
        if v >> 32 == h >> 32 and 1 <= r <= n and atv.key_bytes(r - 1) == target:
            return r
        i = (i + 1) & (slots - 1)
    return 0


class Atv:
    """An atv file mapped read-only (numpy memmap). ``find`` is a binary search over the
    mapped bytes; nothing is parsed or copied at open."""

    def __init__(self, data: np.ndarray, path: str = "<bytes>"):
        self.path = path
        size = data.shape[0]
        if size < HEADER_BYTES + 8:
            raise ValueError(f"{path}: {size} bytes is too short for an atv file")
        if bytes(data[:8]) != MAGIC:
            raise ValueError(f"{path}: bad magic {bytes(data[:8])!r} (expected {MAGIC!r})")
        n, key_bytes, reserved = struct.unpack("<QQQ", bytes(data[8:32]))
        if reserved != 0:
            raise ValueError(f"{path}: reserved header field is {reserved}, expected 0")
        expected = HEADER_BYTES + 8 * (n + 1) + key_bytes
        if size != expected:
            raise ValueError(
                f"{path}: {size} bytes, but n = {n} and key_bytes = {key_bytes} "
                f"make {expected}"
            )
        self._n = n
        self._offsets = data[HEADER_BYTES : HEADER_BYTES + 8 * (n + 1)].view("<u8")
        self._keys = data[HEADER_BYTES + 8 * (n + 1) :]
        self._key_bytes = key_bytes

    @classmethod
    def open(cls, path: PathLike) -> Atv:
        size = os.path.getsize(path)
        if size < HEADER_BYTES + 8:
            raise ValueError(f"{path}: {size} bytes is too short for an atv file")
        return cls(np.memmap(path, dtype=np.uint8, mode="r"), str(path))

    def __len__(self) -> int:
        return self._n

    def len(self) -> int:
        return self._n

    def _key_bytes_at(self, k: int) -> bytes:
        a, b = int(self._offsets[k]), int(self._offsets[k + 1])
        if not a <= b <= self._key_bytes:
            raise ValueError(f"{self.path}: offsets of key {k} ({a}..{b}) are damaged")
        return bytes(self._keys[a:b])

    def key_bytes(self, k: int) -> bytes:
        if not 0 <= k < self._n:
            raise IndexError(f"key {k} out of range (n = {self._n})")
        return self._key_bytes_at(k)

    def key(self, k: int) -> str:
        if not 0 <= k < self._n:
            raise IndexError(f"key {k} out of range (n = {self._n})")
        return self._key_bytes_at(k).decode("utf-8")

    def keys(self) -> list[str]:
        return [self.key(k) for k in range(self._n)]

    def find(self, s: str) -> int:
        """``k + 1`` when ``s`` is key k, else 0."""
        try:
            target = s.encode("utf-8")
        except UnicodeEncodeError:
            return 0
        lo, hi = 0, self._n
        while lo < hi:
            mid = (lo + hi) // 2
            key = self._key_bytes_at(mid)
            if key < target:
                lo = mid + 1
            elif key > target:
                hi = mid
            else:
                return mid + 1
        return 0


def xxh3_64(b: bytes, seed: int = 0) -> int:
    return xxhash.xxh3_64_intdigest(b, seed=seed)


def bucket(s: str, size: int, hash_buckets: int, seed: int = 0) -> int:
    """The hashed bucket of an unseen string: ``size + 1 + xxh3_64(utf8(s), seed) % hash_buckets``
    (0 when the table has no buckets)."""
    if hash_buckets <= 0:
        return 0
    return size + 1 + xxh3_64(s.encode("utf-8"), seed) % hash_buckets


class TableIndex:
    """The doc's "Indices" rule for one table: key k -> k + 1, unseen -> hashed bucket or 0,
    missing (None) -> 0."""

    def __init__(self, keys_or_atv: Atv | Sequence[str], hash_buckets: int = 0, seed: int = 0):
        if hash_buckets < 0:
            raise ValueError(f"hash_buckets must be >= 0, got {hash_buckets}")
        self.hash_buckets = int(hash_buckets)
        self.seed = int(seed)
        if isinstance(keys_or_atv, Atv):
            self._atv: Atv | None = keys_or_atv
            self._map: dict[str, int] | None = None
            self.size = len(keys_or_atv)
        else:
            keys = list(keys_or_atv)
            enc = _encode(keys)
            if not all(map(bytes.__lt__, enc[:-1], enc[1:])):
                raise ValueError("keys must be strictly increasing in UTF-8 byte order")
            self._atv = None
            self._map = {k: i + 1 for i, k in enumerate(keys)}
            self.size = len(keys)

    @property
    def rows(self) -> int:
        """Rows of the table's embedding: size + 1 + hash_buckets."""
        return self.size + 1 + self.hash_buckets

    def index(self, s: str | None) -> int:
        if s is None:
            return 0
        k = self._atv.find(s) if self._atv is not None else self._map.get(s, 0)
        if k:
            return k
        return bucket(s, self.size, self.hash_buckets, self.seed)

    def indices(self, values: Iterable[str | None]) -> np.ndarray:
        return np.fromiter((self.index(s) for s in values), dtype=np.int64)


def write_column(path: PathLike, values: np.ndarray) -> None:
    """A catalog column: u32 LE table indices."""
    v = np.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"a column is 1-D, got shape {v.shape}")
    if v.size and (not np.issubdtype(v.dtype, np.integer)):
        raise ValueError(f"a column holds integers, got {v.dtype}")
    if v.size and (int(v.min()) < 0 or int(v.max()) > 0xFFFFFFFF):
        raise ValueError("column values must be in [0, 2^32)")
    Path(path).write_bytes(v.astype("<u4").tobytes())


def read_column(path: PathLike) -> np.ndarray:
    data = Path(path).read_bytes()
    if len(data) % 4:
        raise ValueError(f"{path}: {len(data)} bytes is not a whole number of u32 values")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)
