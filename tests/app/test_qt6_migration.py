"""QGIS's own PyQt5 -> PyQt6 migration checker (scripts/pyqt5_to_pyqt6/pyqt5_to_pyqt6.py in the QGIS
repository) finds nothing to change in the plugin.

The checker is not part of this repository and no Debian or PyPI package ships it. It is read from
a pinned QGIS commit and kept outside the repository, in
~/.cache/sketch-search-tests/qgis-pyqt5-to-pyqt6/<commit>/ (downloaded there on first use where
GitHub can be reached, checked against its sha256). Where it is neither cached nor reachable (CI
reaches package registries only) this test is skipped and says so; the project's own check
(tests/qt6_forms.py, in tests/plugin/test_qt6_forms.py and in QGIS 3.44) still runs everywhere.

This revision of the checker learns the Qt6 enum scopes from a live PyQt6, so it runs in the sid
chroot with Debian's python3-pyqt6 and python3-tokenize-rt. The chroot's QGIS bindings (PyQt5) are
kept out of that process: Qt5 and Qt6 would meet in it, and the checker only reads Python enums
(PyQt6's) anyway. QGIS's own enums are covered by tests/qt6_forms.py. The checker rewrites files
in place, so it runs on a copy; any rewrite or warning is a finding.
"""
from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from . import sid_chroot

ROOT = Path(__file__).resolve().parents[2]

QGIS_COMMIT = "912ae75fb0e09594c9e9f8051efc40d0615ec6a4"
CHECKER_PATH = "scripts/pyqt5_to_pyqt6/pyqt5_to_pyqt6.py"
CHECKER_SHA256 = "6f146322290d41b82a95f6d8f0cad6f6ddcfe324d86e4f8d84ceb85b1c66fced"
CHECKER_URL = f"https://raw.githubusercontent.com/qgis/QGIS/{QGIS_COMMIT}/{CHECKER_PATH}"
# A file with Qt5-only forms beside the plugin's: proves the checker ran and rewrites what it should.
CANARY = ("from qgis.PyQt.QtCore import Qt\nfrom qgis.PyQt.QtWidgets import QDialog\n"
          "cursor = Qt.CrossCursor\nQDialog().exec_()\n")


def checker_file() -> tuple[Path | None, str]:
    """The cached checker (fetched now if missing and reachable), or None and why not."""
    path = sid_chroot.cache_root() / "qgis-pyqt5-to-pyqt6" / QGIS_COMMIT / "pyqt5_to_pyqt6.py"
    if not path.is_file():
        try:
            with urllib.request.urlopen(CHECKER_URL, timeout=20) as response:
                body = response.read()
        except OSError as exc:
            return None, (f"QGIS's migration checker is not cached in {path.parent} and cannot be fetched "
                          f"({exc}); the project's own check tests/qt6_forms.py ran instead")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(body)
        os.replace(partial, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == CHECKER_SHA256, f"{path} is not the pinned checker (sha256 {digest}, want {CHECKER_SHA256})"
    return path, ""


def test_qgis_migration_checker_finds_nothing_to_change(tmp_path_factory, tmp_path):
    checker, why = checker_file()
    if checker is None:
        pytest.skip(why)
    reason = sid_chroot.why_not_possible()
    if reason:
        pytest.skip(reason)
    sid_chroot.ensure_chroot()
    work = tmp_path / "sources"
    shutil.copytree(ROOT / "sketch_search_plugin", work / "sketch_search_plugin",
                    ignore=shutil.ignore_patterns("__pycache__", "resources_rc.py"))
    (work / "canary").mkdir()
    (work / "canary" / "canary.py").write_text(CANARY)
    before = {p: p.read_text() for p in work.rglob("*.py")}

    code = ("import runpy, sys; sys.modules['qgis'] = None; "  # keep sid's PyQt5-based QGIS out (see above)
            f"sys.argv = [{str(checker)!r}, {str(work)!r}]; runpy.run_path(sys.argv[0], run_name='__main__')")
    binds = sid_chroot.shared_folders(checker.parent, tmp_path_factory.getbasetemp(), read_only={checker.parent})
    done = sid_chroot.run_in_chroot(["python3", "-c", code], binds=binds, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode in (0, 1), output  # 1 = some file changed; anything else = the checker failed

    changed = {p.relative_to(work): "".join(difflib.unified_diff(text.splitlines(True), p.read_text().splitlines(True),
                                                                   str(p.relative_to(work)), "fixed"))
               for p, text in before.items() if p.read_text() != text}
    canary = changed.pop(Path("canary/canary.py"), "")
    assert "Qt.CursorShape.CrossCursor" in canary and "exec()" in canary, output  # the checker works here
    warnings = [line for line in output.splitlines() if "WARNING" in line or "ERROR" in line]
    assert not changed and not warnings, "\n".join([*changed.values(), *warnings])
