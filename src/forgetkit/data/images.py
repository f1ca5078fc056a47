"""Image dataset loaders (filled in by the data work)."""
