"""Person detectors: the boxes the action model classifies, behind one interface and a registry.

:mod:`~vmaedet.persons.base` (the :class:`PersonDetector` base class, :func:`register_detector`,
:func:`create_person_detector`), one module per family: :mod:`~vmaedet.persons.ssdlite` (+
:mod:`~vmaedet.persons.graphdef`), :mod:`~vmaedet.persons.yolo`, :mod:`~vmaedet.persons.motion`,
:mod:`~vmaedet.persons.proposals`; :mod:`~vmaedet.persons.nms` selects boxes.
"""

from vmaedet.persons.base import PersonDetector, create_person_detector, list_detectors, register_detector

__all__ = ["PersonDetector", "create_person_detector", "list_detectors", "register_detector"]
