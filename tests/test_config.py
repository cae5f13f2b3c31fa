"""Pipeline configs: PaddleX 3.x and 3.0-beta forms, Serving settings, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pxserve.frontend.placement import plan_workers
from pxserve.shared.config import ConfigError, ServingSettings, builtin_pipelines, load_pipeline_config
from pxserve.shared.devices import Device, DeviceError, parse_devices, usable_cpu_count
from pxserve.shared.pipelines import get_pipeline


def test_builtin_pipeline_by_name() -> None:
    assert "image_classification" in builtin_pipelines()
    config = load_pipeline_config("image_classification")
    assert config.pipeline_name == "image_classification"
    assert config.sub_module("ImageClassification").model_name == "EfficientNet-Lite0"
    assert config.Serving.visualize is True and config.Serving.max_batch_size == 8
    pipeline = get_pipeline(config)
    assert pipeline.route == "/image-classification"
    assert pipeline.model_source() == ("EfficientNet-Lite0", None)


def test_paddlex_3x_file_with_model_dir(tmp_path: Path) -> None:
    path = tmp_path / "cls.yaml"
    path.write_text(
        "pipeline_name: image_classification\n"
        "SubModules:\n  ImageClassification:\n    module_name: image_classification\n"
        "    model_name: PP-LCNet_x1_0\n    model_dir: /models/lcnet\n    batch_size: 4\n    topk: 3\n"
        "Serving:\n  visualize: false\n  max_batch_size: 16\n  max_queue_delay_ms: 5\n"
    )
    config = load_pipeline_config(str(path))
    assert config.sub_module("ImageClassification").topk == 3
    assert config.Serving.max_batch_size == 16 and config.Serving.visualize is False
    assert get_pipeline(config).model_source() == ("PP-LCNet_x1_0", Path("/models/lcnet"))


def test_older_beta_form_is_understood(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    path = tmp_path / "beta.yaml"
    path.write_text(
        f"Global:\n  pipeline_name: image_classification\nPipeline:\n  model: {model_dir}\n  batch_size: 2\n"
    )
    config = load_pipeline_config(str(path))
    settings = get_pipeline(config).model_settings
    assert settings.model_dir == str(model_dir) and settings.batch_size == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pipeline_name: [unclosed", "not valid YAML"),
        ("- a list", "must be a YAML mapping"),
        ("SubModules: {}", "pipeline_name: Field required"),
        ("pipeline_name: image_classification\nServing: {max_batch_size: 0}", "Serving.max_batch_size"),
        ("pipeline_name: image_classification\nServing: {max_batchsize: 4}", "Serving.max_batchsize: Extra"),
    ],
)
def test_bad_files_give_one_clear_message(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_pipeline_config(str(path))


def test_unknown_names_and_models_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown pipeline 'nope'.*image_classification"):
        load_pipeline_config("nope")
    with pytest.raises(ConfigError, match=r"cannot read pipeline config"):
        load_pipeline_config(str(tmp_path / "missing.yaml"))
    path = tmp_path / "other.yaml"
    path.write_text("pipeline_name: object_detection\n")
    with pytest.raises(ConfigError, match=r"not served by pxserve"):
        get_pipeline(load_pipeline_config(str(path)))
    path.write_text(
        "pipeline_name: image_classification\n"
        "SubModules:\n  ImageClassification: {model_name: PP-LCNet_x1_0}\n"
    )
    with pytest.raises(ConfigError, match=r"not embedded.*model_dir"):
        get_pipeline(load_pipeline_config(str(path))).model_source()


def test_device_specs() -> None:
    assert parse_devices("cpu") == [Device("cpu")]
    assert parse_devices("gpu:0,1") == [Device("gpu", 0), Device("gpu", 1)]
    assert str(parse_devices("GPU:3")[0]) == "gpu:3"
    for bad in ("tpu", "gpu:a", "gpu:1,1", "gpu:-1"):
        with pytest.raises(DeviceError):
            parse_devices(bad)


def test_cpu_plan_never_oversubscribes_cores() -> None:
    cores = usable_cpu_count()
    plan = plan_workers([Device("cpu")], ServingSettings())
    assert 1 <= len(plan) <= cores
    assert sum(p.cpu_threads for p in plan) <= cores
    assert all(p.max_queue_delay_s == 0.0 for p in plan)
    explicit = plan_workers([Device("cpu")], ServingSettings(instances_per_device=3, cpu_threads=2))
    assert [(p.cpu_threads) for p in explicit] == [2, 2, 2]
    gpus = plan_workers([Device("gpu", 0), Device("gpu", 1)], ServingSettings(instances_per_device=2))
    assert [str(p.device) for p in gpus] == ["gpu:0", "gpu:0", "gpu:1", "gpu:1"]
    assert all(p.max_queue_delay_s > 0 for p in gpus)


def test_rings_fit_shared_memory_or_startup_says_how_to_raise_it() -> None:
    from pxserve.frontend.placement import SharedMemoryError, size_rings
    from pxserve.shared.config import MiB

    serving = ServingSettings()  # 48 + 16 MiB per worker, 16 MiB bodies
    roomy = size_rings(2, serving, free_bytes=24 * 1024 * MiB)
    assert (roomy.request_bytes, roomy.response_bytes) == (48 * MiB, 16 * MiB)
    docker = size_rings(2, ServingSettings(max_body_mb=4), free_bytes=64 * MiB)  # Docker's default /dev/shm
    assert 2 * (docker.request_bytes + docker.response_bytes) <= 64 * MiB
    assert docker.request_bytes // 2 >= 4 * MiB * 3 // 4  # still carries the largest allowed image
    with pytest.raises(SharedMemoryError, match=r"--shm-size"):
        size_rings(2, serving, free_bytes=64 * MiB)  # 16 MiB bodies cannot fit in 64 MB for 2 workers


def test_impossible_ring_budget_is_one_clear_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "huge.yaml"
    path.write_text(
        "pipeline_name: image_classification\n"
        "SubModules: {ImageClassification: {model_name: EfficientNet-Lite0}}\n"
        "Serving: {max_body_mb: 400000}\n"
    )
    command = [sys.executable, "-m", "pxserve", "--serve", "--pipeline", str(path), "--device", "cpu"]
    result = subprocess.run([*command, "--port", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "pxserve: error:" in result.stderr and "--shm-size" in result.stderr


def test_packaging_finds_every_package_and_data_file_by_itself() -> None:
    """A new pipeline's modules, weights and config install without editing a list."""
    import runpy

    root = Path(__file__).parent.parent
    found: dict = {}
    import setuptools

    real, setuptools.setup = setuptools.setup, lambda **kw: found.update(kw)
    try:
        runpy.run_path(str(root / "setup.py"))
    finally:
        setuptools.setup = real
    folders = {"pxserve": "pxserve", "frontend": "pxserve.frontend", "workers": "pxserve.workers"}
    folders |= {"shared": "pxserve.shared", "configs": "pxserve.configs"}
    expected = set()
    for folder, package in folders.items():
        for init in (root / folder).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                expected.add(".".join([package, *init.parent.relative_to(root / folder).parts]))
    assert set(found["packages"]) == expected
    assert {"pxserve.workers.ocr", "pxserve.shared.pipelines"} <= expected
    configs = set(found["package_data"]["pxserve.configs"])
    assert {f"{name}.yaml" for name in builtin_pipelines()} <= configs
    assert "ocr_weights/rec/ppocr_keys_v1.txt" in found["package_data"]["pxserve.workers"]


