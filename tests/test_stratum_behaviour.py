"""Server behaviour over real TCP: reject paths, framing, limits, bans, shutdown, resume."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time

import pytest

from stratum.interfaces import Decision
from stratum.server import new_loop
from tests.conftest import wait_until
from tests.stratum_client import StratumClient
from tests.stratum_support import fixture_builder, fixture_job, hard, start_server


async def _miner(port: int, worker: str = "acc.w1") -> StratumClient:
    c = await StratumClient.connect("127.0.0.1", port)
    await c.cgminer(worker)
    await c.wait_job()
    return c


async def test_share_reject_paths_over_tcp():
    server, port, _sink, _ = await start_server()
    c = await _miner(port)
    try:
        job = c.last_job
        good = c.grind(job, version_bits=0)
        assert (await c.submit(job, good))["result"] is True
        dup = await c.submit(job, good)
        assert dup == {"id": dup["id"], "result": None, "error": [22, "Duplicate share", None]}
        low = c.grind(job, want_share=False, version_bits=0)
        assert (await c.submit(job, low))["error"] == [23, "Low difficulty share", None]
        other = await c.request("mining.submit", good.params("acc.nobody", job.job_id))
        assert other["error"][0] == 24
        unknown = await c.request("mining.submit", good.params("acc.w1", "ffff"))
        assert unknown["error"] == [21, "Job not found", None]
        short = await c.request("mining.submit", ["acc.w1", job.job_id, "00", "00"])
        assert short["error"][0] == 20 and "params" in short["error"][1]
        base = good.params("acc.w1", job.job_id)
        bad_cases = {
            2: ("00" * 7, "extranonce2"),  # wrong size
            3: ("0x123456", "ntime"),  # not 8 hex digits
            4: ("1234567g", "nonce"),
        }
        for index, (value, word) in bad_cases.items():
            params = list(base)
            params[index] = value
            r = await c.request("mining.submit", params)
            assert r["error"][0] == 20 and word in r["error"][1], r
        for ntime in (job.ntime - 1, 0xFFFFFFF0):  # before the job / beyond now + 2 h
            params = list(base)
            params[3] = f"{ntime:08x}"
            r = await c.request("mining.submit", params)
            assert r["error"] == [20, "Ntime out of range", None]
        r = await c.request("mining.submit", [*base[:5], "xyz"])
        assert r["error"][0] == 20 and "version_bits" in r["error"][1]
        r = await c.request("mining.submit", [*base[:5], "80000000"])
        assert r["error"][0] == 20 and "version mask" in r["error"][1]
        # a new block makes the old job stale
        builder = fixture_builder(first_job_id=7)
        newer = hard(fixture_job(builder=builder))
        newer = dataclasses.replace(newer, prevhash=bytes(31) + b"\x01")
        server.new_job(newer)
        await c.wait_job(newer_than=job.job_id)
        stale = await c.submit(job, c.grind(job, version_bits=0))
        assert stale["error"][0] == 21 and "Stale" in stale["error"][1]
        labels = server.stats.shares
        assert labels["accepted"] == 1 and labels["duplicate"] == 1
        assert labels["low_difficulty"] == 1 and labels["stale"] == 1
        assert labels["unauthorized_worker"] == 1 and labels["job_not_found"] == 1
    finally:
        await c.close()
        await server.shutdown()


async def test_not_subscribed_and_unknown_method_keep_connection():
    server, port, _, _ = await start_server()
    c = await StratumClient.connect("127.0.0.1", port)
    try:
        r = await c.request("mining.submit", ["a.b", "1", "00" * 8, "00000000", "00000000"])
        assert r["error"][0] == 25
        r = await c.request("mining.frobnicate", [], req_id="str-id")
        assert r == {
            "id": "str-id",
            "result": None,
            "error": [20, "Unsupported method: mining.frobnicate", None],
        }
        assert (await c.request("mining.ping", []))["result"] == "pong"
        assert (await c.request("mining.multi_version", [1]))["result"] is True
        # blank lines, CRLF and two requests in one send
        m1, f1 = c.request_future("mining.subscribe", ["x"], req_id=41)
        m2, f2 = c.request_future("mining.extranonce.subscribe", [], req_id=42)
        c.send_lines(b"\r\n\n", json.dumps(m1).encode() + b"\r\n", m2)
        r1, r2 = await asyncio.wait_for(asyncio.gather(f1, f2), 5)
        assert r1["id"] == 41 and r1["result"][2] == 8 and r2["result"] is True
        # bad worker name: clear reason, connection stays
        r = await c.request("mining.authorize", ["bad name!", "x"])
        assert r["error"][0] == 24 and "account" in r["error"][1]
        # legacy suggest_difficulty(N) form
        r = await c.request("mining.suggest_difficulty(0.5)", [])
        assert r["result"] is True
        assert not c.closed
    finally:
        await c.close()
        await server.shutdown()


async def test_invalid_json_and_long_line_close_the_connection():
    server, port, _, _ = await start_server(max_line_bytes=1024)
    c = await StratumClient.connect("127.0.0.1", port)
    c.send_lines(b"{this is not json\n")
    await c.wait_closed()
    c2 = await StratumClient.connect("127.0.0.1", port)
    c2.send_lines(b"x" * 2000)
    await c2.wait_closed()
    assert server.stats.disconnects["invalid_json"] == 1
    assert server.stats.disconnects["line_too_long"] == 1
    await server.shutdown()


async def test_per_ip_cap_and_auth_timeout():
    server, port, _, _ = await start_server(max_connections_per_ip=2, auth_timeout_s=0.3)
    a = await StratumClient.connect("127.0.0.1", port)
    b = await StratumClient.connect("127.0.0.1", port)
    c = await StratumClient.connect("127.0.0.1", port)
    await c.wait_closed()
    assert server.stats.connections_refused["per_ip_cap"] == 1
    # a and b never authorize: dropped after the timeout
    await a.wait_closed(3)
    await b.wait_closed(3)
    assert server.stats.disconnects["auth_timeout"] == 2
    await server.shutdown()


async def test_idle_timeout_and_keepalive():
    server, port, _, _ = await start_server(idle_timeout_s=0.6, keepalive_s=0.2)
    c = await _miner(port)
    n = len([m for m in c.notifications if m["method"] == "mining.notify"])
    await c.wait_closed(5)
    notifies = [m for m in c.notifications if m["method"] == "mining.notify"]
    assert len(notifies) > n  # the job was re-sent while the miner was quiet
    assert notifies[0]["params"][8] is True and notifies[-1]["params"][8] is False
    assert server.stats.disconnects["idle_timeout"] == 1
    await server.shutdown()


async def test_client_that_does_not_read_is_dropped():
    server, port, _, _ = await start_server(max_write_buffer_bytes=4096)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    req = b'{"id":1,"method":"mining.ping","params":[]}\n' * 200
    try:
        async with asyncio.timeout(10):
            while server.stats.disconnects["slow_reader"] == 0:
                try:
                    while True:  # as fast as the server reads: the pongs fill the kernel buffers
                        s.send(req)
                except (BlockingIOError, ConnectionError):
                    pass
                await asyncio.sleep(0)
    finally:
        s.close()
    await server.shutdown()


async def test_invalid_share_ratio_bans_the_worker_not_the_farm():
    server, port, _, _ = await start_server(
        ban_min_submits=10, ban_reject_ratio=0.8, ban_seconds=30
    )
    c = await _miner(port, "acc.broken")
    bad = ["acc.broken", c.last_job.job_id, "zz", "00000000", "00000000"]
    for _ in range(10):
        if c.closed:
            break
        c.send_lines({"id": 1, "method": "mining.submit", "params": bad})
    await c.wait_closed()
    assert server.stats.bans_total == 1 and server.stats.disconnects["banned"] == 1
    # the same worker from the same address is refused at authorize, with the reason
    again = await StratumClient.connect("127.0.0.1", port)
    await again.request("mining.subscribe", [])
    r = await again.request("mining.authorize", ["acc.broken", "x"])
    assert r["error"][0] == 24 and "10 of 10 shares invalid" in r["error"][1]
    # other miners behind the same (NAT) address keep working
    other = await _miner(port, "acc.good")
    assert other.last_job is not None
    server.sweep(now=time.monotonic() + 31)  # the ban expires (and `again` timed out)
    assert not server._name_bans
    back = await _miner(port, "acc.broken")
    assert back.last_job is not None
    for x in (again, other, back):
        await x.close()
    await server.shutdown()


class _Refuse:
    def __init__(self) -> None:
        self.calls = 0

    async def authorize(self, account: str, worker: str, peer: str) -> Decision:
        self.calls += 1
        return Decision(False, "no licence for this account")


async def test_auth_refusal_reason_and_backoff():
    policy = _Refuse()
    server, port, _, _ = await start_server(
        policy=policy, auth_failures_allowed=2, auth_backoff_s=30
    )
    c = await StratumClient.connect("127.0.0.1", port)
    await c.request("mining.subscribe", ["cgminer/4.11.1"])
    r = await c.request("mining.authorize", ["acc.w", "x"])
    assert r["error"][0] == 24 and "no licence" in r["error"][1]
    show = await c.wait_notification("client.show_message", include_seen=True)
    assert "no licence" in show["params"][0]
    await c.request("mining.authorize", ["acc.w2", "x"])
    await c.request("mining.authorize", ["acc.w3", "x"])  # third failure: back-off starts
    assert policy.calls == 3
    r = await c.request("mining.authorize", ["acc.w4", "x"])
    assert "retry in" in r["error"][1] and policy.calls == 3  # not even asked during back-off
    assert not c.closed and server.stats.connections_refused["banned"] == 0
    # a scanner: refusals for more different accounts than allowed bans the address
    for i in range(3):
        if c.closed:
            break
        c.send_lines({"id": 50 + i, "method": "mining.authorize", "params": [f"other{i}.w", "x"]})
    await c.wait_closed()
    late = await StratumClient.connect("127.0.0.1", port)
    await late.wait_closed()
    assert server.stats.connections_refused["banned"] == 1
    # bans and failure counts expire
    server.sweep(now=time.monotonic() + server.settings.auth_backoff_max_s + 1)
    assert not server._bans and not server._name_bans and not server._auth_failures
    await server.shutdown()


async def test_policy_failure_is_not_counted_as_auth_failure():
    class Broken:
        async def authorize(self, account, worker, peer):
            raise RuntimeError("register database down")

    server, port, _, _ = await start_server(policy=Broken(), auth_failures_allowed=1)
    c = await StratumClient.connect("127.0.0.1", port)
    await c.request("mining.subscribe", [])
    for i in range(4):
        r = await c.request("mining.authorize", [f"acc.w{i}", "x"])
        assert r["error"] == [24, "Authorization temporarily unavailable", None]
    assert not c.closed and server.stats.bans_total == 0
    await c.close()
    await server.shutdown()


async def test_pipelined_submit_after_authorize_waits_for_the_policy():
    class Slow:
        async def authorize(self, account, worker, peer):
            await asyncio.sleep(0.2)
            return Decision(True)

    server, port, sink, _ = await start_server(policy=Slow())
    c = await StratumClient.connect("127.0.0.1", port)
    try:
        c._subscribed(await c.request("mining.subscribe", ["cpuminer/2.5.1"]))
        assert (await c.request("mining.authorize", ["acc.a", "x"]))["result"] is True
        job = await c.wait_job()
        found = c.grind(job)
        # authorize a second worker and submit with it in the same TCP send: the submit is
        # processed after the (slow) policy answered, so it is authorized
        m2, f2 = c.request_future("mining.authorize", ["acc.b", "x"])
        m3, f3 = c.request_future("mining.submit", found.params("acc.b", job.job_id))
        c.send_lines(m2, m3)
        r2, r3 = await asyncio.wait_for(asyncio.gather(f2, f3), 5)
        assert r2["result"] is True and r3["result"] is True
        (share,) = await sink.wait_for(1)
        assert share.worker == "b"
    finally:
        await c.close()
        await server.shutdown()


class _GatedSink:
    def __init__(self, fail: bool = False) -> None:
        self.gate = asyncio.Event()
        self.shares = []
        self.fail = fail
        self.waiting = 0  # puts parked at the gate

    async def put(self, share):
        self.waiting += 1
        await self.gate.wait()
        self.waiting -= 1
        if self.fail:
            raise OSError("disk full")
        self.shares.append(share)


async def test_ack_waits_for_the_sink_and_a_failed_put_is_not_acked():
    sink = _GatedSink()
    server, port, _, _ = await start_server(sink=sink)
    c = await _miner(port)
    job = c.last_job
    msg, fut = c.request_future(
        "mining.submit", c.grind(job, version_bits=0).params(c.worker, job.job_id)
    )
    c.send_lines(msg)
    await wait_until(lambda: sink.waiting == 1)  # the share reached the sink
    await asyncio.sleep(0.05)
    assert not fut.done()  # not acked before the sink returned
    sink.gate.set()
    assert (await asyncio.wait_for(fut, 5))["result"] is True
    assert len(sink.shares) == 1
    sink.fail = True
    r = await c.submit(job, c.grind(job, version_bits=0))
    assert r["result"] is None and r["error"][0] == 20 and "recorded" in r["error"][1]
    assert server.stats.sink_errors == 1
    await c.close()
    await server.shutdown()


async def test_graceful_shutdown_reconnects_and_drains_in_flight_shares():
    sink = _GatedSink()
    server, port, _, _ = await start_server(sink=sink)
    c = await _miner(port)
    job = c.last_job
    msg, fut = c.request_future(
        "mining.submit", c.grind(job, version_bits=0).params(c.worker, job.job_id)
    )
    c.send_lines(msg)
    await wait_until(lambda: sink.waiting == 1)  # the share is in flight
    stopping = asyncio.create_task(server.shutdown())
    await c.wait_notification("client.reconnect")
    assert not stopping.done()  # draining the share in flight
    sink.gate.set()
    assert (await asyncio.wait_for(fut, 5))["result"] is True
    await asyncio.wait_for(stopping, 5)
    await c.wait_closed()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_session_resume_keeps_extranonce1():
    server, port, _, _ = await start_server()
    c = await StratumClient.connect("127.0.0.1", port)
    await c.cpuminer("acc.r")
    first, sid = c.extranonce1, c.session_id
    await c.close()
    await wait_until(lambda: not server.sessions)  # the server saw the close
    other = await StratumClient.connect("127.0.0.1", port)
    await other.cpuminer("acc.o")
    assert other.extranonce1 != first  # reserved during the resume window
    again = await StratumClient.connect("127.0.0.1", port)
    await again.cgminer("acc.r", old_session=sid)
    assert again.extranonce1 == first
    await other.close()
    await again.close()
    await server.shutdown()


async def test_set_extranonce_for_subscribed_miners():
    server, port, _sink, _ = await start_server()
    c = await StratumClient.connect("127.0.0.1", port)
    await c.bitaxe("acc.bx", suggest=None)
    await c.wait_job()
    (session,) = server.sessions
    await wait_until(lambda: session.extranonce_subscribed)  # sent after authorize, unanswered
    old = session.extranonce1
    new = server.extranonces.allocate()
    assert session.set_extranonce(new)
    msg = await c.wait_notification("mining.set_extranonce")
    assert msg["params"] == [new.hex(), 8]
    job = await c.wait_job()
    assert c.extranonce1 == new != old
    found = c.grind(job, version_bits=0)
    assert (await c.submit(job, found))["result"] is True
    await c.close()
    await server.shutdown()


async def test_vardiff_retarget_sends_difficulty_and_job():
    server, port, _, _ = await start_server(start_difficulty=1000.0, min_difficulty=1.0)
    c = await _miner(port)
    assert c.difficulty == 1000
    (session,) = server.sessions
    # a quiet miner: the idle sweep lowers the difficulty by the maximum step
    server.sweep(now=time.monotonic() + 120)
    await c.wait_notification("mining.notify")
    assert c.difficulty == 250 and c.last_job.difficulty == 250
    assert c.last_job.clean is False  # the miner keeps hashing; the next job uses 250
    assert session.difficulty == 250
    await c.close()
    await server.shutdown()


def test_works_on_uvloop():
    async def main():
        server, port, _sink, _ = await start_server()
        c = await _miner(port)
        job = c.last_job
        assert (await c.submit(job, c.grind(job, version_bits=0)))["result"] is True
        await c.close()
        await server.shutdown()
        return type(asyncio.get_running_loop()).__module__

    with asyncio.Runner(loop_factory=new_loop) as runner:
        assert runner.run(main()).startswith("uvloop")


async def test_difficulty_hints_password_suggest_target_and_minimum_difficulty():
    from stratum.difficulty import DIFF1

    server, port, _, _ = await start_server(start_difficulty=1.0, min_difficulty=0.001)
    # password "d=0.5": the first set_difficulty already carries it
    a = await StratumClient.connect("127.0.0.1", port)
    a._subscribed(await a.request("mining.subscribe", ["cpuminer/2.5.1"]))
    assert (await a.request("mining.authorize", ["acc.a", "x,d=0.5"]))["result"] is True
    job = await a.wait_job()
    assert a.difficulty == 0.5 and job.difficulty == 0.5
    # suggest_target: difficulty = DIFF1 / target, clamped to the port
    r = await a.request("mining.suggest_target", [f"{DIFF1 * 4:064x}"])
    assert r["result"] is True
    # set_difficulty + notify come in the same write as the reply
    await wait_until(lambda: a.last_job is not None and a.last_job.difficulty == 0.25)
    assert a.difficulty == 0.25
    # configure minimum-difficulty raises the floor (and the difficulty)
    b = await StratumClient.connect("127.0.0.1", port)
    reply = await b.request(
        "mining.configure",
        [["minimum-difficulty", "info"], {"minimum-difficulty.value": 2048}],
    )
    assert reply["result"] == {"minimum-difficulty": True, "info": False}
    await b.cpuminer("acc.b")
    await b.wait_job()
    assert b.difficulty == 2048
    for c in (a, b):
        await c.close()
    await server.shutdown()


async def test_tls_listener(tmp_path):
    import ssl
    import subprocess

    from stratum.memory_sink import MemoryShareSink
    from stratum.server import StratumServer
    from stratum.settings import PortSettings, ServerSettings
    from tests.stratum_support import FIXTURE_NOW

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    port = PortSettings("127.0.0.1", 0, 1e-6, 1e-8, 1e12, ctx)
    sink = MemoryShareSink()
    server = StratumServer(ServerSettings(ports=(port,)), sink, clock=lambda: FIXTURE_NOW)
    ((_, bound),) = await server.start()
    server.new_job(hard(fixture_job()))
    client_ctx = ssl.create_default_context(cafile=str(cert))
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", bound, ssl=client_ctx, server_hostname="localhost"
    )
    c = StratumClient(reader, writer)
    c._reader_task = asyncio.get_running_loop().create_task(c._read_loop())
    await c.cpuminer("acc.tls")
    job = await c.wait_job()
    assert (await c.submit(job, c.grind(job)))["result"] is True
    await sink.wait_for(1)
    await c.close()
    await server.shutdown()


async def test_flood_while_authorize_pending_is_dropped():
    class Slow:
        async def authorize(self, account, worker, peer):
            await asyncio.sleep(1)
            return Decision(True)

    server, port, _, _ = await start_server(policy=Slow())
    c = await StratumClient.connect("127.0.0.1", port)
    ping = b'{"id":7,"method":"mining.ping","params":[]}\n'
    c.send_lines(b'{"id":1,"method":"mining.authorize","params":["acc.f","x"]}\n' + ping * 1100)
    await c.wait_closed()
    assert server.stats.disconnects["flood"] == 1
    await server.shutdown()


async def test_job_older_than_the_session_window_is_still_hashed_while_the_pool_has_it():
    """Issue 10 part 2: a job the session no longer remembers (older than its last 8) is hashed
    and judged while the pool's job table still holds it; a job the pool forgot is not found."""
    from stratum.server import MAX_JOBS
    from stratum.session import MAX_JOBS_PER_SESSION

    server, port, _, _ = await start_server()
    c = await _miner(port)
    builder = fixture_builder(first_job_id=100)
    first = c.last_job
    for _ in range(MAX_JOBS_PER_SESSION + 3):
        server.new_job(dataclasses.replace(hard(fixture_job(builder=builder)), clean_jobs=False))
    await c.wait_job(newer_than=first.job_id)
    (session,) = server.sessions
    assert len(session.jobs) == MAX_JOBS_PER_SESSION and first.job_id not in session.jobs
    assert len(server.tips.tips) == 1  # one chain tip owns all of them
    r = await c.submit(first, c.grind(first, version_bits=0))
    assert r["result"] is True
    for _ in range(MAX_JOBS):
        server.new_job(dataclasses.replace(hard(fixture_job(builder=builder)), clean_jobs=False))
    assert len(server.tips) == MAX_JOBS and server.tips.find(first.job_id) is None
    r = await c.submit(first, c.grind(first, version_bits=0))
    assert r["error"] == [21, "Job not found", None]
    await c.close()
    await server.shutdown()


