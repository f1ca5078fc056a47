"""The Formulation-1 engine and its parts; importing this package registers every weighting module."""
import importlib
import pkgutil

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
