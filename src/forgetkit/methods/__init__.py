"""Named unlearning methods, one module each; importing this package registers them all."""
import importlib
import pkgutil

from .base import METHODS, EngineMethod, Method, build_method, check_requirements

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["METHODS", "EngineMethod", "Method", "build_method", "check_requirements"]
