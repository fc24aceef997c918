"""The pool web page and read-only JSON API (issue 16), served by the pool process on
``[web]`` host:port (default 127.0.0.1:8080, behind a TLS reverse proxy).

- ``queries``: the read-only query layer over storage (reusing the repositories);
- ``tokens``: miners' read tokens (``web_tokens``, SHA-256 only) and the regulator's token;
- ``params``: parameter checks (422 naming the field); ``ratelimit``: per-IP token buckets;
- ``handlers`` / ``app``: routes, middlewares (no traceback ever reaches a client), the server;
- ``openapi``: the hand-written OpenAPI schema; ``stats``: request counters for the metrics;
- ``static/``: the page (HTML, CSS, a small script; kk/ru/en strings in ``i18n.js``).
"""

from __future__ import annotations

from typing import Any

from poolserver.web.stats import WebStats


def check_web_config(wc: Any) -> None:
    """Refuse bad ``[web]`` options at startup, naming them (ValueError)."""
    from poolserver.web.ratelimit import RateLimiter
    from poolserver.web.tokens import check_hash_setting

    check_hash_setting(wc.regulator_token_sha256, "web.regulator_token_sha256")
    RateLimiter(wc.rate_limit_per_minute, wc.rate_limit_burst)
    if not 0 <= wc.port <= 65535:
        raise ValueError(f"web.port: must be 0..65535, got {wc.port}")
    for lang in wc.languages:
        if lang not in ("kk", "ru", "en"):
            raise ValueError(f"web.languages: {lang!r} is not one of kk, ru, en")
    if not wc.languages:
        raise ValueError("web.languages: name at least one of kk, ru, en")
    if wc.hashrate_window_s < 60 or wc.worker_history_h < 1:
        raise ValueError("web.hashrate_window_s must be >= 60 and web.worker_history_h >= 1")


def web_context(config: Any, engine: Any, figures: Any) -> Any:
    """The handlers' context from the pool's typed config (errors name the option)."""
    from poolserver.web.handlers import WebContext
    from poolserver.web.tokens import check_hash_setting

    wc = config.web
    check_web_config(wc)
    return WebContext(
        engine=engine, config=wc, pool_name=config.pool.name, pplns_k=config.payouts.pplns_k,
        default_fee_bps=config.payouts.pool_fee_bps, figures=figures,
        regulator_sha256=check_hash_setting(wc.regulator_token_sha256,
                                            "web.regulator_token_sha256"),
        network=config.register.network or config.chain.network,
    )  # fmt: skip


__all__ = ["WebStats", "check_web_config", "web_context"]
