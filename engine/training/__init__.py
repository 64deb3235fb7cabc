"""Training of MLAGT models: synthetic sketches, feature caches, losses, the resumable loop."""
