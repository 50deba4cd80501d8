"""A seeded uniform sample of a stream whose length is not known in advance (Algorithm R).

Used wherever `--sample N` picks objects (verify's checks, the source audit):
the sample is the only thing held, so memory is N items whatever the stream's
length. Same stream, same seed: same sample.
"""

from __future__ import annotations

import random
from typing import Iterable, TypeVar

T = TypeVar("T")


def reservoir(items: Iterable[T], size: int, *, seed: int) -> list[T]:
    """`size` items drawn uniformly from `items` (all of them when there are fewer), in stream order."""
    rng = random.Random(seed)
    sample: list[tuple[int, T]] = []
    for index, item in enumerate(items):
        if index < size:
            sample.append((index, item))
        else:
            slot = rng.randrange(index + 1)
            if slot < size:
                sample[slot] = (index, item)
    sample.sort(key=lambda pair: pair[0])
    return [item for _, item in sample]
