"""Ready-made per-member writers for TensorBoard, MLflow and Weights & Biases, each a
:class:`firepbt.Callback` run in the controller (no worker needs credentials) and each an
optional extra: ``pip install 'firepbt[tensorboard]'``, ``'firepbt[mlflow]'``,
``'firepbt[wandb]'``, or ``'firepbt[logging]'`` for all three. Their packages are imported only
when a run starts.

A config names them in ``[logging]`` (see ``firepbt.loggers._settings``); from Python, pass
them to ``firepbt.run(..., callbacks=[TensorBoardWriter("tb")])`` or name them with
``logging={"tensorboard": "tb"}``.
"""

from firepbt.loggers._mlflow import MLflowWriter
from firepbt.loggers._settings import WRITERS, build_writers, check_logging
from firepbt.loggers._tensorboard import TensorBoardWriter
from firepbt.loggers._wandb import WandbWriter

__all__ = [
    "WRITERS",
    "MLflowWriter",
    "TensorBoardWriter",
    "WandbWriter",
    "build_writers",
    "check_logging",
]
