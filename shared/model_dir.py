"""Exported model directories, as PaddleX writes them.

``inference.json`` (Paddle 3.x PIR) or ``inference.pdmodel`` (older), plus
``inference.pdiparams`` and ``inference.yml``; or, as PaddleX's
high-performance plugin accepts, ``inference.onnx`` and ``inference.yml``
(served by ONNX Runtime as it is). The front checks a directory
before it starts any worker, so a wrong path is one clear line at startup;
workers read the same object to build their preprocessing and backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ModelDirError(Exception):
    """The directory is missing, incomplete or has an unreadable inference.yml."""


@dataclass(frozen=True)
class ModelDir:
    path: Path
    program: Path | None  # None: an ONNX-only directory
    params: Path | None
    spec: dict[str, Any]
    onnx: Path | None = None

    @property
    def is_legacy_program(self) -> bool:
        """``inference.pdmodel``: the old IR, which oneDNN runs where PIR fails (Paddle 3.3)."""
        return self.program is not None and self.program.suffix == ".pdmodel"

    @classmethod
    def load(cls, path: str | Path) -> ModelDir:
        root = Path(path).expanduser().resolve()
        if not root.is_dir():
            raise ModelDirError(f"model directory {root} does not exist")
        program = next(
            (root / n for n in ("inference.json", "inference.pdmodel") if (root / n).is_file()),
            None,
        )
        onnx: Path | None = root / "inference.onnx"
        params: Path | None = root / "inference.pdiparams"
        if not onnx.is_file():  # type: ignore[union-attr]
            onnx = None
        if program is not None and not params.is_file():  # type: ignore[union-attr]
            if onnx is None:
                raise ModelDirError(f"{root} has no inference.pdiparams")
            program = None  # a stray program without weights: serve the ONNX file
        if program is None:
            if onnx is None:
                raise ModelDirError(
                    f"{root} has neither inference.json, inference.pdmodel nor inference.onnx"
                )
            params = None
        spec_path = root / "inference.yml"
        try:
            spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelDirError(f"{root} has no inference.yml") from None
        except (OSError, yaml.YAMLError) as exc:
            raise ModelDirError(f"cannot read {spec_path}: {exc}") from None
        if not isinstance(spec, dict):
            raise ModelDirError(f"{spec_path} must be a YAML mapping")
        return cls(root, program, params, spec, onnx)

    @property
    def model_name(self) -> str:
        return str((self.spec.get("Global") or {}).get("model_name") or self.path.name)

    @property
    def transform_ops(self) -> list[dict[str, Any]]:
        """``PreProcess.transform_ops`` as a list of one-key mappings."""
        ops = (self.spec.get("PreProcess") or {}).get("transform_ops") or []
        if not isinstance(ops, list):
            raise ModelDirError(f"{self.path}/inference.yml: PreProcess.transform_ops must be a list")
        return ops

    def post_process(self, name: str) -> dict[str, Any]:
        """A post-processing op's settings: ``PostProcess.<name>``, or ``PostProcess``
        itself when it says ``name: <name>`` (PaddleX's OCR models)."""
        section = self.spec.get("PostProcess") or {}
        if section.get("name") == name:
            return dict(section)
        return dict(section.get(name) or {})
