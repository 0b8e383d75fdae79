"""Call latencies as a log-bucketed histogram: fixed size however many calls a run makes.

Shards send their histograms to the flow, which merges them; percentiles come out within ~3% (40 buckets
per decade, the bucket's geometric middle), mean and max exactly. Keeping every latency instead cost 32 MB
of flow memory per million calls.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

PER_DECADE = 40
FLOOR_MS = 0.01  # everything faster lands in bucket 0


@dataclass
class LatencyHistogram:
    buckets: dict[int, int] = field(default_factory=dict)  # bucket index -> calls (sparse)
    count: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0

    def add(self, ms: float) -> None:
        index = max(0, int(math.floor(math.log10(max(ms, FLOOR_MS) / FLOOR_MS) * PER_DECADE)))
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)

    def merge(self, other: "LatencyHistogram") -> None:
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += other.count
        self.total_ms += other.total_ms
        self.max_ms = max(self.max_ms, other.max_ms)

    @staticmethod
    def edge(index: float) -> float:
        return FLOOR_MS * 10 ** (index / PER_DECADE)

    def percentile(self, q: float) -> float | None:
        if not self.count:
            return None
        rank = q * (self.count - 1)  # the same rank as sorting every value and indexing it
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen > rank:
                return min(self.max_ms, self.edge(index + 0.5))
        return self.max_ms

    def mean(self) -> float | None:
        return self.total_ms / self.count if self.count else None

    def bars(self, bins: int = 12) -> list[tuple[str, int]]:
        """For a chart: the occupied range cut into at most `bins` log-spaced bars."""
        if not self.count:
            return []
        lo, hi = min(self.buckets), max(self.buckets) + 1
        width = max(1, math.ceil((hi - lo) / bins))
        bars = []
        for start in range(lo, hi, width):
            n = sum(self.buckets.get(i, 0) for i in range(start, start + width))
            bars.append((f"{_fmt(self.edge(start))}-{_fmt(self.edge(start + width))} ms", n))
        return bars

    def to_dict(self) -> dict:
        return {"buckets": {str(k): v for k, v in self.buckets.items()}, "count": self.count,
                "total_ms": self.total_ms, "max_ms": self.max_ms}

    @classmethod
    def from_dict(cls, data: dict) -> "LatencyHistogram":
        return cls({int(k): v for k, v in data["buckets"].items()}, data["count"], data["total_ms"], data["max_ms"])

    @classmethod
    def of(cls, values) -> "LatencyHistogram":
        histogram = cls()
        for value in values:
            histogram.add(value)
        return histogram


def _fmt(ms: float) -> str:
    return f"{ms:.0f}" if ms >= 10 else f"{ms:.2g}"
