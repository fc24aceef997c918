"""The systemd unit and `poolserver install-service`.

systemd is not PID 1 in this test environment (no /run/systemd/system), so the unit cannot be
started by systemd itself. What is tested instead: Debian's ``systemd-analyze verify`` accepts
the installed unit without a single warning, and the pool runs the way the unit runs it: as the
service user created by install-service (``setpriv`` with the unit's User/Group, no new
privileges, no capabilities, its Environment, WorkingDirectory and UMask), serving Stratum and
writing only inside its data directory.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from poolserver.service import UNIT_TEMPLATE, ServiceError, Step, apply, render_unit
from tests.pool_process import ROOT, free_port
from tests.stratum_client import StratumClient

USER = "qazpooltest"


def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze not installed: run scripts/system-deps.d/systemd.sh")
    return path


def verify(unit_text: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    unit = tmp / "qazpool.service"
    unit.write_text(unit_text)
    return subprocess.run([analyze(), "verify", str(unit)], capture_output=True, text=True)


def test_unit_passes_systemd_analyze_verify_without_warnings(tmp_path):
    exec_line = f"{sys.executable} -m poolserver --config /etc/qazpool/pool.toml run"
    text = render_unit(UNIT_TEMPLATE.read_text(), user="qazpool", exec_line=exec_line,
                       bind_low_ports=False)  # fmt: skip
    out = verify(text, tmp_path)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    for line in ("KillSignal=SIGTERM", "Restart=on-failure", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                 "ReadWritePaths=/var/lib/qazpool", "StateDirectory=qazpool",
                 "CapabilityBoundingSet=\n", "AmbientCapabilities=\n"):  # fmt: skip
        assert line in text, line
    # above the drain timeout (5 s default) with room for the journal flush
    assert int(re.search(r"(?m)^TimeoutStopSec=(\d+)$", text).group(1)) >= 30  # type: ignore[union-attr]
    assert int(re.search(r"(?m)^LimitNOFILE=(\d+)$", text).group(1)) >= 65536  # type: ignore[union-attr]


def test_low_port_gets_only_net_bind_service_and_verify_catches_mistakes(tmp_path):
    exec_line = f"{sys.executable} -m poolserver run"
    text = render_unit(UNIT_TEMPLATE.read_text(), user="qazpool", exec_line=exec_line,
                       bind_low_ports=True)  # fmt: skip
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE\n" in text
    assert "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n" in text
    out = verify(text, tmp_path)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    # the check is real: a bad directive or a missing binary is reported
    bad = verify(text.replace("ProtectSystem=strict", "ProtectSystem=bogus"), tmp_path)
    assert "ProtectSystem" in bad.stderr or "protect system" in bad.stderr
    missing = verify(re.sub(r"(?m)^ExecStart=.*$", "ExecStart=/nonexistent/py run", text),
                     tmp_path)  # fmt: skip
    assert missing.returncode != 0


def test_install_refuses_without_root_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ServiceError, match=r"must run as root.*--dry-run"):
        apply([Step("dir", Path("/etc/qazpool"))], tmp_path)
    assert not (tmp_path / "etc").exists()


def test_dry_run_lists_user_dirs_modes_and_unit():
    out = subprocess.run([sys.executable, "-m", "poolserver", "install-service", "--dry-run"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "system user qazpool" in out
    assert "directory /etc/qazpool root:qazpool 0750" in out
    assert "file /etc/qazpool/pool.toml root:qazpool 0640" in out
    assert "directory /var/lib/qazpool qazpool:qazpool 0750" in out
    assert "file /etc/systemd/system/qazpool.service root:root 0644" in out


# ---- the pool as the service user ---------------------------------------------------------


def _unit_value(unit: str, key: str) -> list[str]:
    return re.findall(rf"(?m)^{key}=(.*)$", unit)


def _interpreter(user: str) -> tuple[str, dict[str, str]]:
    """This venv's interpreter if the service user can run it; else Debian's python3 of the
    same version with this checkout and the venv's site-packages on the path (a venv under
    /root, as here, is not readable by other users; /opt/qazpool/venv in production is)."""
    ok = subprocess.run(["runuser", "-u", user, "--", "test", "-x", sys.executable]).returncode
    if ok == 0:
        return sys.executable, {}
    system = "/usr/bin/python3"
    ver = subprocess.run([system, "-c", "import sys; print(sys.version_info[:2])"],
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    if ver != str(sys.version_info[:2]):
        pytest.skip(f"{user} cannot run {sys.executable} and {system} is {ver}")
    site = next(p for p in sys.path if p.endswith("site-packages") and ".venv" in p)
    return system, {"PYTHONPATH": f"{ROOT}:{site}"}


@pytest.fixture
def service_prefix():
    if os.geteuid() != 0:
        pytest.skip("creating the service user needs root (CI runs the tests as root)")
    if not shutil.which("setpriv") or not shutil.which("useradd"):
        pytest.skip("setpriv/useradd missing (util-linux, passwd)")
    try:
        pwd.getpwnam(USER)
        existed = True
    except KeyError:
        existed = False
    prefix = Path(tempfile.mkdtemp(prefix="qazpool-service-"))
    prefix.chmod(0o755)  # the service user must traverse it, as it does / in production
    # ... and read the code, as it reads /opt/qazpool in production: a checkout in a 0700
    # directory (`mktemp -d`) is opened to others meanwhile (read + search on the checkout, whose
    # directory Python lists to import from it; search on its ancestors), then closed again
    root = ROOT.resolve()
    wanted = {root: stat.S_IROTH | stat.S_IXOTH, **{d: stat.S_IXOTH for d in root.parents}}
    opened = [(d, d.stat().st_mode, bits) for d, bits in wanted.items()
              if d.stat().st_mode & bits != bits]  # fmt: skip
    try:
        for d, mode, bits in opened:
            d.chmod(mode | bits)
        yield prefix
    finally:
        for d, mode, _bits in opened:
            d.chmod(mode)
        shutil.rmtree(prefix, ignore_errors=True)
        if not existed:
            subprocess.run(["userdel", USER], capture_output=True)
            subprocess.run(["groupdel", USER], capture_output=True)


async def test_pool_runs_as_the_service_user_and_writes_only_its_data_dir(service_prefix):
    prefix = service_prefix
    cmd = [sys.executable, "-m", "poolserver", "install-service", "--prefix", str(prefix),
           "--user", USER]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"system user {USER}" in out.stdout
    pw = pwd.getpwnam(USER)
    assert pw.pw_uid != 0 and pw.pw_shell.endswith("nologin")
    unit = (prefix / "etc/systemd/system/qazpool.service").read_text()
    assert verify(unit, prefix).returncode == 0
    data = prefix / "var/lib" / USER
    assert (data.stat().st_uid, data.stat().st_mode & 0o777) == (pw.pw_uid, 0o750)
    config = prefix / "etc/qazpool/pool.toml"
    assert (config.stat().st_uid, config.stat().st_gid) == (0, pw.pw_gid)
    assert config.stat().st_mode & 0o777 == 0o640
    # the installed example config, pointed at the prefixed data dir and free loopback ports
    port, mport = free_port(), free_port()
    text = config.read_text()
    assert f'data_dir = "/var/lib/{USER}"' in text
    text = text.replace(f'data_dir = "/var/lib/{USER}"', f'data_dir = "{data}"')
    text = text.replace('host = "0.0.0.0"\nport = 3333', f'host = "127.0.0.1"\nport = {port}')
    text = text.replace("port = 9108", f"port = {mport}")
    text = text.replace("port = 8080", "port = 0")  # the web page on any free port
    text = text.replace("start_difficulty = 1.0\nmin_difficulty = 1.0",
                        "start_difficulty = 1e-6\nmin_difficulty = 1e-8")  # cheap test shares
    config.write_text(text)

    # run it the way the unit does
    (exec_line,) = _unit_value(unit, "ExecStart")
    argv = exec_line.replace("/etc/qazpool/pool.toml", str(config)).split()
    python, extra_env = _interpreter(USER)
    argv[0] = python
    env = {"PATH": "/usr/bin:/bin"}
    for item in _unit_value(unit, "Environment"):
        key, _, value = item.partition("=")
        env[key] = value
    env.update(extra_env)
    (umask,) = _unit_value(unit, "UMask")
    (workdir,) = _unit_value(unit, "WorkingDirectory")
    cwd = prefix / workdir.lstrip("/")
    log = prefix / "pool.log"
    started = time.time()
    with log.open("wb") as err:
        proc = subprocess.Popen(
            ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", "--no-new-privs",
             "--inh-caps=-all", "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
             "sh", "-c", f"umask {umask}; exec \"$@\"", "sh", *argv],
            cwd=cwd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
        )  # fmt: skip
    try:
        for _ in range(600):
            if b"qazpool started" in log.read_bytes() or proc.poll() is not None:
                break
            await asyncio.sleep(0.05)
        assert b"qazpool started" in log.read_bytes(), log.read_text()
        client = await StratumClient.connect("127.0.0.1", port)
        await client.cpuminer("alice.service")
        job = await client.wait_job(timeout=10)
        reply = await client.submit(job, client.grind(job))
        assert reply.get("result") is True, reply  # acked: journaled in its own database
        await client.close()
        proc.send_signal(signal.SIGTERM)  # the unit's KillSignal: graceful drain
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "qazpool stopped" in text
    # everything the service user wrote is inside its data dir, and not world-readable
    written = []
    for top in (prefix, Path("/tmp"), Path("/var/tmp"), ROOT):
        since = f"@{int(started) - 1}"
        found = subprocess.run(["find", str(top), "-xdev", "-user", USER, "-newermt", since],
                               capture_output=True, text=True)  # fmt: skip
        written += [Path(p) for p in found.stdout.split()]
    assert written, "the service user wrote nothing (not the user the pool ran as?)"
    outside = [p for p in written if p != data and data not in p.parents]
    assert not outside, outside
    db = data / "qazpool.sqlite3"
    assert db.stat().st_uid == pw.pw_uid and db.stat().st_mode & 0o007 == 0


def test_unit_and_example_config_ship_inside_the_package():
    """install-service reads them from the installed package (poolserver/data/), not from a
    checkout: the files there are the source tree's packaging/systemd unit and example config
    (links copied into wheels by the pyproject's package-data)."""
    from poolserver.service import EXAMPLE_CONFIG

    package = Path(__import__("poolserver").__file__).parent
    assert UNIT_TEMPLATE.parent == EXAMPLE_CONFIG.parent == package / "data"
    assert UNIT_TEMPLATE.read_bytes() == (ROOT / "packaging/systemd/qazpool.service").read_bytes()
    assert EXAMPLE_CONFIG.read_bytes() == (ROOT / "config.example.toml").read_bytes()
    text = (ROOT / "pyproject.toml").read_text()
    assert '"poolserver" = ["data/qazpool.service", "data/config.example.toml"]' in text
