"""The "Sketch search" Processing algorithm: sketch image + raster layers + extent -> ranked polygons;
optional LIKE / UNLIKE polygon layers refine the search (places wanted / not wanted), and with LIKE the
sketch may be left out (search by example).

Only standard parameter types are used, so it works in batch mode and the model designer.
"""
from __future__ import annotations

from pathlib import Path

from qgis.core import (QgsCoordinateReferenceSystem, QgsFeature, QgsFeatureSink, QgsGeometry, QgsProcessingAlgorithm,
                       QgsProcessingException, QgsProcessingOutputLayerDefinition, QgsProcessingParameterBoolean,
                       QgsProcessingParameterExtent, QgsProcessingParameterFeatureSink, QgsProcessingParameterFile,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterString, QgsProcessingParameterVectorLayer, QgsProcessingUtils)

from ..compat import NUMBER_INTEGER, PROCESSING_RASTER, PROCESSING_VECTOR_POLYGON, WKB_POLYGON
from ..errors import InputError
from ..options import (DEFAULT_EXPANSION, DEFAULT_STAGE2, DEFAULT_TILE_SIZES_M, DEFAULT_TOP_K, MAX_TOP_K,
                       SearchSettings, format_tile_sizes, parse_tile_sizes)
from ..theme import icon


