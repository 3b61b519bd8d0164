"""Inference engines behind one interface; :func:`open_engine` is the way from a model or an artifact to one."""

from vmaedet.engines.base import (Engine, artifact_backend, create_engine, engine_class, list_engines, open_engine,
                                  register_engine)

__all__ = ["Engine", "artifact_backend", "create_engine", "engine_class", "list_engines", "open_engine",
           "register_engine"]
