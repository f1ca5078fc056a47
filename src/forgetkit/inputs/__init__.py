"""What a user hands to forgetkit, checked and converted in one place for the API, the audit and the CLI.

Data (a :class:`~forgetkit.data.base.Split`, an ``(x, y)`` pair, a map-style ``Dataset`` or a
``DataLoader``) becomes a Split (:mod:`.splits`); inputs, labels and the request are checked once,
up front, with an error that names the argument and what to do (:mod:`.checks`); models, devices and
a user's input normalisation are handled one way (:mod:`.models`). Streamed data is read by
:mod:`forgetkit.unlearn.streaming` with the same checks.
"""
from .checks import (MIN_HELDOUT_PER_CLASS, InputCheck, check_forget_classes, check_heldout_counts, check_inputs,
                     check_labels, check_mia_sizes, check_seed, class_list, resolve_classes)
from .models import (ForgetkitWarning, KeepModes, MeanStd, Normalised, ProbabilitiesWarning, UnchangedModelWarning,
                     check_trainable, model_device, moved, normalisation, normalised, output_size, resolve_device, unwrapped)
from .splits import (DATA_PATHS, as_split, check_fits, check_loader_order, choose_data_path, has_transform,
                     labels_checked, pair, to_tensor)

__all__ = ["MIN_HELDOUT_PER_CLASS", "InputCheck", "check_forget_classes", "check_heldout_counts", "check_inputs",
           "check_labels", "check_mia_sizes", "check_seed", "class_list", "resolve_classes", "ForgetkitWarning", "KeepModes",
           "MeanStd", "Normalised", "ProbabilitiesWarning", "UnchangedModelWarning", "check_trainable", "model_device", "moved",
           "normalisation", "normalised", "output_size", "resolve_device", "unwrapped", "DATA_PATHS", "as_split",
           "check_fits", "check_loader_order", "choose_data_path", "has_transform", "labels_checked", "pair",
           "to_tensor"]
