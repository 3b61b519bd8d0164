"""AVA frame-mAP@0.5 evaluation (official ActivityNet and seed protocols).

The AVA CSV/label-map I/O lives in :mod:`vmaedet.data.annotations`; its main names are re-exported here
for users of the evaluator.
"""

from vmaedet.evaluation.ava import PROTOCOLS, EvalResult, evaluate_frame_map
from vmaedet.data.annotations import AvaRows, read_ava_csv, read_exclusions, read_labelmap, write_ava_csv

__all__ = [
    "PROTOCOLS",
    "AvaRows",
    "EvalResult",
    "evaluate_frame_map",
    "read_ava_csv",
    "read_exclusions",
    "read_labelmap",
    "write_ava_csv",
]
