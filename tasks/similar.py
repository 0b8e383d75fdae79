"""Near-duplicates across the whole catalog (schemas/similar.py says what a fingerprint is).

After a run's shards, the fingerprints the run made (its rows of `embeddings`) join the catalog's vector
index and are searched against everything in it; pairs at or above the run's threshold land in
`near_duplicates`, once per unordered pair (key_a < key_b) whichever run finds them.

The index lives in the output under `_index/`: generation N is `gNNNNNN.usearch` (an HNSW graph over the
fingerprints in float16, cosine; usearch) and `gNNNNNN-keys.parquet` (each label's key and digest, the label
being the row), and `CURRENT.json`, written last, names the generation and the runs it holds. The embeddings
table is the record and the index a cache of it: a run killed before CURRENT.json moved leaves the previous
generation, and the next run adds what that generation lacks (pairs already in the table are not written
twice). A similarity is the two fingerprints' cosine as the graph holds them (to float16's precision).
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from imgrec.connectors.output import Output, local_copies
from imgrec.schemas import similar

from . import failpoints, writing

log = logging.getLogger("imgrec.similar")

INDEX = "_index"
CURRENT = f"{INDEX}/CURRENT.json"
FORMAT = 3  # 3: one float16 graph; an index of another format is rebuilt from the embeddings table
_SCHEMA = pa.schema([pa.field("key", pa.string()), pa.field("digest", pa.string()),
                     pa.field("alive", pa.bool_())])
# How deep the graph is searched: at 1M fingerprints, recall@10 against exact search 0.93 at 128, 0.99 at
# 256 (bench/similar.py).
EXPANSION = 256
# Rows a rebuild takes at once: fingerprints converted to floats and searched (find_near_duplicates), keys
# moved into the Arrow array (CatalogIndex.add). A night's images under this many are one block.
_BLOCK = 65_536


def _new_index():
    from usearch.index import Index

    index = Index(ndim=similar.DIMENSIONS, metric="cos", dtype="f16")
    index.expansion_search = EXPANSION
    return index


def _names(generation: int) -> tuple[str, str]:
    return f"{INDEX}/g{generation:06d}.usearch", f"{INDEX}/g{generation:06d}-keys.parquet"


class _Strings:
    """An append-only column of strings (or None): the rows loaded with the index kept as one Arrow array (a
    few bytes a row, where a Python string costs ~60), the rows added since as a list."""

    def __init__(self, stored: pa.Array | None = None):
        self.stored = stored if stored is not None else pa.array([], pa.string())
        self.added: list[str | None] = []

    def __len__(self) -> int:
        return len(self.stored) + len(self.added)

    def __getitem__(self, row: int) -> str | None:
        row = int(row)
        return self.stored[row].as_py() if row < len(self.stored) else self.added[row - len(self.stored)]

    def extend(self, values: list[str | None]) -> None:
        self.added.extend(values)

    def compact(self) -> None:
        """The rows added so far join the Arrow array."""
        self.stored, self.added = self.arrow(), []

    def arrow(self) -> pa.Array:
        return pa.concat_arrays([self.stored, pa.array(self.added, pa.string())])


@dataclass
class CatalogIndex:
    """Every fingerprinted image of an output, searchable by fingerprint; labels are rows of `keys`."""
    index: Any = field(default_factory=_new_index)
    keys: _Strings = field(default_factory=_Strings)
    digests: _Strings = field(default_factory=_Strings)
    alive: bytearray = field(default_factory=bytearray)  # 1: the label's fingerprint is its key's current one
    runs: set[str] = field(default_factory=set)
    generation: int = 0
    _added_labels: dict[str, int] = field(default_factory=dict)  # the live labels of keys added since loading

    @classmethod
    def load(cls, output: Output, work: Path) -> CatalogIndex:
        """The current generation (an empty index where none was written yet, or of an older format)."""
        work.mkdir(parents=True, exist_ok=True)
        if not output.exists(CURRENT):
            return cls()
        from usearch.index import Index

        current = json.loads(output.get(CURRENT))
        if current.get("format") != FORMAT:
            log.info("the near-duplicate index is of an older format: rebuilt from the embeddings table")
            return cls()
        graph, keys = local_copies(output, _names(current["generation"]), work)
        table = pq.read_table(keys)
        index = Index.restore(str(graph))
        index.expansion_search = EXPANSION
        keys, digests, alive = (table[name].combine_chunks() for name in ("key", "digest", "alive"))
        return cls(index, _Strings(keys), _Strings(digests),
                   bytearray(alive.to_numpy(zero_copy_only=False).astype(np.uint8).tobytes()),
                   set(current["runs"]), current["generation"])

    def __len__(self) -> int:
        return len(self.index)

    def live_labels(self, keys: list[str]) -> dict[str, int]:
        """The live label of each of `keys` the index holds."""
        wanted = set(keys)
        found = {}
        if len(self.keys.stored) and wanted:
            hits = pc.is_in(self.keys.stored, value_set=pa.array(sorted(wanted), pa.string()))
            for row in np.flatnonzero(hits.to_numpy(zero_copy_only=False)):
                if self.alive[row]:
                    found[self.keys[row]] = int(row)
        found.update((key, label) for key, label in self._added_labels.items() if key in wanted)
        return found

    def label_of(self, key: str) -> int | None:
        return self.live_labels([key]).get(key)

    def add(self, keys: list[str], digests: list[str | None], vectors: np.ndarray) -> np.ndarray:
        """Labels of the images added; an image already in the index (changed, or fingerprinted again)
        replaces its old fingerprint."""
        for label in self.live_labels(keys).values():
            self.index.remove(label)
            self.alive[label] = 0
        first = len(self.keys)
        labels = np.arange(first, first + len(keys), dtype=np.int64)
        self.keys.extend(keys)
        self.digests.extend(digests)
        self.alive.extend(b"\x01" * len(keys))
        self._added_labels.update(zip(keys, labels.tolist()))
        if len(self._added_labels) > _BLOCK:  # a rebuild adds the whole catalog: keep it a few bytes a row
            self.keys.compact()
            self.digests.compact()
            self._added_labels.clear()
        if len(keys):
            self.index.add(labels, np.asarray(vectors, dtype=np.float32))
        return labels

    def search(self, vectors: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The `count` nearest labels of each vector and their similarities (-1 and 0 where fewer exist)."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, similar.DIMENSIONS)
        labels = np.full((len(vectors), count), -1, dtype=np.int64)
        sims = np.zeros((len(vectors), count))
        if not len(self.index) or not len(vectors):
            return labels, sims
        found = self.index.search(vectors, count)
        keys = np.asarray(found.keys, dtype=np.int64).reshape(len(vectors), -1)
        distances = np.asarray(found.distances).reshape(len(vectors), -1)
        # one vector's answer (usearch's Matches) has no counts: its keys are as many as it found
        counts = np.asarray(getattr(found, "counts", [keys.shape[1]])).reshape(-1)
        valid = np.arange(keys.shape[1])[None, :] < counts[:, None]  # past a row's count: NaN distances
        labels[:, :keys.shape[1]] = np.where(valid, keys, -1)
        sims[:, :keys.shape[1]] = np.clip(1.0 - np.where(valid, distances, 1.0), 0.0, 1.0)
        return labels, sims

    def vector(self, key: str) -> np.ndarray | None:
        """A key's fingerprint as the index holds it (float16 precision; None: not fingerprinted)."""
        label = self.label_of(key)
        return None if label is None else np.asarray(self.index.get(label), dtype=np.float32).reshape(-1)

    def nearest(self, vector: np.ndarray, top: int, leave_out: str | None = None) -> list[tuple[str, float]]:
        """The `top` catalog images nearest `vector`, most similar first (`leave_out`: the image itself)."""
        found, sims = self.search(vector[None, :], top + 1)
        hits = [(self.keys[label], round(float(sim), 4)) for label, sim in zip(found[0], sims[0])
                if label >= 0 and self.keys[label] != leave_out]
        return hits[:top]

    def save(self, output: Output, work: Path) -> None:
        """A new generation (its graph and keys), then CURRENT.json naming it (the moment it becomes the
        index), then what no generation needs goes."""
        generation = self.generation + 1
        graph_name, keys_name = _names(generation)
        graph, keys = work / "index.usearch", work / "keys.parquet"
        self.index.save(str(graph))
        alive = pa.array(np.frombuffer(bytes(self.alive), np.uint8).astype(bool))
        pq.write_table(pa.table({"key": self.keys.arrow(), "digest": self.digests.arrow(), "alive": alive},
                                schema=_SCHEMA), keys)
        output.put_file(graph, graph_name)
        output.put_file(keys, keys_name)
        failpoints.hit("index")  # the new generation written, not yet current
        output.put(CURRENT, json.dumps({"format": FORMAT, "generation": generation, "runs": sorted(self.runs),
                                        "images": len(self.index)}).encode())
        self.generation = generation
        keep = {CURRENT, graph_name, keys_name}
        output.delete(name for name in output.list(INDEX) if name not in keep)


