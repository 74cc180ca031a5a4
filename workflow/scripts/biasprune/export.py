"""Exporting a pruned model: one mask's components removed by weight edits, saved as a plain transformers
folder with a record of what was pruned."""

from __future__ import annotations

import json
from pathlib import Path

from .ablation import Mask, masked
from .errors import ConfigError
from .io import atomic_path
from .maskfile import load_masks
from .models import load_model


def export_pruned(model_dir, mask_file, condition: str, setting: str, out, ablation: str = "zero") -> dict:
    """Save the model with one mask's components removed (weights edited) as a plain transformers folder."""
    model, tokenizer = load_model(model_dir, device="cpu", dtype="float32")
    manifest, masks = load_masks(mask_file, model)
    if (condition, setting) not in masks:
        available = sorted({f"{c} [{s}]" for c, s in masks})
        raise ConfigError(
            "config", "export.condition/setting", f"one of {available[:12]}", f"{condition} [{setting}]"
        )
    mask = Mask(manifest["unit"], masks[condition, setting], ablation)
    record = {key: manifest[key] for key in ("unit", "method", "scope")} | {
        "condition": condition,
        "setting": setting,
        "ablation": ablation,
        "pruned": mask.count(),
        "source": str(model_dir),
    }
    with atomic_path(out, directory=True) as tmp, masked(model, mask, "edit"):
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / "biasprune-pruning.json").write_text(json.dumps(record, indent=2))
    return record
