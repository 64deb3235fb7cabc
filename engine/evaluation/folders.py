"""Moved to engine.datasets; this name stays until engine/cli/evaluate.py imports from there."""
from ..datasets import Item, list_class_folder  # noqa: F401
