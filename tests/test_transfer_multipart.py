"""The multipart machinery's pure parts: the part-buffer pool (no server needed)."""

from __future__ import annotations

import threading

from migrate.checksums import MiB
from migrate.transfer_multipart import PartBuffers


def test_part_buffers_are_reused_not_reallocated() -> None:
    pool = PartBuffers(4 * MiB)
    other = pool.take(MiB)  # a part still in flight keeps the pool's free buffers
    first = pool.take(MiB)
    pool.give_back(first)
    again = pool.take(MiB)
    assert again is first
    # A shorter (last) part fits in a free buffer of a full part: no new allocation.
    pool.give_back(again)
    last = pool.take(MiB // 3)
    assert last is first and pool.allocations == 2
    pool.give_back(last)
    pool.give_back(other)


def test_idle_part_buffers_are_released_when_no_part_is_in_flight() -> None:
    """Whole objects granted by the byte budget never sit beside idle part buffers."""
    pool = PartBuffers(4 * MiB)
    lent = [pool.take(MiB) for _ in range(3)]
    for buf in lent[:2]:
        pool.give_back(buf)
    assert pool.held == 3 * MiB
    pool.give_back(lent[2])
    assert pool.held == 0


def test_part_buffers_never_hold_more_than_the_capacity() -> None:
    pool = PartBuffers(3 * MiB)
    lent = [pool.take(MiB) for _ in range(3)]
    assert pool.held == 3 * MiB
    # A fourth buffer (beyond what the byte budget grants) is made but never kept.
    extra = pool.take(MiB)
    assert pool.held == 3 * MiB
    for buf in [*lent[:2], extra]:
        pool.give_back(buf)
    assert pool.held == 3 * MiB and pool.peak_held == 3 * MiB
    # Another part size (a larger object's grown parts): free buffers are dropped to make room.
    big = pool.take(2 * MiB)
    assert len(big) == 2 * MiB and pool.held == 3 * MiB
    pool.give_back(big)
    pool.give_back(lent[2])
    assert pool.held == 0 and pool.peak_held <= pool.capacity


def test_part_buffers_under_threads_stay_within_the_capacity() -> None:
    pool = PartBuffers(8 * MiB)
    sizes = [MiB, MiB // 2, 2 * MiB, MiB]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(50):
                buf = pool.take(sizes[(n + i) % len(sizes)])
                buf[0] = n
                assert pool.held <= pool.capacity
                pool.give_back(buf)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert pool.peak_held <= pool.capacity
