"""The MLAGT network and its configurations."""
from .config import CONFIGS, LITE0_DEFAULT, PAPER_VITB16, VIT_TINY, ModelConfig
from .network import MLAGT, l2_distance

__all__ = ["CONFIGS", "LITE0_DEFAULT", "PAPER_VITB16", "VIT_TINY", "ModelConfig", "MLAGT", "l2_distance"]
