"""A folder that cannot be written, for tests of a shared (read-only) tile index."""
from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@contextmanager
def read_only(folder: Path):
    """`folder` cannot be written: a read-only bind mount as root (permissions do not stop root),
    else the write bits taken away."""
    if IS_ROOT:
        ok = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
        ok = ok and subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True).returncode == 0
        if not ok:
            subprocess.run(["umount", str(folder)], capture_output=True)
            pytest.skip("root without the right to mount: cannot make a read-only folder")
        try:
            yield
        finally:
            subprocess.run(["umount", "-l", str(folder)], check=True)
    else:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)

