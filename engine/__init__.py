"""Sketch Search engine: everything that is not GUI (never imports qgis)."""
import warnings

# torch 2.14 warns about an API that timm still uses at import time; it is not ours to fix.
warnings.filterwarnings("ignore", message=".*torch.jit.interface.*is deprecated", category=FutureWarning)

__version__ = "0.1.0"
