"""extranonce1 allocation: unique per connection across the pool, never random.

Layout of the ``size``-byte value (big-endian as written in the coinbase)::

    | node id (node_bits) | process index (process_bits) | counter (the rest) |

Pool nodes get distinct node ids and each worker process of a node a distinct process index, so
two connections anywhere in the pool never share an extranonce1 (and so never hash the same
coinbase). A released value is kept out of circulation for ``resume_window_s`` so the miner that
held it can resume its session with it (``mining.subscribe [agent, session_id]``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class ExtranonceExhausted(RuntimeError):
    pass


class ExtranonceAllocator:
    def __init__(
        self,
        size: int = 4,
        node_id: int = 0,
        node_bits: int = 8,
        process_index: int = 0,
        process_bits: int = 0,
        resume_window_s: float = 300.0,
        first_counter: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 2 <= size <= 16:
            raise ValueError(f"extranonce1 size must be 2..16 bytes, got {size}")
        counter_bits = size * 8 - node_bits - process_bits
        if counter_bits < 8:
            raise ValueError(
                f"extranonce1 of {size} bytes leaves {counter_bits} counter bits after "
                f"{node_bits} node and {process_bits} process bits (need at least 8)"
            )
        if not 0 <= node_id < 1 << node_bits:
            raise ValueError(f"node_id must be 0..{(1 << node_bits) - 1}, got {node_id}")
        if not 0 <= process_index < 1 << process_bits:
            raise ValueError(f"process_index {process_index} does not fit {process_bits} bits")
        self.size = size
        self._counter_bits = counter_bits
        self._prefix = ((node_id << process_bits) | process_index) << counter_bits
        self._counter_mask = (1 << counter_bits) - 1
        self._next = first_counter & self._counter_mask
        self._in_use: set[bytes] = set()
        self._reserved: OrderedDict[bytes, float] = OrderedDict()  # en1 -> expiry
        self._window = resume_window_s
        self._clock = clock

    def _owns(self, en1: bytes) -> bool:
        return (
            len(en1) == self.size
            and int.from_bytes(en1, "big") & ~self._counter_mask == self._prefix
        )

    def _purge(self) -> None:
        now = self._clock()
        reserved = self._reserved
        while reserved:
            en1, expiry = next(iter(reserved.items()))
            if expiry > now:
                break
            del reserved[en1]

    def allocate(self, resume: bytes | None = None) -> bytes:
        """A fresh extranonce1, or ``resume`` if it is ours and nobody holds it now."""
        self._purge()
        if resume is not None and self._owns(resume) and resume not in self._in_use:
            self._reserved.pop(resume, None)
            self._in_use.add(resume)
            return resume
        for _ in range(self._counter_mask + 1):
            value = self._prefix | self._next
            self._next = (self._next + 1) & self._counter_mask
            en1 = value.to_bytes(self.size, "big")
            if en1 not in self._in_use and en1 not in self._reserved:
                self._in_use.add(en1)
                return en1
        raise ExtranonceExhausted(f"all {self._counter_mask + 1} extranonce1 values are in use")

    def release(self, en1: bytes) -> None:
        """The connection closed: keep ``en1`` reserved for its owner during the resume window."""
        if en1 in self._in_use:
            self._in_use.discard(en1)
            self._reserved[en1] = self._clock() + self._window
            self._reserved.move_to_end(en1)

    @property
    def in_use(self) -> int:
        return len(self._in_use)
