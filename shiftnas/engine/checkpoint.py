"""Supernet checkpoints: our own (with training state) and the published OFA ones."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import CheckpointError
from ..io import atomic_torch_save
from ..search_spaces import SearchSpace


def save_supernet(
    path: str | Path,
    supernet: nn.Module,
    space: SearchSpace,
    num_classes: int,
    version: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a shiftnas supernet checkpoint atomically."""
    payload = {
        "format": "shiftnas-supernet-v1",
        "space": space.describe(),
        "num_classes": num_classes,
        "version": version,
        "state_dict": supernet.state_dict(),
        **(extra or {}),
    }
    return atomic_torch_save(path, payload)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file (or URL, when online) into a dict with at least ``state_dict``."""
    text = str(path)
    try:
        if text.startswith(("http://", "https://")):
            obj = torch.hub.load_state_dict_from_url(text, map_location="cpu", check_hash=False)
        else:
            p = Path(path)
            if not p.is_file():
                raise CheckpointError(f"checkpoint not found: {p}")
            # Published OFA checkpoints pickle a plain dict; only load files you trust.
            obj = torch.load(p, map_location="cpu", weights_only=False)
    except CheckpointError:
        raise
    except Exception as exc:  # network errors, corrupt files, non-torch files
        what = "not a PyTorch checkpoint (" if isinstance(exc, (pickle.UnpicklingError, EOFError)) else ""
        detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise CheckpointError(f"cannot read checkpoint {text}: {what}{detail}{')' if what else ''}") from None
    if isinstance(obj, dict) and "state_dict" in obj:
        return obj
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"state_dict": obj}
    raise CheckpointError(f"{text} is not a supernet checkpoint (no state_dict inside)")


def load_supernet_weights(supernet: nn.Module, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Load ``state_dict`` into ``supernet``; a classifier of another size is left freshly initialised.

    Returns the names of the keys that were not loaded (the classifier, when it was reset).
    Any other missing, unexpected or mismatched key raises :class:`CheckpointError`.
    """
    # ofa renamed some modules between releases; its own loader maps the old names.
    state_dict = _ofa_key_names(supernet, state_dict)
    own = supernet.state_dict()
    skipped = [
        k for k in state_dict if k.startswith("classifier.") and k in own and own[k].shape != state_dict[k].shape
    ]
    filtered = {k: v for k, v in state_dict.items() if k not in skipped}
    missing = sorted(set(own) - set(filtered) - set(skipped))
    unexpected = sorted(set(filtered) - set(own))
    mismatched = sorted(k for k in filtered if k in own and own[k].shape != filtered[k].shape)
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            k = mismatched[0]
            parts.append(
                f"{len(mismatched)} shape mismatches (e.g. {k}: checkpoint "
                f"{tuple(filtered[k].shape)} vs supernet {tuple(own[k].shape)})"
            )
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise CheckpointError("checkpoint does not match the search space's supernet: " + "; ".join(parts))
    supernet.load_state_dict({**own, **filtered})
    return skipped


def reset_classifier(supernet: nn.Module, seed: int = 0) -> None:
    """Re-initialise the classifier (transfer to a new data set: the head is trained during the search)."""
    torch.manual_seed(seed)
    for module in supernet.classifier.modules():
        if module is not supernet.classifier and hasattr(module, "reset_parameters"):
            module.reset_parameters()


def _ofa_key_names(supernet: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    own = supernet.state_dict()
    renamed = {}
    for key, value in state_dict.items():
        new = key.replace(".mobile_inverted_conv.", ".conv.")
        if new not in own:
            for old, fresh in (
                (".bn.bn.", ".bn."),
                (".conv.conv.weight", ".conv.weight"),
                (".linear.linear.", ".linear."),
                (".bn.", ".bn.bn."),  # the published ResNet50 names its dynamic layers flat
                (".conv.weight", ".conv.conv.weight"),
                (".linear.", ".linear.linear."),
            ):
                if old in new and new.replace(old, fresh) in own:
                    new = new.replace(old, fresh)
                    break
        renamed[new] = value
    return renamed


def weights_fingerprint(module: nn.Module) -> str:
    """A short hash of every tensor in ``module``'s state dict (identifies the supernet weights)."""
    import hashlib

    h = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
