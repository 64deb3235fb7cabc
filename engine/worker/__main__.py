"""`python -m engine.worker`: the engine worker (see engine/worker/__init__.py)."""
import sys

from .server import main

sys.exit(main())
