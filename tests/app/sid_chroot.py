"""A Debian sid chroot with today's QGIS long-term release, for the real-application tests.

Debian 12 ships QGIS 3.22; sid has the current LTR (3.44 at the time of writing, on Python 3.14
and PyQt5).
The chroot is made on first use with debootstrap and kept outside the repository, in
~/.cache/sketch-search-tests/sid-qgis ($SKETCH_SEARCH_TEST_CACHE or $XDG_CACHE_HOME instead, or
$SKETCH_SEARCH_SID_CHROOT for the folder itself). It is built beside its place and renamed when
complete, so a killed build leaves nothing that looks usable; a stamp holding the recipe's hash
makes a changed recipe (package list, this file's RECIPE_VERSION) rebuild it. Making it needs root
(debootstrap, chroot, mounts); so does running in it.

    python -m tests.app.sid_chroot            # make it now if missing; print its QGIS and Python
    from tests.app.sid_chroot import ensure_chroot, run_in_chroot

Commands run in a private mount namespace (unshare), so the bind mounts of /proc, /dev and the
host folders a test shares (the repository, the test's temporary folder, the data) vanish with the
command, even when it is killed.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

try:
    from .process_group import run_killing_group
except ImportError:  # run as a script: python tests/app/sid_chroot.py
    from process_group import run_killing_group
from pathlib import Path

SUITE = "sid"
MIRROR = os.environ.get("SKETCH_SEARCH_DEBIAN_MIRROR", "http://deb.debian.org/debian")
RECIPE_VERSION = 1  # bump to rebuild every cached chroot
# QGIS (desktop, qgis_process, Python bindings), an X server with GLX (Mesa's software renderer) and
# what pip needs to reach the package index over TLS. sid's QGIS runs Python 3.14, newer than the
# engine's 3.10-3.13: the plugin's installer then makes the engine's environment from another Python
# in the usual places, here Debian's python3.13. PyQt6 and tokenize-rt run QGIS's Qt6 migration
# checker (tests/app/test_qt6_migration.py).
PACKAGES = ["qgis", "qgis-providers", "python3-qgis", "xvfb", "xauth", "libgl1-mesa-dri", "python3-venv",
            "python3.13-venv", "ca-certificates", "procps", "python3-pyqt6", "python3-pyqt6.qsci",
            "python3-pyqt6.qtsvg", "python3-tokenize-rt"]
STAMP = ".sketch-search-chroot.json"


def cache_root() -> Path:
    if os.environ.get("SKETCH_SEARCH_TEST_CACHE"):
        return Path(os.environ["SKETCH_SEARCH_TEST_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sketch-search-tests"


def chroot_dir() -> Path:
    return Path(os.environ.get("SKETCH_SEARCH_SID_CHROOT") or cache_root() / "sid-qgis")


def recipe_hash() -> str:
    recipe = json.dumps({"suite": SUITE, "packages": PACKAGES, "version": RECIPE_VERSION}, sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def why_not_possible() -> str | None:
    """None when a chroot can be made and used here, else the reason (for a test skip)."""
    if os.name != "posix" or os.geteuid() != 0:
        return "the sid chroot needs root (debootstrap, chroot, mounts); CI runs as root"
    for tool in ("unshare", "chroot", "mount"):
        if shutil.which(tool) is None:
            return f"the sid chroot needs {tool}"
    if shutil.which("debootstrap") is None and not is_ready(chroot_dir()):
        return "the sid chroot needs debootstrap (scripts/setup.sh installs it)"
    return None


def is_ready(root: Path) -> bool:
    try:
        return json.loads((root / STAMP).read_text()).get("recipe") == recipe_hash()
    except (OSError, ValueError):
        return False


def stamp(root: Path) -> dict:
    return json.loads((root / STAMP).read_text())


def ensure_chroot(log=print) -> Path:
    """The ready chroot, built now if missing or made from another recipe (minutes, once)."""
    root = chroot_dir()
    if is_ready(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / (root.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be building it
        if not is_ready(root):
            _build(root, log)
    return root


def _build(root: Path, log) -> None:
    started = time.monotonic()
    staging = root.with_name(root.name + ".building")
    for old in (staging, root):
        if old.exists():
            _remove_tree(old)
    log(f"sid chroot: debootstrap {SUITE} into {staging} (a few minutes, once)")
    # In a mount namespace of its own: the /proc debootstrap mounts in the target goes when it ends,
    # even if it is killed, so no mount is ever left under the cache folder.
    _check(["unshare", "--mount", "--propagation", "private", "--", shutil.which("debootstrap") or "debootstrap",
            "--variant=minbase", "--include=ca-certificates", SUITE, str(staging), MIRROR], "debootstrap")
    _trust_host_certificates(staging)
    shutil.copy("/etc/resolv.conf", staging / "etc" / "resolv.conf")
    log(f"sid chroot: apt-get install {' '.join(PACKAGES)}")
    # The mirror may serve a fixed snapshot whose Release file has passed its Valid-Until date;
    # the signatures are still checked.
    apt = "apt-get -q -o Dpkg::Use-Pty=0 -o Acquire::Check-Valid-Until=false"
    script = (f"set -e; {apt} update; DEBIAN_FRONTEND=noninteractive {apt} install -y --no-install-recommends "
              f"{' '.join(PACKAGES)}; update-ca-certificates >/dev/null; {apt} clean")
    _check(_in_chroot_command(staging, ["sh", "-c", script], binds={}), "apt-get install in the chroot")
    versions = _probe(staging)
    seconds = round(time.monotonic() - started)
    (staging / STAMP).write_text(json.dumps({"recipe": recipe_hash(), "suite": SUITE, "build_seconds": seconds,
                                              "built": time.strftime("%Y-%m-%d %H:%M:%S"), **versions}, indent=1))
    staging.rename(root)
    log(f"sid chroot: ready in {seconds} s: QGIS {versions['qgis']}, Python {versions['python']}, "
        f"{versions['pyqt']}")


def _trust_host_certificates(staging: Path) -> None:
    """Local CAs the host trusts (a company proxy, a sandbox's egress) are trusted in the chroot too,
    so pip there reaches the index as it does on the host."""
    local = Path("/usr/local/share/ca-certificates")
    if local.is_dir():
        target = staging / "usr/local/share/ca-certificates"
        target.mkdir(parents=True, exist_ok=True)
        for cert in local.glob("*.crt"):
            shutil.copy(cert, target / cert.name)


def _probe(root: Path) -> dict:
    code = ("import sys, json; from qgis.core import Qgis; "
            "from qgis.PyQt.QtCore import PYQT_VERSION_STR, QT_VERSION_STR;"
            "import qgis.PyQt.QtCore as c; print(json.dumps({'qgis': Qgis.version(), 'python': sys.version.split()[0],"
            "'pyqt': ('PyQt6 ' if 'PyQt6' in c.__name__ or 'PyQt6' in repr(c) else 'PyQt5 ') + PYQT_VERSION_STR,"
            "'qt': QT_VERSION_STR}))")
    done = subprocess.run(_in_chroot_command(root, ["python3", "-c", code], binds={}), capture_output=True,
                          text=True, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    if done.returncode != 0:
        raise RuntimeError(f"QGIS does not import in the sid chroot: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{done.stdout[-4000:]}")


def _remove_tree(path: Path) -> None:
    # Never follow a mount left behind: unshare'd mounts die with their namespace, so none should be.
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def _in_chroot_command(root: Path, cmd: list[str], binds: dict[str, str], env: dict | None = None) -> list[str]:
    """The host command that runs cmd inside root, with host folders bind-mounted at the same paths."""
    mounts = [f"mount -t proc proc {q(root / 'proc')}", f"mount --rbind /dev {q(root / 'dev')}",
              f"mount -t sysfs sys {q(root / 'sys')}", f"mount -t tmpfs tmpfs {q(root / 'dev/shm')}"]
    for host, mode in binds.items():
        inside = root / host.lstrip("/")
        mounts.append(f"mkdir -p {q(inside)} && mount --bind {q(host)} {q(inside)}")
        if mode == "ro":
            mounts.append(f"mount -o remount,bind,ro {q(inside)}")
    env_args = ["env", "-i", *(f"{k}={v}" for k, v in (env or default_env()).items())]
    inner = " && ".join(mounts) + " && exec chroot " + q(root) + " " + " ".join(q(a) for a in env_args + cmd)
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", inner]


def default_env() -> dict:
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
            "LANG": "C.UTF-8", "TERM": "dumb"}


def q(value) -> str:
    return shlex.quote(str(value))


def shared_folders(*paths: Path, read_only: set[Path] = frozenset()) -> dict[str, str]:
    """Bind mounts (for run_in_chroot) of host folders, leaving out any inside another, which is
    visible through it already."""
    binds: dict[str, str] = {}
    read_only = {Path(r).resolve() for r in read_only}
    for path in sorted({Path(p).resolve() for p in paths}, key=lambda p: len(p.parts)):
        if not any(path.is_relative_to(Path(b)) for b in binds):
            binds[str(path)] = "ro" if path in read_only else "rw"
    return binds


def run_in_chroot(cmd: list[str], *, binds: dict[str, str] | None = None, env: dict | None = None,
                  timeout: float = 600, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Runs cmd in the ready chroot in a session of its own (a timeout kills everything it started).
    binds: host folder -> "rw" or "ro", mounted at the same path inside; env adds to a clean environment."""
    root = ensure_chroot()
    full_env = {**default_env(), **(env or {})}
    inner = cmd if cwd is None else ["sh", "-c", f"cd {q(cwd)} && exec " + " ".join(q(a) for a in cmd)]
    done = run_killing_group(_in_chroot_command(root, inner, binds or {}, full_env), timeout)
    return subprocess.CompletedProcess(cmd, done.returncode, done.stdout, done.stderr)

if __name__ == "__main__":
    reason = why_not_possible()
    if reason:
        sys.exit(f"sid chroot: {reason}")
    t0 = time.monotonic()
    where = ensure_chroot()
    print(json.dumps({"chroot": str(where), "seconds_now": round(time.monotonic() - t0, 1), **stamp(where)}))
