"""``forgetkit methods``: what is registered (built in and from plug-ins), each with one line."""
from __future__ import annotations


def _first_line(obj) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def methods(args) -> int:
    from ..plugins import load_plugins

    load_plugins()
    from ..data import DATASETS
    from ..data.requests import REQUEST_SHAPES
    from ..methods import METHODS
    from ..metrics.evaluators import EVALUATORS
    from ..models import MODELS
    from ..options import declared_options
    from ..unlearn.weightings import WEIGHTINGS

    print("Methods (retrain is the reference every run trains):")
    for name, cls in METHODS.items():
        needs = ",".join(sorted(cls.needs))
        tags = [t for t, on in (("weightable", cls.supports_weighting), ("images only", cls.image_only),
                                ("class requests", cls.class_only)) if on]
        print(f"  {name:<14} {cls.description}  [needs: {needs}{'; ' + ', '.join(tags) if tags else ''}]")
    print("Weightings (for weightable methods):")
    for name, cls in WEIGHTINGS.items():
        print(f"  {name:<14} {cls.description}")
    print("Evaluators (metrics.extra):")
    for name, fn in EVALUATORS.items():
        print(f"  {name:<14} {_first_line(fn)}")
    print("Datasets:")
    for name, fn in DATASETS.items():
        print(f"  {name:<14} {_first_line(fn)}")
    print("Models (model.name, --model; or your own as --model package.module:function):")
    for name, fn in MODELS.items():
        print(f"  {name:<14} {_first_line(fn)}{_options(declared_options(fn))}")
    print("Request shapes (requests.N.kind):")
    for name, cls in REQUEST_SHAPES.items():
        print(f"  {name:<14} {_first_line(cls)}{_options(declared_options(cls))}")
    return 0


def _options(declared: dict) -> str:
    return f"  [options: {', '.join(declared)}]" if declared else ""


def add_parser(sub) -> None:
    m = sub.add_parser("methods", help="list methods, weightings, evaluators, datasets, models and request shapes")
    m.set_defaults(func=methods)
