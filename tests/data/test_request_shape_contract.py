"""Contract of every registered request shape (a plug-in's too): its example builds a valid forget
set — integer indices in range, unique, sorted, neither empty nor everything — the same one for a
seed, tagged with the shape's name; and bad options are refused naming the field."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from forgetkit.data.requests import REQUEST_SHAPES, ShapeData, build_request, make_shape, validate_indices

NUM_CLASSES = 4
Y = np.random.RandomState(0).permutation(np.repeat(np.arange(NUM_CLASSES), 30))
X = np.random.RandomState(1).rand(len(Y), 6).astype(np.float32)
FEATURES = X[:, :3] + Y[:, None]  # penultimate features stand-in: one tight group per class


def data(seed: int) -> ShapeData:
    return ShapeData(Y, NUM_CLASSES, seed, X, FEATURES)


@pytest.fixture(params=REQUEST_SHAPES.names())
def shape(request):
    return request.param, REQUEST_SHAPES.get(request.param)


def test_the_example_builds_a_valid_forget_set(shape):
    name, cls = shape
    req = make_shape(name, dict(cls.example)).build(data(0))
    assert req.kind == name and req.name
    assert np.issubdtype(req.indices.dtype, np.integer)
    assert np.array_equal(validate_indices(req.indices, len(Y)), req.indices)  # in range, unique, sorted, not all
    assert all(0 <= c < NUM_CLASSES for c in req.classes)


def test_a_seed_gives_the_same_forget_set(shape):
    name, cls = shape
    first, again = (make_shape(name, dict(cls.example)).build(data(7)) for _ in range(2))
    assert np.array_equal(first.indices, again.indices) and first.name == again.name


def test_the_python_api_builds_the_same_request(shape):
    name, cls = shape
    req = build_request(name, Y, NUM_CLASSES, 3, x=X, features=FEATURES, **cls.example)
    assert np.array_equal(req.indices, make_shape(name, dict(cls.example)).build(data(3)).indices)


def test_an_unknown_option_is_refused_by_name(shape):
    name, cls = shape
    with pytest.raises(ValueError, match=r"requests\.0: unknown option\(s\) \['nope'\]"):
        make_shape(name, {**cls.example, "nope": 1}, "requests.0")


def test_a_wrongly_typed_option_is_refused_by_name(shape):
    name, cls = shape
    for f in dataclasses.fields(cls):
        if f.init:
            with pytest.raises(ValueError, match=rf"requests\.0\.{f.name}: expected"):
                make_shape(name, {**cls.example, f.name: {"not": "an option value"}}, "requests.0")


def test_a_missing_required_option_is_refused_by_name(shape):
    name, cls = shape
    for f in dataclasses.fields(cls):
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            options = {k: v for k, v in cls.example.items() if k != f.name}
            with pytest.raises(ValueError, match=rf"a {name} request needs the field '{f.name}'"):
                make_shape(name, options, "requests.0")


def test_an_unknown_shape_is_refused_with_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown request shape 'radnom' \(did you mean 'random'\?\); known: "):
        make_shape("radnom", {})


@pytest.mark.parametrize("name, options, message", [
    ("random", {"fraction": 1.0}, "fraction must be in (0, 1), got 1.0"),
    ("class", {"classes": []}, "classes must name at least one class"),
    ("longtail", {"ratio": 0.3, "gamma": -1}, "gamma must be >= 0, got -1.0"),
    ("longtail", {"ratio": 0.0, "gamma": 1}, "ratio must be in (0, 1], got 0.0"),
    ("mixed", {"whole": 0, "partial": 1, "fraction": 0.5}, "whole must be >= 1, got 0"),
    ("mixed", {"whole": 1, "partial": 1, "fraction": 1.5}, "fraction must be in (0, 1), got 1.5"),
])
def test_out_of_range_options_of_the_built_in_shapes(name, options, message):
    with pytest.raises(ValueError) as err:
        make_shape(name, options, "requests.2")
    assert str(err.value) == f"requests.2: {message}"
