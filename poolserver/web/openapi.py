"""The API's OpenAPI 3.1 schema, written by hand and served at ``/api/v1/openapi.json``.

``tests/test_web_api.py`` keeps it in step with the routes (``poolserver.web.app.routes``): the
same paths, and every answer the tests receive validates against the schema's response shape.
"""

from __future__ import annotations

from typing import Any

from poolserver import __version__

INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
TIME = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC (Z)"}
SATS = {"type": "integer", "minimum": 0, "description": "satoshis"}
CURSOR = {"type": ["string", "null"], "description": "pass as ?cursor= for the next page"}


def _obj(props: dict[str, Any], nullable: bool = False) -> dict[str, Any]:
    return {"type": ["object", "null"] if nullable else "object", "properties": props,
            "required": sorted(props), "additionalProperties": False}  # fmt: skip


def _null(s: dict[str, Any]) -> dict[str, Any]:
    t = s["type"]
    return {**s, "type": [t, "null"] if isinstance(t, str) else t}


def _page(item: dict[str, Any], account: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {"items": {"type": "array", "items": item}, "next_cursor": CURSOR}
    if account:
        props["account"] = STR
    return _obj(props)


BLOCK = _obj({
    "height": INT, "hash": STR, "reward_sats": SATS,
    "status": {"enum": ["pending", "matured", "orphaned", "rejected"]},
    "confirmations": INT, "found_at": TIME,
    "allocation": _obj({"reward_sats": SATS, "pool_fee_sats": SATS, "miners": INT,
                        "policy": STR, "inputs_hash": STR}, nullable=True),
})  # fmt: skip
POOL = _obj({
    "name": STR, "languages": {"type": "array", "items": {"enum": ["kk", "ru", "en"]}},
    "time": TIME, "hashrate_hs": NUM, "hashrate_window_s": INT, "workers": INT, "miners": INT,
    "network_difficulty": NUM, "height": INT, "blocks_found": INT,
    "last_blocks": {"type": "array", "items": BLOCK},
    "fee_bps": {"type": "integer", "description": "pool fee in basis points (100 = 1 %)"},
    "pplns": _obj({"k": STR, "window_difficulty": NUM, "window_fill": NUM}),
})  # fmt: skip
POINT = _obj({"start": TIME, "hashrate_hs": NUM, "shares": INT})
HASHRATE = _obj({"bucket_s": INT, "points": {"type": "array", "items": POINT}})
WORKER = _obj({"worker": STR, "last_share_at": TIME, "hashrate_hs": NUM, "shares": INT})
WORKERS = _obj({"account": STR, "hashrate_window_s": INT,
                "items": {"type": "array", "items": WORKER}})  # fmt: skip
BALANCE = _obj({"account": STR, "immature_sats": SATS, "mature_sats": INT,
                "pending_payout_sats": SATS, "paid_sats": SATS})  # fmt: skip
PAYMENT = _obj({
    "created_at": TIME, "amount_sats": SATS, "network_fee_sats": SATS, "received_sats": SATS,
    "address": STR, "txid": _null(STR),
    "status": {"enum": ["pending", "broadcast", "confirmed", "failed"]},
})  # fmt: skip
DISTRIBUTION = _obj({
    "kind": {"const": "distribution"}, "account": STR, "height": INT, "block_hash": STR,
    "found_at": TIME, "gross_sats": SATS, "fee_sats": SATS, "net_sats": SATS,
    "address": _null(STR), "txids": {"type": "array", "items": STR},
    "status": {"enum": ["immature", "orphaned", "credited", "pending", "broadcast",
                        "confirmed"]},
})  # fmt: skip
LICENSE = _obj({
    "state": {"enum": ["active", "expired", "suspended", "revoked", "none"]},
    "number": _null(STR), "issued_on": _null(STR), "expires_on": _null(STR),
})  # fmt: skip
REG_ITEM = _obj({
    "account": STR, "iin_bin": STR, "id_kind": {"enum": ["IIN", "BIN"]}, "legal_name": STR,
    "license": LICENSE, "workers": INT, "distributions": INT, "net_sats": INT,
})  # fmt: skip
REG_LIST = _obj({"from": TIME, "to": TIME, "items": {"type": "array", "items": REG_ITEM}})
REG_WORKER = _obj({"worker": STR, "first_share_at": TIME, "last_share_at": TIME,
                   "shares": INT})  # fmt: skip
REG_MINER = _obj({
    "account": STR, "iin_bin": STR, "id_kind": {"enum": ["IIN", "BIN"]}, "legal_name": STR,
    "license": LICENSE, "from": TIME, "to": TIME,
    "workers": {"type": "array", "items": REG_WORKER},
    "hashrate_history": {"type": "array", "items": POINT},
    "distributions": {"type": "array", "items": DISTRIBUTION},
})  # fmt: skip
ERROR = {"type": "object", "properties": {"error": STR, "detail": STR, "field": STR},
         "required": ["error", "detail"]}  # fmt: skip

_P = {
    "limit": {"name": "limit", "in": "query", "schema": {**INT, "minimum": 1, "maximum": 200,
              "default": 20}},
    "cursor": {"name": "cursor", "in": "query", "schema": STR,
               "description": "next_cursor of the previous page (opaque)"},
    "account": {"name": "account", "in": "path", "required": True,
                "schema": {**STR, "pattern": "^[A-Za-z0-9_\\-@]{1,64}$"}},
    "from": {"name": "from", "in": "query", "schema": {**STR, "format": "date"},
             "description": "first day (Kazakhstan calendar, UTC+5), inclusive"},
    "to": {"name": "to", "in": "query", "schema": {**STR, "format": "date"},
           "description": "last day (Kazakhstan calendar, UTC+5), inclusive; at most 366 days"},
    "hours": {"name": "hours", "in": "query",
              "schema": {**INT, "minimum": 1, "maximum": 168, "default": 24}},
}  # fmt: skip


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {401: "no token or a wrong regulator token", 404: "not found (for an account: "
            "no such account OR a wrong token, the same answer)",
            422: "a bad parameter (the answer names the field)",
            429: "rate limited (see Retry-After)"}  # fmt: skip
    return {str(c): _json({"$ref": "#/components/schemas/Error"}, text[c]) for c in codes}


def _op(
    summary: str, schema: dict[str, Any], params: list[str], tag: str,
    secured: str | None = None, errors: tuple[int, ...] = (422, 429),
) -> dict[str, Any]:  # fmt: skip
    op: dict[str, Any] = {
        "summary": summary, "tags": [tag],
        "parameters": [dict(_P[p]) for p in params],
        "responses": {"200": _json(schema), **_errors(*errors)},
    }  # fmt: skip
    if secured:
        op["security"] = [{secured: []}]
    return op


def openapi_schema() -> dict[str, Any]:
    acc = ("minerToken", (401, 404, 422, 429))
    reg = ("regulatorToken", (401, 404, 422, 429))
    paths = {
        "/api/v1/pool": {"get": _op("Pool overview: hashrate, workers, network difficulty, "
                                    "last blocks, fee, PPLNS window", POOL, [], "pool")},
        "/api/v1/pool/hashrate": {"get": _op("Pool hashrate history (about 96 points)",
                                             HASHRATE, ["hours"], "pool")},
        "/api/v1/blocks": {"get": _op("Found blocks, newest first", _page(BLOCK),
                                      ["limit", "cursor"], "pool")},
        "/api/v1/accounts/{account}/workers": {"get": _op(
            "The account's workers: last share, hashrate", WORKERS, ["account"], "account",
            *acc)},
        "/api/v1/accounts/{account}/balance": {"get": _op(
            "The account's balance: immature, mature (unpaid), pending payout, paid", BALANCE,
            ["account"], "account", *acc)},
        "/api/v1/accounts/{account}/payments": {"get": _op(
            "The account's payments with txids, newest first", _page(PAYMENT, True),
            ["account", "limit", "cursor"], "account", *acc)},
        "/api/v1/accounts/{account}/distributions": {"get": _op(
            "The account's distributions (per block: gross, fee, net, txids), newest first",
            _page(DISTRIBUTION, True), ["account", "limit", "cursor", "from", "to"], "account",
            *acc)},
        "/api/v1/regulator/miners": {"get": _op(
            "Every registered miner: BIN, license state, workers and distributions in the "
            "range", REG_LIST, ["from", "to"], "regulator", *reg)},
        "/api/v1/regulator/miners/{account}": {"get": _op(
            "One miner: BIN, license, workers, hourly hashrate history and distributions in "
            "the range", REG_MINER, ["account", "from", "to"], "regulator", *reg)},
        "/api/v1/openapi.json": {"get": {"summary": "This schema", "tags": ["meta"],
                                         "responses": {"200": _json({"type": "object"})}}},
    }  # fmt: skip
    for p in ("/api/v1/regulator/miners", "/api/v1/regulator/miners/{account}"):
        for param in paths[p]["get"]["parameters"]:
            if param["name"] in ("from", "to"):
                param["required"] = True
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "qazpool read-only API", "version": __version__,
            "description": "Pool figures are public; an account's data needs that miner's "
            "read token (issued by the operator: `poolserver web token issue ACCOUNT`); the "
            "regulator view needs the regulator's token. Amounts are integer satoshis, times "
            "ISO 8601 UTC. Pages: ?limit= and the previous answer's next_cursor.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "minerToken": {"type": "http", "scheme": "bearer"},
                "regulatorToken": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {"Error": ERROR},
        },
    }  # fmt: skip