def _pending(table_format, runs: set[str]) -> pa.Table | None:
    """Embeddings rows of the runs the index does not hold yet, the latest row per key. Only this fingerprint
    version's runs: an older version's vectors (another length) cannot be compared with these, and a new
    version fingerprints the catalog again."""
    try:
        listed = table_format.scan("embeddings", ["run_id", "model_version"])
    except FileNotFoundError:
        return None
    current = pc.equal(listed["model_version"], similar.VERSION)
    missing = sorted(set(listed.filter(current)["run_id"].unique().to_pylist()) - runs)
    if not missing:
        return None
    parts = [table_format.scan("embeddings", ["run_id", "source", "key", "digest", "vector"], run_id=run)
             for run in missing]
    rows = pa.concat_tables(parts).sort_by([("run_id", "descending")])
    seen: set[str] = set()
    latest = [n for n, key in enumerate(rows["key"].to_pylist()) if not (key in seen or seen.add(key))]
    return rows.take(pa.array(latest, pa.int64()))  # the latest run's row per key (rows: newest run first)


def _vectors(column: pa.ChunkedArray) -> np.ndarray:
    flat = pa.concat_arrays([chunk.flatten() for chunk in column.chunks]) if column.num_chunks else pa.array([])
    return np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, similar.DIMENSIONS)


