"""MkDocs hook: the manual's tables that are made from the code, so they cannot drift from it.

A page asks for one with a marker on a line of its own:

- ``<!-- pxserve:serving-keys -->``: every ``Serving`` key (shared/config.py's pydantic models, their
  attribute docstrings, defaults, and whether the key is per server or per pipeline);
- ``<!-- pxserve:metrics -->``: every metric ``/metrics`` exports (frontend/metrics.py);
- ``<!-- pxserve:request-fields NAME -->``: the request fields of pipeline NAME (its request model).

It also publishes the benchmark plots (benchmarks/results/*.png) where the pages link them, so
they live once, beside the numbers they were drawn from.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files
from pydantic import BaseModel
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- pxserve:([a-z-]+)(?: ([^ ]+))? -->$", re.MULTILINE)


def on_files(files: Files, config: Any) -> Files:
    for plot in sorted((ROOT / "benchmarks" / "results").glob("*.png")):
        uri = plot.relative_to(ROOT).as_posix()
        files.append(File(uri, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    return MARKER.sub(lambda match: TABLES[match.group(1)](match.group(2)), markdown)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{json.dumps(value)}`"


def _rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo]]:
    rows = []
    for name, field in model.model_fields.items():
        rows.append((prefix + name, field))
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            rows += _rows(field.annotation, f"{prefix}{name}.")
    return rows


def serving_keys(_: str | None) -> str:
    from pxserve.shared.config import ENGINE_KEYS, ServingSettings

    lines = ["| key | default | whose | what it does |", "|---|---|---|---|"]
    for name, field in _rows(ServingSettings):
        whose = "server" if name in ENGINE_KEYS else "pipeline"
        lines.append(f"| `{name}` | {_default(field)} | {whose} | {_cell(field.description or '')} |")
    return "\n".join(lines) + "\n"


def metrics(_: str | None) -> str:
    from pxserve.frontend.metrics import Metrics

    lines = ["| metric | type | labels | what it measures |", "|---|---|---|---|"]
    exported = Metrics()
    exported.track_worker_memory(lambda: {"0": 0})  # a sample, so the collector shows its label
    for collector in exported.registry._collector_to_names:  # every collector, labelled or not
        for family in collector.collect():
            label_names = getattr(collector, "_labelnames", None)
            if label_names is None:
                label_names = family.samples[0].labels if family.samples else ()
            labels = ", ".join(f"`{label}`" for label in label_names)
            name = family.name + ("_total" if family.type == "counter" else "")
            lines.append(f"| `{name}` | {family.type} | {labels} | {_cell(family.documentation)} |")
    return "\n".join(lines) + "\n"


def _schema_type(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    if "$ref" in schema:
        return "object"
    if "anyOf" in schema:
        return " or ".join(_schema_type(option, definitions) for option in schema["anyOf"])
    if "enum" in schema:
        return " or ".join(json.dumps(value) for value in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    if schema.get("type") == "array":
        return f"array of {_schema_type(schema.get('items', {}), definitions)}"
    return schema.get("type", "any")


def request_fields(pipeline: str | None) -> str:
    """A pipeline's request fields, as /openapi.json describes them (the request model's schema)."""
    from pxserve.shared.pipelines import pipeline_class

    schema = pipeline_class(pipeline or "").request_model.model_json_schema()
    definitions = schema.get("$defs", {})
    required = set(schema.get("required", ()))
    lines = ["| field | type | default | notes |", "|---|---|---|---|"]
    properties = sorted(schema["properties"].items(), key=lambda item: item[0] not in required)
    for name, prop in properties:  # required first, then in the model's order
        default = "required" if name in required else f"`{json.dumps(prop.get('default'))}`"
        notes = _cell(prop.get("description", ""))
        lines.append(f"| `{name}` | {_schema_type(prop, definitions)} | {default} | {notes} |")
    return "\n".join(lines) + "\n"


TABLES = {"serving-keys": serving_keys, "metrics": metrics, "request-fields": request_fields}
