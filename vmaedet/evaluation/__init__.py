"""AVA frame-mAP@0.5 evaluation (official ActivityNet and seed protocols) and AVA CSV/label-map I/O."""

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