async def test_slow_sink_applies_backpressure_and_loses_nothing():
    from stratum.session import MAX_INFLIGHT

    sink = _GatedSink()
    server, port, _, _ = await start_server(sink=sink, start_difficulty=1e-8)
    c = await _miner(port)
    job = c.last_job
    n = MAX_INFLIGHT + 100
    futs, lines = [], []
    for _ in range(n):
        msg, fut = c.request_future(
            "mining.submit", c.grind(job, version_bits=0).params(c.worker, job.job_id)
        )
        lines.append(json.dumps(msg).encode() + b"\n")
        futs.append(fut)
    c.send_lines(*lines)
    (session,) = server.sessions
    await wait_until(lambda: session.reading_paused, timeout=10)
    await asyncio.sleep(0.1)  # time to (wrongly) read on
    assert session.reading_paused and session.inflight == MAX_INFLIGHT
    assert not any(f.done() for f in futs)
    sink.gate.set()
    replies = await asyncio.wait_for(asyncio.gather(*futs), 10)
    assert all(r["result"] is True for r in replies) and len(sink.shares) == n
    assert not session.reading_paused
    await c.close()
    await server.shutdown()


async def test_each_listener_has_its_own_difficulty_bounds():
    from stratum.memory_sink import MemoryShareSink
    from stratum.server import StratumServer
    from stratum.settings import PortSettings, ServerSettings
    from tests.stratum_support import FIXTURE_NOW

    asic = PortSettings("127.0.0.1", 0, start_difficulty=16384, min_difficulty=1,
                        max_difficulty=1e9)  # fmt: skip
    cpu = PortSettings("127.0.0.1", 0, start_difficulty=1e-6, min_difficulty=1e-8,
                       max_difficulty=1)  # fmt: skip
    server = StratumServer(
        ServerSettings(ports=(asic, cpu)), MemoryShareSink(), clock=lambda: FIXTURE_NOW
    )
    (_, p_asic), (_, p_cpu) = await server.start()
    server.new_job(hard(fixture_job()))
    a, b = await _miner(p_asic, "acc.s19"), await _miner(p_cpu, "acc.cpu")
    assert a.difficulty == 16384 and b.difficulty == 1e-6
    b.send_lines({"id": 9, "method": "mining.suggest_difficulty", "params": [500]})
    await wait_until(lambda: b.difficulty == 1)  # clamped to the CPU port's maximum
    for c in (a, b):
        await c.close()
    await server.shutdown()


async def test_duplicate_queued_when_a_new_block_arrives_is_still_a_duplicate():
    """A resubmitted share that passed precheck and waits for the tick's batch check must be
    judged against the duplicate set it was submitted under, even if a new block's job clears the
    sets before the batch runs (else the same share is credited twice)."""
    server, port, sink, _ = await start_server(job=hard(fixture_job()))
    c = await _miner(port)
    try:
        job = c.last_job
        good = c.grind(job, version_bits=0)
        assert (await c.submit(job, good))["result"] is True
        (session,) = server.sessions
        msg, fut = c.request_future("mining.submit", good.params(c.worker, job.job_id))
        newer = hard(fixture_job(builder=fixture_builder(first_job_id=9)))
        newer = dataclasses.replace(newer, prevhash=bytes(31) + b"\x02")
        # Same loop tick: the resubmission is read and queued, then the new block's job lands.
        session.data_received((json.dumps(msg) + "\n").encode())
        server.new_job(newer)
        reply = await asyncio.wait_for(fut, 5)
        assert reply["error"] == [22, "Duplicate share", None]
        assert len(sink.shares) == 1
    finally:
        await c.close()
        await server.shutdown()
