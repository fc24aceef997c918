"""`poolserver demo`: the whole pool in one command (issue 12).

- ``settings``: the demo's config (embedded chain, SQLite under ``./qazpool-demo/``, fast timings),
  written as a TOML file into the demo folder so the operator commands can be pointed at it;
- ``seed``: the demo miners in the register (valid BINs, licenses, machines, one suspension);
- ``asic``: simulated ASICs, real Stratum clients grinding real shares with the C hash core;
- ``figures``: what the view shows (pool counters and the database's ledger/payments);
- ``view``: the live terminal view (rich) or plain progress lines, and the closing summary with
  the hook list later features extend (``SUMMARY_HOOKS``).
"""
