"""Installing qazpool as a systemd service (``poolserver install-service``).

Pure part: the unit text for this installation (``render_unit``) and the list of steps
(``plan``): the system user, ``/etc/qazpool`` (root:qazpool 0750) with ``pool.toml``
(root:qazpool 0640: it may hold RPC passwords; the example config with ``data_dir`` set to
``/var/lib/qazpool`` when none exists), ``/var/lib/qazpool`` (qazpool:qazpool 0750) and the unit
(0644). ``apply`` carries the steps out; ``--prefix`` installs under another root (a package
build or a test) while the unit and config still name the real paths.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from poolserver.config import Config, load_config

# Shipped inside the package (poolserver/data/: links to packaging/systemd/qazpool.service and
# config.example.toml in the source tree, copied into wheels), so a plain `pip install` has them.
DATA = Path(__file__).resolve().parent / "data"
UNIT_TEMPLATE = DATA / "qazpool.service"
EXAMPLE_CONFIG = DATA / "config.example.toml"
UNIT_NAME = "qazpool.service"
CONFIG_DIR = Path("/etc/qazpool")
DATA_DIR = Path("/var/lib/qazpool")
UNIT_DIR = Path("/etc/systemd/system")


class ServiceError(RuntimeError):
    """install-service cannot go on; the message says why."""


@dataclass(frozen=True)
class Step:
    kind: str  # "user", "dir", "file"
    path: Path  # real path (without the prefix); the user name for "user"
    owner: str = "root"
    group: str = "root"
    mode: int = 0o755
    content: bytes | None = None  # files
    keep: bool = False  # an existing file is left as it is (the operator's config)

    def describe(self) -> str:
        if self.kind == "user":
            return f"system user {self.path.name} (home /var/lib/{self.path.name}, no login shell)"
        what = "directory" if self.kind == "dir" else "file"
        return f"{what} {self.path} {self.owner}:{self.group} {self.mode:04o}"


def exec_start(config_path: Path) -> str:
    """How systemd starts this installation's poolserver (the interpreter it runs under)."""
    return f"{sys.executable} -m poolserver --config {config_path} run"


def low_ports(config: Config) -> list[int]:
    ports = [lc.port for lc in config.stratum.listeners]
    if config.metrics.enabled:
        ports.append(config.metrics.port)
    return sorted(p for p in ports if 0 < p < 1024)


def render_unit(template: str, *, user: str, exec_line: str, bind_low_ports: bool) -> str:
    """The unit for this installation: its user, its ExecStart and, only when a port below
    1024 is configured, CAP_NET_BIND_SERVICE (the one capability the pool may need)."""
    text = re.sub(r"(?m)^User=.*$", f"User={user}", template)
    text = re.sub(r"(?m)^Group=.*$", f"Group={user}", text)
    text = re.sub(r"(?m)^ExecStart=.*$", f"ExecStart={exec_line}", text)
    if user != "qazpool":
        text = text.replace("/var/lib/qazpool", f"/var/lib/{user}")
        text = re.sub(r"(?m)^StateDirectory=.*$", f"StateDirectory={user}", text)
    if bind_low_ports:
        cap = "CAP_NET_BIND_SERVICE"
        text = re.sub(r"(?m)^CapabilityBoundingSet=.*$", f"CapabilityBoundingSet={cap}", text)
        text = re.sub(r"(?m)^AmbientCapabilities=.*$", f"AmbientCapabilities={cap}", text)
    return text


def example_config(data_dir: Path) -> bytes:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    text = re.sub(r'(?m)^data_dir = ".*"$', f'data_dir = "{data_dir}"', text, count=1)
    return text.encode()


def plan(*, user: str, config_path: Path, prefix: Path) -> list[Step]:
    """What install-service does, in order. An existing config is kept (and read for the
    ports); a new one is the example with ``data_dir`` in the state directory."""
    for needed in (UNIT_TEMPLATE, EXAMPLE_CONFIG):
        if not needed.is_file():
            raise ServiceError(f"{needed} not found: this qazpool installation is incomplete "
                               "(reinstall the package)")  # fmt: skip
    data_dir = Path(f"/var/lib/{user}")
    staged = prefix / config_path.relative_to("/")
    existing = staged.is_file()
    config = load_config(staged) if existing else load_config(None)
    unit = render_unit(UNIT_TEMPLATE.read_text(encoding="utf-8"), user=user,
                       exec_line=exec_start(config_path),
                       bind_low_ports=bool(low_ports(config)))  # fmt: skip
    return [
        Step("user", Path(user)),
        Step("dir", config_path.parent, "root", user, 0o750),
        Step("file", config_path, "root", user, 0o640,
             content=None if existing else example_config(data_dir), keep=existing),
        Step("dir", data_dir, user, user, 0o750),
        Step("file", UNIT_DIR / UNIT_NAME, "root", "root", 0o644, content=unit.encode()),
    ]  # fmt: skip


def _ensure_user(name: str) -> bool:
    """Create the system user (and its group); False if it existed."""
    try:
        pwd.getpwnam(name)
        return False
    except KeyError:
        pass
    nologin = shutil.which("nologin") or "/usr/sbin/nologin"
    subprocess.run(["useradd", "--system", "--user-group", "--home-dir", f"/var/lib/{name}",
                    "--no-create-home", "--shell", nologin, name],
                   check=True, capture_output=True, text=True)  # fmt: skip
    return True


def apply(steps: list[Step], prefix: Path) -> list[str]:
    """Carry the steps out (as root); returns one line per thing done."""
    if os.geteuid() != 0:
        raise ServiceError(
            "install-service must run as root: it creates a system user, chowns "
            "/etc/qazpool and /var/lib/qazpool and writes /etc/systemd/system "
            "(use --dry-run to see the steps without root)"
        )
    done: list[str] = []
    for step in steps:
        if step.kind == "user":
            created = _ensure_user(step.path.name)
            done.append(("created " if created else "kept existing ") + step.describe())
            continue
        target = prefix / step.path.relative_to("/")
        uid = pwd.getpwnam(step.owner).pw_uid
        gid = grp.getgrnam(step.group).gr_gid
        if step.kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
        elif step.keep:
            done.append(f"kept existing {target} (modes set below)")
        else:
            assert step.content is not None
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".new")
            tmp.write_bytes(step.content)
            tmp.replace(target)
        os.chown(target, uid, gid)
        target.chmod(step.mode)
        done.append(f"{'wrote' if step.kind == 'file' and not step.keep else 'set'} "
                    f"{step.describe().replace(str(step.path), str(target))}")  # fmt: skip
    return done


def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()
