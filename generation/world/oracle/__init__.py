"""Oracle judges: small classifiers trained only on renderer ground truth, for evaluation.

They are instruments, kept apart from every training path of the loop (``tests/test_layers.py``
checks that only this package, the simulation and the benchmarks import it). ``Oracle`` judges
images (subject, colour, expression, each style part, sticker style) and 8-frame clips (motion,
smoothness); ``train`` rebuilds the committed weights in ``weights/`` from stream ``oracle``;
``bench/oracle.py`` scores them on stream ``oracle-eval``.
"""

from .judge import Oracle
from .store import OracleError

__all__ = ["Oracle", "OracleError"]
