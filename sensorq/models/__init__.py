"""Models in the query (docs/models.md): window features computed from a
cache's blocks, small models (tree ensembles, linear models, int8 MLPs, an
anomaly scorer) in sensorq's own ``.sqm`` format, scored in float or in the
integer arithmetic the device runs.

Importing this package never imports scikit-learn; only ``sklearn_import``,
``train`` and ``fit`` do, when they are used.
"""
from .format import encode_model, load_model  # noqa: F401
from .model import Model, ModelError  # noqa: F401
