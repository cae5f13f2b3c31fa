"""What a job submission means: its model, its pipeline's request fields, its pages.

Every check here runs at submit, so a client learns of a wrong field from a
400 naming it, not from a job that fails later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from pxserve.shared.config import describe_validation_error
from pxserve.shared.errors import RequestError
from pxserve.shared.pipelines import Pipeline

# Job model names PaddleOCR's clients send, by the served pipeline that reads them, and the
# reader (text recognition model family) each OCR name asks for.
DOCUMENT_MODELS = {"PP-StructureV3": "PP-StructureV3"}
OCR_MODELS = {"PP-OCRv6": "PP-OCRv6", "PP-OCRv5": "PP-OCRv5", "PP-OCRv5-latin": "latin_PP-OCRv5"}
VISION_LANGUAGE_MODELS = ("PaddleOCR-VL", "PaddleOCR-VL-1.5", "PaddleOCR-VL-1.6")
# Request fields only PaddleOCR-VL reads: ignored, and listed, when an alias maps a VL name here.
VISION_LANGUAGE_FIELDS = frozenset(
    {
        "useLayoutDetection", "promptLabel", "repetitionPenalty", "temperature", "topP", "minPixels",
        "maxPixels", "maxNewTokens", "layoutShapeMode", "mergeLayoutBlocks", "useQueues",
        "prettifyMarkdown", "showFormulaNumber", "restructurePages", "mergeTables", "relevelTitles",
        "vlmExtraArgs", "useOcrForImageBlock",
    }
)  # fmt: skip
# Fields the job itself carries: never taken from optionalPayload.
NOT_PAYLOAD = frozenset({"file", "fileType", "logId"})
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


@dataclass(frozen=True)
class ModelChoice:
    """A job model name resolved: the pipeline that reads it, and what the client should know."""

    pipeline: Pipeline
    notes: tuple[str, ...] = ()
    aliased: bool = False  # a vision-language name mapped here by the operator


class ModelCatalog:
    """Job model names -> the served pipelines that read them (and the operator's aliases)."""

    def __init__(self, pipelines: list[Pipeline], aliases: dict[str, str]) -> None:
        self.by_name = {p.name: p for p in pipelines}
        self.aliases = aliases
        self.served = sorted(
            name
            for name, pipeline in {**DOCUMENT_MODELS, **dict.fromkeys(OCR_MODELS, "OCR")}.items()
            if pipeline in self.by_name
        )
        self.served += sorted(a for a, target in aliases.items() if target in self.served)

    def check_aliases(self) -> list[str]:
        """Aliases whose target this server does not serve (for a startup warning)."""
        return [f"{a}={t}" for a, t in self.aliases.items() if t not in self.served]

    def resolve(self, model: str) -> ModelChoice:
        target = self.aliases.get(model)
        if target is not None and target in self.served:
            choice = self._direct(target)
            alias = f"--job-model-alias {model}={target}"
            note = f"{model} is read by {choice.pipeline.name} on this server ({alias})"
            return ModelChoice(choice.pipeline, (note, *choice.notes), aliased=True)
        if model in self.served:
            return self._direct(model)
        why = (
            f"{model} is a vision-language model this server does not run"
            if model in VISION_LANGUAGE_MODELS
            else f"unknown model {model!r}"
        )
        offer = ", ".join(self.served) or "none (serve PP-StructureV3 or OCR)"
        raise RequestError(400, f"model: {why}; this server serves: {offer}")

    def _direct(self, model: str) -> ModelChoice:
        if model in DOCUMENT_MODELS:
            return ModelChoice(self.by_name[DOCUMENT_MODELS[model]])
        pipeline = self.by_name["OCR"]
        reader = str(pipeline.config.sub_module("TextRecognition").model_name or "")
        family = OCR_MODELS[model]
        if reader.startswith(f"{family}_"):
            return ModelChoice(pipeline)
        note = f"{model} is not served here; read by this server's OCR reader, {reader}"
        return ModelChoice(pipeline, (note,))


def camel_case(key: str) -> str:
    """``use_doc_orientation_classify`` -> ``useDocOrientationClassify`` (Langflow sends snake_case)."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def payload_fields(raw: Any, choice: ModelChoice) -> tuple[dict[str, Any], list[str]]:
    """``optionalPayload`` (a JSON string or object) as the pipeline's request fields, checked, and
    the fields ignored as a vision-language model's. ``""`` and null mean "not set"."""
    if raw is None or raw == "":
        raw = {}
    if isinstance(raw, str | bytes):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RequestError(400, f"optionalPayload is not valid JSON: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RequestError(400, "optionalPayload must be a JSON object")
    fields: dict[str, Any] = {}
    ignored: list[str] = []
    for key, value in raw.items():
        name = camel_case(str(key)) if "_" in str(key) else str(key)
        if value is None or value == "" or name in NOT_PAYLOAD:
            continue
        if choice.aliased and name in VISION_LANGUAGE_FIELDS:
            ignored.append(name)
            continue
        fields[name] = value
    try:
        choice.pipeline.request_model.model_validate({**fields, "file": "job"})
    except ValidationError as exc:
        raise RequestError(400, f"optionalPayload: {describe_validation_error(exc)}") from None
    return fields, sorted(ignored)


def page_ranges(text: str | None) -> list[int] | None:
    """PaddleOCR's ``pageRanges`` (1-based, ``"2,4-6"``) as sorted 0-based pages; None: all."""
    if text is None or not str(text).strip():
        return None
    pages: set[int] = set()
    for part in str(text).split(","):
        match = _RANGE.match(part)
        if not match:
            raise RequestError(400, f"pageRanges: {part.strip()!r} is not a page or a range like 4-6")
        first, last = int(match[1]), int(match[2] or match[1])
        if first < 1 or last < first:
            raise RequestError(400, f"pageRanges: {part.strip()!r} is not a range of pages counted from 1")
        if last - first > 100_000:
            raise RequestError(400, f"pageRanges: {part.strip()!r} is too long a range")
        pages.update(range(first - 1, last))
    return sorted(pages)
