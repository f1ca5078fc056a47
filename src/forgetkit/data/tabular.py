"""Tabular dataset loaders (filled in by the soft-weighting work)."""
