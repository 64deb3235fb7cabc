"""Running a command whose whole process tree must go on a timeout (xvfb-run's Xvfb and qgis.bin,
the engine worker, everything in a chroot)."""
from __future__ import annotations

import os
import signal
import subprocess


def run_killing_group(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    """subprocess.run in a session of its own, so a timeout kills everything it started (xvfb-run's
    Xvfb and qgis.bin, the engine worker), not just the first process."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return subprocess.CompletedProcess(cmd, -9, out, err + f"\n[killed after {timeout} s]")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
