"""The search options (collapsed at first): tile sizes, number of results, query expansion,
re-ranking, web layer resolution, device and model. settings() gives them as the plugin's options object."""
from __future__ import annotations

from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget
from qgis.PyQt.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QLineEdit, QSizePolicy,
                                 QSpinBox)

from ..options import (DEFAULT_EXPANSION, DEFAULT_STAGE2, DEFAULT_TILE_SIZES_M, DEFAULT_TOP_K, MAX_TOP_K,
                       SearchSettings, format_tile_sizes, parse_tile_sizes)


class OptionsPanel(QgsCollapsibleGroupBox):
    def __init__(self):
        super().__init__("Options")
        self.setCollapsed(True)
        self.engine_info: dict = {}
        form = QFormLayout(self)
        self.tile_sizes = QLineEdit(format_tile_sizes(DEFAULT_TILE_SIZES_M))
        self.tile_sizes.setToolTip("Tile edge in metres on the ground, one per scale: about twice the object's size")
        form.addRow("Tile sizes (m)", self.tile_sizes)
        self.top_k = QSpinBox()
        self.top_k.setRange(1, MAX_TOP_K)
        self.top_k.setValue(DEFAULT_TOP_K)
        form.addRow("Results", self.top_k)
        self.expansion = QCheckBox("Search again toward the best matches")
        self.expansion.setChecked(DEFAULT_EXPANSION)
        self.expansion.setToolTip("Query expansion: the sketch is moved toward its three best distinct matches and "
                                  "the search runs again (as the model card says). Measured to find more of what "
                                  "was drawn; turn it off when the first matches are mostly wrong.")
        form.addRow(self.expansion)
        self.stage2 = QCheckBox("Re-rank the best with cross-attention")
        self.stage2.setChecked(DEFAULT_STAGE2)
        form.addRow(self.stage2)
        self.resolution = QDoubleSpinBox()
        self.resolution.setRange(0.0, 1e6)
        self.resolution.setDecimals(2)
        self.resolution.setSpecialValueText("native / automatic")
        self.resolution.setToolTip("Pixel size in map units for web layers (WMS, XYZ); 0 = automatic")
        form.addRow("Web layer resolution", self.resolution)
        self.device = QComboBox()
        self.device.addItem("auto")
        self.device.currentIndexChanged.connect(self._describe_device)
        form.addRow("Device", self.device)
        self.device_label = QLabel("(shown once the search engine has started)")
        self.device_label.setWordWrap(True)
        self.device_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        form.addRow(self.device_label)
        self.checkpoint = QgsFileWidget()
        self.checkpoint.setFilter("Model checkpoints (*.safetensors *.pth *.pt)")
        self.checkpoint.lineEdit().setPlaceholderText("the shipped default model")
        form.addRow("Model", self.checkpoint)

    def settings(self) -> SearchSettings:
        """The options as chosen; tile sizes that are not numbers are an InputError."""
        return SearchSettings(top_k=self.top_k.value(), tile_sizes_m=tuple(parse_tile_sizes(self.tile_sizes.text())),
                              stage2=self.stage2.isChecked(), expansion=self.expansion.isChecked(),
                              web_resolution=self.resolution.value() or None,
                              device=self.device.currentText(), checkpoint=self.checkpoint.filePath() or None)

    def set_engine(self, info: dict) -> None:
        """The devices the engine's worker offers (its `hello` answer), keeping the choice when it can."""
        self.engine_info = info
        current = self.device.currentText()
        self.device.blockSignals(True)
        self.device.clear()
        self.device.addItems(info.get("devices") or ["auto"])
        if current in info.get("devices", []):
            self.device.setCurrentText(current)
        self.device.blockSignals(False)
        self._describe_device()

    def show_device(self, text: str) -> None:
        """The device the model was loaded on, in the engine's words."""
        self.device_label.setText(text)

    def _describe_device(self, *_) -> None:
        info = self.engine_info
        if info:
            runtime = "ONNX Runtime" if info.get("runtime") == "onnx" else "PyTorch"
            self.device_label.setText(f"{self.device.currentText()}: engine on {runtime}, Python {info.get('python')}")
