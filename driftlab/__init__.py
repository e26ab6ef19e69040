"""driftlab: measure why Keras results do not reproduce.

The library is importable without TensorFlow: modules that train import it
lazily, after a profile's environment knobs have been applied.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
