"""Per-request seeds: every sampled request's seed derives from the run's seed and the request's own name
(problem id, sample, switch, rollout), so a result never depends on batch order, concurrency or process."""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from the parts, independent of batch order and process."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
