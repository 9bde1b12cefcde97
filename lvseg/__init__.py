"""Left-ventricle segmentation on EchoNet-Dynamic: data, models, losses, metrics, prompts.

This package never imports ray or mlflow; :mod:`search` is the only place that does.
"""

__version__ = "0.1.0"
