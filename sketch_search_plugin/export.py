"""Export of a result layer to a Shapefile or GeoPackage through QGIS's vector writer."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from qgis.core import QgsCoordinateTransformContext, QgsProject, QgsVectorFileWriter, QgsVectorLayer
from qgis.PyQt.QtWidgets import QFileDialog, QMessageBox, QWidget

FORMATS = {  # file dialog filter -> (OGR driver, suffix)
    "GeoPackage (*.gpkg)": ("GPKG", ".gpkg"),
    "ESRI Shapefile (*.shp)": ("ESRI Shapefile", ".shp"),
}


class ExportError(RuntimeError):
    pass


def driver_for(path: Path) -> str:
    for driver, suffix in FORMATS.values():
        if path.suffix.lower() == suffix:
            return driver
    raise ExportError(f"cannot tell the format of {path.name}: name it .gpkg (GeoPackage) or .shp (Shapefile)")


def write_layer(layer: QgsVectorLayer, path: str | Path, overwrite: bool = False) -> Path:
    """Writes `layer` to `path` (format from the suffix). Refuses to replace an existing file
    unless `overwrite` is set: the caller must have asked the user first."""
    path = Path(path)
    driver = driver_for(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = driver
    options.fileEncoding = "UTF-8"
    options.layerName = path.stem
    options.actionOnExistingFile = QgsVectorFileWriter.ActionOnExistingFile.CreateOrOverwriteFile
    context = QgsProject.instance().transformContext() if QgsProject.instance() else QgsCoordinateTransformContext()
    result = QgsVectorFileWriter.writeAsVectorFormatV3(layer, str(path), context, options)
    error, message = result[0], result[1]
    if error != QgsVectorFileWriter.WriterError.NoError:
        raise ExportError(f"could not write {path.name}: {message or 'the vector writer failed'}")
    return path


def default_file_name(layer: QgsVectorLayer) -> str:
    """A file name without spaces or punctuation that shells and other GIS tools stumble on:
    "Sketch matches 03:24:56 plane" -> "sketch_matches_032456_plane"."""
    name = re.sub(r"[^\w-]+", "_", layer.name().replace(":", "")).strip("_").lower()
    return name or "sketch_matches"


def export_with_dialog(layer: QgsVectorLayer, parent: QWidget | None = None,
                       confirm: Callable[[Path], bool] | None = None) -> Path | None:
    """Asks for a file name, confirms before replacing an existing file, writes. Returns the
    written path, or None when the user cancelled."""
    filters = ";;".join(FORMATS)
    # We ask about overwriting ourselves, so the question is the same on every platform.
    name, chosen = QFileDialog.getSaveFileName(parent, "Export sketch matches", default_file_name(layer),
                                               filters, options=QFileDialog.Option.DontConfirmOverwrite)
    if not name:
        return None
    path = Path(name)
    suffix = FORMATS.get(chosen, ("GPKG", ".gpkg"))[1]
    if path.suffix.lower() not in {s for _, s in FORMATS.values()}:
        path = path.with_name(path.name + suffix)
    overwrite = False
    if path.exists():
        ask = confirm or (lambda p: QMessageBox.question(
            parent, "Replace file?", f"{p.name} already exists in {p.parent}.\nReplace it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No) == QMessageBox.StandardButton.Yes)
        if not ask(path):
            return None
        overwrite = True
    return write_layer(layer, path, overwrite=overwrite)
