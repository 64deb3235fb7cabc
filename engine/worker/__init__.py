"""The engine worker: `python -m engine.worker` serves the QGIS plugin's requests over its
stdin/stdout, one JSON message per line, so the engine's native libraries (torch, rasterio's GDAL,
shapely's GEOS) never load into QGIS's own process. The protocol is written down in ARCHITECTURE.md
("The engine worker and its protocol").

Modules, one job each: `channel` (the protocol pipe; stdout moved aside), `server` (requests read in
a thread, served one at a time, cancel), `progress` (throttled progress messages), `operations`
(what each request does), `models` (the loaded model, kept between requests), `messages` (request
JSON -> engine objects, matches -> JSON), `errors` (user, cancelled or internal).

Nothing here imports torch, shapely or rasterio at import time: the `ready` line goes out first.
"""
PROTOCOL = 1
