"""The "Sketch search" Processing algorithm: sketch image + raster layers + extent -> ranked polygons.

Only standard parameter types are used, so it works in batch mode and the model designer.
"""
from __future__ import annotations

from qgis.core import (QgsCoordinateReferenceSystem, QgsFeature, QgsFeatureSink, QgsGeometry, QgsProcessing,
                       QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingOutputLayerDefinition, QgsProcessingParameterBoolean, QgsProcessingParameterExtent,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFile,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterString, QgsProcessingUtils, QgsWkbTypes)

from ..theme import icon


class SketchSearchAlgorithm(QgsProcessingAlgorithm):
    SKETCH, LAYERS, EXTENT, TOP_K, TILE_SIZES, STAGE2, CHECKPOINT, OUTPUT = (
        "SKETCH", "LAYERS", "EXTENT", "TOP_K", "TILE_SIZES", "STAGE2", "CHECKPOINT", "OUTPUT")

    def createInstance(self):  # noqa: N802 (QGIS API)
        return SketchSearchAlgorithm()

    def name(self) -> str:
        return "sketchsearch"

    def displayName(self) -> str:  # noqa: N802
        return "Sketch search"

    def icon(self):
        return icon("search")

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Finds where the object drawn in a sketch image occurs in raster layers. The rasters are cut "
                "into tiles of the given sizes (metres on the ground), each tile is compared with the sketch "
                "by a neural network, and the best matches come back as ranked polygons with their score, "
                "source layer and tile size. Sketch: dark strokes on a light background (or strokes on "
                "transparency).")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(
            self.SKETCH, "Sketch image", fileFilter="Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff)"))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.LAYERS, "Raster layers to search", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterExtent(
            self.EXTENT, "Extent (default: the layers' full extent)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.TOP_K, "Number of results", QgsProcessingParameterNumber.Integer, 20, minValue=1, maxValue=1000))
        self.addParameter(QgsProcessingParameterString(
            self.TILE_SIZES, "Tile sizes in metres (comma-separated)", "60, 120, 240"))
        self.addParameter(QgsProcessingParameterBoolean(
            self.STAGE2, "Re-rank the best candidates with cross-attention", False))
        self.addParameter(QgsProcessingParameterFile(
            self.CHECKPOINT, "Model checkpoint (default: the shipped model)", optional=True,
            fileFilter="Model checkpoints (*.safetensors *.pth *.pt)"))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT, "Sketch matches", QgsProcessing.TypeVectorPolygon))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        try:
            from engine.search import Extent, SearchCancelled, SearchError, SearchOptions, search
        except ImportError as exc:
            raise QgsProcessingException(
                f"Sketch Search's Python dependencies are missing ({exc}). Open the Sketch Search dock "
                "(Raster menu) to install them.") from None

        from ..inputs import InputError, build_sources, to_shapely
        from ..result_layer import result_fields
        from ..search_task import get_embedder, plain_message

        sketch = self.parameterAsFile(parameters, self.SKETCH, context)
        layers = self.parameterAsLayerList(parameters, self.LAYERS, context)
        if not layers:
            raise QgsProcessingException("Choose at least one raster layer to search.")
        try:
            sizes = tuple(float(s) for s in self.parameterAsString(parameters, self.TILE_SIZES, context).split(",")
                          if s.strip())
        except ValueError:
            raise QgsProcessingException("Tile sizes must be numbers in metres separated by commas.") from None
        out_crs = layers[0].crs()
        if self._destination(parameters).lower().endswith((".geojson", ".json")):
            out_crs = QgsCoordinateReferenceSystem("EPSG:4326")  # GeoJSON is WGS 84 lon/lat (RFC 7946)
        extent = None
        area = None
        if parameters.get(self.EXTENT):
            rect = self.parameterAsExtent(parameters, self.EXTENT, context)
            crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
            if not crs.isValid():
                crs = layers[0].crs()
            area = (QgsGeometry.fromRect(rect), crs.toWkt())
            extent = Extent(to_shapely(area[0]), area[1])
        try:
            sources = build_sources(layers, area, None, context.project())
            embedder = get_embedder(self.parameterAsFile(parameters, self.CHECKPOINT, context) or None, None)
            feedback.pushInfo(f"Model: {embedder.name} on {embedder.device_description}")
            options = SearchOptions(top_k=self.parameterAsInt(parameters, self.TOP_K, context), tile_sizes_m=sizes,
                                    stage2=self.parameterAsBool(parameters, self.STAGE2, context),
                                    output_crs=out_crs.toWkt())

            def progress(done, total, message):
                if total:
                    feedback.setProgress(100.0 * done / total)
                if message:
                    feedback.setProgressText(message)

            matches = search(embedder, sketch, sources, extent=extent, options=options, progress=progress,
                             is_cancelled=feedback.isCanceled)
        except SearchCancelled:
            raise QgsProcessingException("The search was cancelled.") from None
        except (InputError, SearchError) as exc:
            raise QgsProcessingException(str(exc)) from None
        except Exception as exc:
            raise QgsProcessingException(plain_message(exc)) from exc

        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, result_fields(),
                                             QgsWkbTypes.Polygon, out_crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for match in matches:
            feature = QgsFeature(result_fields())
            feature.setGeometry(QgsGeometry.fromWkt(match.geometry.wkt))
            feature.setAttributes([int(match.rank), float(match.score), str(match.source), float(match.scale)])
            sink.addFeature(feature, QgsFeatureSink.FastInsert)
        feedback.pushInfo(f"{len(matches)} matches")
        self._dest_id = dest_id
        return {self.OUTPUT: dest_id}

    def _destination(self, parameters) -> str:
        """The output's file name as given (a path, or a layer definition's sink), '' for a memory layer."""
        value = parameters.get(self.OUTPUT)
        if isinstance(value, QgsProcessingOutputLayerDefinition):
            value = value.sink.staticValue()
        return str(value or "")

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802
        # Style the output with the shipped rank style when it is loaded into the project.
        from ..result_layer import apply_style

        layer = QgsProcessingUtils.mapLayerFromString(getattr(self, "_dest_id", ""), context)
        if layer is not None:
            try:
                apply_style(layer)
            except RuntimeError as exc:
                feedback.reportError(str(exc))
        return {self.OUTPUT: getattr(self, "_dest_id", None)}