def test_a_serving_config_lists_pipelines_and_sets_the_engine_once(tmp_path: Path) -> None:
    from pxserve.shared.config import load_server_config

    ocr = tmp_path / "ocr.yaml"
    ocr.write_text(
        yaml.safe_dump({"pipeline_name": "OCR", "Serving": {"max_body_mb": 40, "queue_capacity": 9}})
    )
    serving = tmp_path / "serving.yaml"
    listed = {"pipelines": ["image_classification", "ocr.yaml"], "Serving": {"max_batch_size": 4}}
    serving.write_text(yaml.safe_dump(listed))
    config = load_server_config([str(serving)])
    assert config.names == ["image_classification", "OCR"]
    assert config.engine.max_batch_size == 4  # engine-wide, from the serving config
    assert config.engine.max_body_mb == 40  # the largest any pipeline takes: rings must fit it
    assert config.pipelines[1].Serving.queue_capacity == 9  # each pipeline keeps its own limits
    with pytest.raises(ConfigError, match="serving config"):
        load_server_config([str(serving), "OCR"])


def test_sub_pipelines_are_read_inline_or_from_a_file_and_namespaced(tmp_path: Path) -> None:
    sub = tmp_path / "my_ocr.yaml"
    base = yaml.safe_load((Path(__file__).parent.parent / "configs" / "OCR.yaml").read_text())
    base["SubModules"]["TextDetection"]["box_thresh"] = 0.7
    sub.write_text(yaml.safe_dump(base))
    composed = tmp_path / "composed.yaml"
    composed.write_text(
        yaml.safe_dump(
            {
                "pipeline_name": "OCR",
                "SubPipelines": {
                    "FromFile": {"pipeline_config_path": "my_ocr.yaml", "use_textline_orientation": False},
                    "Inline": {
                        "pipeline_name": "image_classification",
                        "SubModules": {"ImageClassification": {"model_name": "EfficientNet-Lite0"}},
                    },
                },
            }
        )
    )
    config = load_pipeline_config(str(composed))
    from_file = config.SubPipelines["FromFile"]
    assert from_file.SubModules["TextDetection"].model_extra["box_thresh"] == 0.7
    assert from_file.model_extra["use_textline_orientation"] is False  # the override wins
    pipeline = get_pipeline(config)
    keys = [key for key, _, _ in pipeline.all_models()]
    assert "FromFile/TextDetection" in keys and "Inline/ImageClassification" in keys
    assert "TextDetection" in keys  # the pipeline's own, unprefixed