class SketchSearchAlgorithm(QgsProcessingAlgorithm):
    SKETCH, LAYERS, EXTENT, TOP_K, TILE_SIZES, EXPANSION, STAGE2, CHECKPOINT, OUTPUT = (
        "SKETCH", "LAYERS", "EXTENT", "TOP_K", "TILE_SIZES", "EXPANSION", "STAGE2", "CHECKPOINT", "OUTPUT")
    LIKE, UNLIKE = "LIKE", "UNLIKE"

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
                "transparency). By default the search runs a second time with the sketch moved toward its "
                "three best distinct matches (EXPANSION; turn it off when the first matches are mostly "
                "wrong). Optional: polygons of places like the ones wanted (LIKE) and not wanted "
                "(UNLIKE), e.g. matches of an earlier search marked right or wrong, refine the search; with "
                "LIKE the sketch may be left out (search by example).")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(
            self.SKETCH, "Sketch image (may be left out when LIKE polygons are given)", optional=True,
            fileFilter="Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff)"))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.LAYERS, "Raster layers to search", PROCESSING_RASTER))
        self.addParameter(QgsProcessingParameterExtent(
            self.EXTENT, "Extent (default: the layers' full extent)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.TOP_K, "Number of results", NUMBER_INTEGER, DEFAULT_TOP_K, minValue=1, maxValue=MAX_TOP_K))
        self.addParameter(QgsProcessingParameterString(
            self.TILE_SIZES, "Tile sizes in metres (comma-separated)", format_tile_sizes(DEFAULT_TILE_SIZES_M)))
        self.addParameter(QgsProcessingParameterBoolean(
            self.EXPANSION, "Search again toward the best matches (query expansion)", DEFAULT_EXPANSION))
        self.addParameter(QgsProcessingParameterBoolean(
            self.STAGE2, "Re-rank the best candidates with cross-attention", DEFAULT_STAGE2))
        self.addParameter(QgsProcessingParameterFile(
            self.CHECKPOINT, "Model checkpoint (default: the shipped model)", optional=True,
            fileFilter="Model checkpoints (*.safetensors *.pth *.pt)"))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.LIKE, "Places like the ones wanted (polygons)", [PROCESSING_VECTOR_POLYGON], optional=True))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.UNLIKE, "Places not wanted (polygons)", [PROCESSING_VECTOR_POLYGON], optional=True))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT, "Sketch matches", PROCESSING_VECTOR_POLYGON))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..inputs import build_sources, engine_extent
        from ..result_layer import match_attributes, result_fields
        from ..search_task import log, render_sources
        from ..shared_index import with_index_dir
        from ..worker_client import EngineCancelled, EngineError, shared_client

        sketch = self.parameterAsFile(parameters, self.SKETCH, context)
        layers = self.parameterAsLayerList(parameters, self.LAYERS, context)
        if not layers:
            raise QgsProcessingException("Choose at least one raster layer to search.")
        like = places(self.parameterAsVectorLayer(parameters, self.LIKE, context), "LIKE")
        unlike = places(self.parameterAsVectorLayer(parameters, self.UNLIKE, context), "UNLIKE")
        if not sketch and not like:
            raise QgsProcessingException("Give a sketch image, or LIKE polygons (search by example), or both.")
        if sketch and not Path(sketch).is_file():
            raise QgsProcessingException(f"The sketch image {sketch!r} does not exist.")
        checkpoint = self.parameterAsFile(parameters, self.CHECKPOINT, context) or None
        try:
            sizes = parse_tile_sizes(self.parameterAsString(parameters, self.TILE_SIZES, context))
        except InputError as exc:
            raise QgsProcessingException(str(exc)) from None
        settings = SearchSettings(top_k=self.parameterAsInt(parameters, self.TOP_K, context), tile_sizes_m=tuple(sizes),
                                  stage2=self.parameterAsBool(parameters, self.STAGE2, context),
                                  expansion=self.parameterAsBool(parameters, self.EXPANSION, context),
                                  checkpoint=checkpoint)
        out_crs = layers[0].crs()
        if self._destination(parameters).lower().endswith((".geojson", ".json")):
            out_crs = QgsCoordinateReferenceSystem("EPSG:4326")  # GeoJSON is WGS 84 lon/lat (RFC 7946)
        area = None
        if parameters.get(self.EXTENT):
            rect = self.parameterAsExtent(parameters, self.EXTENT, context)
            crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
            area = (QgsGeometry.fromRect(rect), (crs if crs.isValid() else layers[0].crs()).toWkt())

        def progress(done, total, message):
            if total:
                feedback.setProgress(100.0 * done / total)
            if message:
                feedback.setProgressText(message)

        try:
            sources = render_sources(build_sources(layers, area, None, context.project()), feedback.isCanceled,
                                     progress)
            client = shared_client(lambda text: log(text))
            loaded = client.request("load", {"checkpoint": checkpoint, "device": settings.device},
                                    is_cancelled=feedback.isCanceled)
            feedback.pushInfo(f"Model: {loaded.get('model')} on {loaded.get('device')}")
            # the index folder of the setting SketchSearch/index_dir
            options = with_index_dir(settings.protocol(out_crs.toWkt()))
            result = client.request("search", {
                "sketch": {"path": str(Path(sketch).resolve())} if sketch else None, "like": like, "unlike": unlike,
                "sources": sources,
                "extent": engine_extent(*area) if area else None, "options": options,
                "checkpoint": checkpoint, "device": settings.device, "thumbnail": 0},
                progress=progress, is_cancelled=feedback.isCanceled)
        except (EngineCancelled, InterruptedError):
            raise QgsProcessingException("The search was cancelled.") from None
        except EngineError as exc:
            if exc.details:
                feedback.pushDebugInfo(exc.details)
            raise QgsProcessingException(exc.message) from None
        except InputError as exc:
            raise QgsProcessingException(str(exc)) from None

        # The sink (and so the output file) is made only now: a failed run leaves no output behind.
        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, result_fields(),
                                             WKB_POLYGON, out_crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for match in result.get("matches", []):
            feature = QgsFeature(result_fields())
            feature.setGeometry(QgsGeometry.fromWkt(match["wkt"]))
            feature.setAttributes(match_attributes(match))
            sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
        feedback.pushInfo(f"{len(result.get('matches', []))} matches")
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


def places(layer, name: str) -> list[dict]:
    """The polygons of a vector layer (a multipolygon's parts one by one) as the protocol's places
    ({"wkt", "crs"} in the layer's CRS); [] for no layer. A layer without polygons is an error."""
    if layer is None:
        return []
    crs = layer.crs().toWkt()
    out = []
    for feature in layer.getFeatures():
        geometry = feature.geometry()
        if geometry.isNull() or geometry.isEmpty():
            continue
        parts = geometry.asGeometryCollection() if geometry.isMultipart() else [geometry]
        out += [{"wkt": part.asWkt(), "crs": crs} for part in parts if part.area() > 0]
    if not out:
        raise QgsProcessingException(f"{name}: layer {layer.name()!r} holds no polygons.")
    return out
