"""The demo's configuration: embedded regtest chain, SQLite in its own folder, fast timings.

Timings (all here, documented in README "Quick start"):
- share difficulty ``ASIC_DIFFICULTY`` on the ASIC port (3333), ``CPU_DIFFICULTY`` on the
  low-difficulty port (3334) for a real CPU miner; vardiff pinned (min = start = max);
- the network difficulty makes a pool block take about ``SHARES_PER_BLOCK`` ASIC shares
  (a few seconds with the simulated ASICs);
- the rest of the network finds a block every ``NETWORK_BLOCK_INTERVAL_S`` seconds on average,
  so a pool block reaches depth 101 (coinbase spendable) about 50 s after it was found;
- the payout service ticks every second and allocates a block 1 s after it was found;
- the web page on ``DemoPorts.web`` (8080) with a read token for ``WEB_DEMO_MINER``, kept in
  ``WEB_TOKEN_FILE`` in the demo folder (demo only: a production token is shown once).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from poolserver.bitcoin.embedded_chain import bits_for_shares

DEMO_DIR = "qazpool-demo"
CONFIG_NAME = "demo.toml"
ASIC_DIFFICULTY = 4e-6
CPU_DIFFICULTY = 1e-6
SHARES_PER_BLOCK = 12
NETWORK_BLOCK_INTERVAL_S = 0.6
PAYOUT_TICK_S = 1.0
MIN_PAYOUT_SATS = 100_000
WEB_DEMO_MINER = "aigerim"
WEB_TOKEN_FILE = "web-read-token.txt"


@dataclass(frozen=True)
class DemoPorts:
    stratum: int = 3333  # the ASIC port
    cpu: int = 3334  # low difficulty: a real CPU miner
    metrics: int = 9108
    web: int = 8080  # the pool page and API


def demo_toml(data_dir: Path, ports: DemoPorts, host: str = "127.0.0.1") -> str:
    """The demo config as TOML (every other option keeps its documented default)."""
    bits = bits_for_shares(SHARES_PER_BLOCK, ASIC_DIFFICULTY)
    return f"""# Written by `poolserver demo`: the demo's own config (not for production).
# Its books: `poolserver --config {data_dir / CONFIG_NAME} payouts balances`.
[pool]
name = "qazpool demo"
tag = "/qazpool-demo/"
data_dir = "{data_dir}"
log_level = "INFO"

[chain]
network = "regtest"
bits = "{bits:08x}"
persist = true
network_block_interval_s = {NETWORK_BLOCK_INTERVAL_S!r}

[[stratum.listeners]]
host = "{host}"
port = {ports.stratum}
start_difficulty = {ASIC_DIFFICULTY!r}
min_difficulty = {ASIC_DIFFICULTY!r}
max_difficulty = {ASIC_DIFFICULTY!r}

[[stratum.listeners]]
host = "{host}"
port = {ports.cpu}
start_difficulty = {CPU_DIFFICULTY!r}
min_difficulty = {CPU_DIFFICULTY!r}
max_difficulty = {CPU_DIFFICULTY!r}

[storage]
url = ""
retry_interval_s = 0.5

[metrics]
enabled = true
host = "127.0.0.1"
port = {ports.metrics}
db_poll_interval_s = 2.0

[web]
enabled = true
host = "127.0.0.1"
port = {ports.web}

[payouts]
tick_interval_s = {PAYOUT_TICK_S!r}
allocation_delay_s = 1.0
min_payout_sats = {MIN_PAYOUT_SATS}

[register]
enforce = "on"
poll_interval_s = 1.0
"""


def write_demo_config(data_dir: Path, ports: DemoPorts) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / CONFIG_NAME
    path.write_text(demo_toml(data_dir.resolve(), ports))
    return path


def demo_dir_problem(data_dir: Path, ports: DemoPorts) -> str | None:
    """Why the demo must not use ``data_dir`` as it is, or None. The demo only writes into a
    folder it made (``demo.toml`` there) or a new/empty one, never a pool's data dir; and it
    continues a folder only if its chain can continue (same network difficulty)."""
    import tomllib

    if not data_dir.exists() or not any(data_dir.iterdir()):
        return None
    existing = data_dir / CONFIG_NAME
    if not existing.exists():
        return (
            f"{data_dir} is not a demo folder (no {CONFIG_NAME}) and not empty; the demo never"
            " writes into another pool's data: choose another --dir"
        )
    try:
        old = tomllib.loads(existing.read_text()).get("chain", {}).get("bits")
    except (OSError, ValueError) as exc:
        return f"{existing}: unreadable ({exc}); run with --fresh to start over"
    new = tomllib.loads(demo_toml(data_dir, ports))["chain"]["bits"]
    if old != new:
        return (
            f"{data_dir} was made by another version of the demo (chain bits {old}, now {new}):"
            " its chain cannot continue; run with --fresh to start over"
        )
    return None
