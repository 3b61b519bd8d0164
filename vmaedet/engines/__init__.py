"""Inference engines behind one interface; chosen by name through a registry."""

from vmaedet.engines.base import Engine, create_engine, engine_class, list_engines, register_engine

__all__ = ["Engine", "create_engine", "engine_class", "list_engines", "register_engine"]
