"""The small interfaces between the share path and the rest of the pool (../shared/DESIGN.md).

`stratum` defines what it needs; `poolserver` hands in implementations (node client / embedded
chain, storage journal, register). Data crosses these seams as frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class TemplateTx:
    """One template transaction. ``txid``/``wtxid`` are internal byte order (display reversed)."""

    data: bytes
    txid: bytes
    wtxid: bytes
    fee: int = 0
    weight: int = 0


@dataclass(frozen=True, slots=True)
class BlockTemplate:
    """What a getblocktemplate answer means to the pool, parsed once at the edge."""

    height: int
    version: int
    prevhash: bytes  # 32 bytes, internal (header) order
    bits: int
    target: int
    curtime: int
    mintime: int
    coinbase_value: int  # satoshis (subsidy + fees)
    transactions: tuple[TemplateTx, ...]
    default_witness_commitment: bytes | None  # the scriptPubKey, or None without segwit txs
    longpollid: str = ""
    network: str = "regtest"


class TemplateSource(Protocol):
    """A node (bitcoind over JSON-RPC) or the embedded chain."""

    async def get_template(self) -> BlockTemplate:
        """The current block template."""
        ...

    async def submit_block(self, block_hex: str) -> str | None:
        """bitcoind's verdict: None when accepted, else its reason string ("duplicate", ...)."""
        ...


@dataclass(frozen=True, slots=True)
class Job:
    """One job, built once per template and sent to every miner (never per miner)."""

    job_id: str
    template: BlockTemplate
    prevhash: bytes  # header order
    coinb1: bytes
    coinb2: bytes
    branch: tuple[bytes, ...]  # internal order, 32 bytes each
    version: int
    nbits: int
    ntime: int
    network_target: int
    clean_jobs: bool
    created_at: float  # time.time() when built

    @property
    def height(self) -> int:
        return self.template.height


@dataclass(frozen=True, slots=True)
class BlockCandidate:
    """A share whose hash met the network target: everything needed to assemble the block."""

    job: Job
    extranonce1: bytes
    extranonce2: bytes
    header: bytes  # the 80-byte header as hashed
    block_hash: bytes  # internal order
    account: str
    worker: str
    # time.monotonic() when the submit line was read (0.0: unknown); for the metric from the
    # share's arrival to submitblock (poolserver.bitcoin.blocks.BlockStats.submit_latency)
    arrived: float = 0.0


class BlockSink(Protocol):
    async def block_found(self, candidate: BlockCandidate) -> None:
        """Start ``submitblock`` to every node before any storage I/O, record the block
        concurrently; return once it is durably recorded (the local fsync'd record). Raise only
        if it could not be recorded anywhere -- the block has been submitted regardless."""
        ...


@dataclass(frozen=True, slots=True)
class AcceptedShare:
    """An accepted share, as the journal stores it (every field needed for the audit trail)."""

    account: str
    worker: str
    session_id: str  # hex extranonce1 of the connection
    peer: str  # source IP
    job_id: str
    height: int
    difficulty: float  # the difficulty the share was judged at (the job's)
    share_hash: bytes  # internal order
    is_block: bool
    created_at: datetime  # UTC, timezone-aware
    user_agent: str = ""
    extra: dict[str, str] = field(default_factory=dict)


class DuplicateShare(Exception):
    """The sink already holds a share with this header hash: the second line of defence behind
    the share path's in-memory duplicate set (a restart, another instance). The share is not
    stored again and must not be credited or acked as accepted."""


class ShareSink(Protocol):
    async def put(self, share: AcceptedShare) -> None:
        """Returns only when the share is durable; the miner's ack waits for it. Raises
        ``DuplicateShare`` when a share with the same ``share_hash`` is already stored."""
        ...


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""  # shown to the miner (client.show_message) when refused


class AccountPolicy(Protocol):
    async def authorize(self, account: str, worker: str, peer: str) -> Decision: ...


@dataclass(frozen=True, slots=True)
class AuthorizedMiner:
    """Handed to ``StratumServer(on_authorized=...)`` when a worker's authorize succeeds (the
    firmware probe's trigger). The callback must only enqueue: it runs on the share path."""

    peer: str  # IP address
    user_agent: str  # from mining.subscribe ("" when none was given)
    account: str
    worker: str
    version_mask: int  # granted version-rolling mask (0: the miner did not configure it)
    suggested_difficulty: float | None  # mining.suggest_difficulty or the password's d=
class SecurityEvents(Protocol):
    """The security event log as the share path sees it (implemented by
    ``poolserver.security.writer.SecurityEventWriter``). ``emit`` never blocks and never raises:
    it puts the event in a bounded queue that a writer task batches into the database, and
    counts a drop when the queue is full. Fields are plain values (str, int, float, bool)."""

    def emit(self, kind: str, **fields: object) -> None: ...


class NoSecurityEvents:
    """No security log (tests, a pool without storage): events are discarded."""

    def emit(self, kind: str, **fields: object) -> None:
        return None
