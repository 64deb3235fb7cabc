"""One code base for QGIS 3 (Qt5) and QGIS 4 (Qt6): no Qt5-only form in the plugin, the metadata says so,
and the checker itself catches what it is meant to catch."""
from __future__ import annotations

import configparser
from pathlib import Path

from tests.qt6_forms import scan, scan_source

ROOT = Path(__file__).resolve().parents[2]


def test_the_plugin_has_no_qt5_only_forms(qgis_app):
    assert scan() == []


def test_the_checker_finds_each_kind_of_qt5_only_form(qgis_app):
    source = (
        "from qgis.PyQt.QtCore import Qt, QVariant\n"
        "from qgis.PyQt.QtWidgets import QMessageBox, QDialog\n"
        "from qgis.core import Qgis\n"
        "from PyQt5.QtGui import QColor\n"
        "from . import resources_rc\n"
        "a = Qt.CrossCursor\n"
        "b = QMessageBox.Yes | QMessageBox.StandardButton.No\n"
        "c = Qgis.Warning\n"
        "d = QVariant.Int\n"
        "QDialog().exec_()\n"
        "ok = (Qt.CursorShape.CrossCursor, Qgis.MessageLevel.Warning, QDialog().exec())\n"
    )
    found = scan_source(source)
    expected = ["4: from PyQt5.QtGui", "5: resources_rc", "6: Qt.CrossCursor", "7: QMessageBox.Yes", "8: Qgis.Warning",
                "9: QVariant.Int", "10: exec_()"]
    for start in expected:
        assert any(f.startswith(start) for f in found), (start, found)
    assert len(found) == len(expected), found  # line 11 is the correct form: nothing there


def test_metadata_declares_qgis_4_and_qt6():
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    general = meta["general"]
    assert general["supportsQt6"] == "True"
    assert general["qgisMaximumVersion"] == "4.99"
    assert general["qgisMinimumVersion"] == "3.22"