def _known_pairs(table_format) -> set[tuple[str, str]]:
    try:
        known = table_format.scan("near_duplicates", ["key_a", "key_b"])
    except FileNotFoundError:
        return set()
    return set(zip(known["key_a"].to_pylist(), known["key_b"].to_pylist()))


def pairs_of(index: CatalogIndex, labels: np.ndarray, vectors: np.ndarray, threshold: float
             ) -> dict[tuple[str, str], tuple[float, str]]:
    """Each unordered pair of a searched image and an indexed one at or above `threshold`:
    (key_a, key_b) -> (similarity, kind)."""
    found, sims = index.search(vectors, similar.NEIGHBOURS + 1)
    pairs: dict[tuple[str, str], tuple[float, str]] = {}
    for own, row, row_sims in zip(labels, found, sims):
        for other, sim in zip(row, row_sims):
            if other < 0 or other == own or sim < threshold:
                continue
            a, b = sorted((index.keys[own], index.keys[other]))
            if a == b:
                continue
            exact = index.digests[own] is not None and index.digests[own] == index.digests[other]
            pairs[(a, b)] = (1.0 if exact else round(float(sim), 4), "exact" if exact else "near")
    return pairs


def groups(pairs: list[tuple[str, str]], limit: int = 10) -> list[list[str]]:
    """The images `pairs` join into groups (connected), largest first."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for a, b in pairs:
        parent[root(a)] = root(b)
    members: dict[str, list[str]] = {}
    for key in parent:
        members.setdefault(root(key), []).append(key)
    return sorted((sorted(m) for m in members.values()), key=lambda m: (-len(m), m[0]))[:limit]


def find_near_duplicates(job, table_format) -> dict[str, Any]:
    """Index this run's fingerprints (and any an interrupted run left out), write their new pairs."""
    output = job.output
    work = Path(tempfile.mkdtemp(prefix="index-", dir=job.work_dir))
    try:
        index = CatalogIndex.load(output, work)
        rows = _pending(table_format, index.runs)
        if rows is None:
            return {"fingerprinted": 0, "pairs": 0, "exact": 0, "indexed": len(index), "groups": []}
        found: dict[tuple[str, str], tuple[float, str]] = {}
        for start in range(0, rows.num_rows, _BLOCK):  # a rebuild's million vectors are not all floats at once
            block = rows.slice(start, _BLOCK)
            vectors = _vectors(block["vector"])
            labels = index.add(block["key"].to_pylist(), block["digest"].to_pylist(), vectors)
            found.update(pairs_of(index, labels, vectors, job.similar_threshold))
        index.runs |= set(rows["run_id"].unique().to_pylist())
        known = _known_pairs(table_format)
        found = {pair: value for pair, value in found.items() if pair not in known}
        source = rows["source"][0].as_py()
        new = [{"run_id": job.run_id, "source": source, "key_a": a, "key_b": b, "similarity": sim, "kind": kind}
               for (a, b), (sim, kind) in sorted(found.items())]
        if new:
            writing.commit_shard(output, job.run_date, f"{job.run_id}-similar", {"near_duplicates": new}, [],
                                 table_format)
        index.save(output, work)
        exact = sum(1 for row in new if row["kind"] == "exact")
        return {"fingerprinted": rows.num_rows, "pairs": len(new), "exact": exact, "indexed": len(index),
                "groups": groups(list(found))}
    finally:
        shutil.rmtree(work, ignore_errors=True)
