"""Turn benchmarks/results/results.json into plots and a Markdown table."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _closed(server: dict, scenario: str) -> list[dict]:
    return sorted(
        (r for r in server["runs"] if r["scenario"] == scenario and r["mode"] == "closed"),
        key=lambda r: r["level"],
    )


def _run(report: dict, system: str, scenario: str, level: float) -> dict | None:
    for server in report["servers"]:
        if server["system"] == system:
            for run in _closed(server, scenario):
                if run["level"] == level:
                    return run
    return None


def _limit(report: dict, engine: str, image: str, visualize: bool = False) -> dict | None:
    return next(
        (
            o
            for o in report["offline"]
            if o["engine"] == engine and o["image"] == image and o["visualize"] == visualize
        ),
        None,
    )


def plot(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = ["small JPEG", "12-MP photo", "small JPEG, visualize"]
    figure, axes = plt.subplots(1, len(scenarios), figsize=(15, 4.5))
    for axis, scenario in zip(axes, scenarios, strict=True):
        for server in report["servers"]:
            runs = _closed(server, scenario)
            if runs:
                axis.plot(
                    [r["level"] for r in runs], [r["rps"] for r in runs], marker="o", label=server["system"]
                )
        image = "phone" if scenario.startswith("12-MP") else "small"
        for engine, style in (("paddle", ":"), ("onnxruntime", "--")):
            limit = _limit(report, engine, image, scenario.endswith("visualize"))
            if limit:
                axis.axhline(
                    limit["images_per_s"], linestyle=style, color="grey", label=f"offline limit ({engine})"
                )
        axis.set(title=scenario, xlabel="concurrency", ylabel="requests/s", xscale="log")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(
        f"Throughput vs concurrency — {report['machine']['cpu']}, {report['machine']['cores']} cores"
    )
    figure.tight_layout()
    figure.savefig(out / "throughput.png", dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for server in report["servers"]:
        for run in server["runs"]:
            if run.get("latencies_ms"):
                values = run["latencies_ms"]
                axis.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=server["system"])
                level = run["level"]
    title = f"Latency CDF, small JPEG, concurrency {level:g}"
    axis.set(title=title, xlabel="latency (ms)", ylabel="fraction", xscale="log")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "latency_cdf.png", dpi=110)
    plt.close(figure)


def table(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}; "
        f"load generator on the same machine; {report['duration_s']:g} s per measurement.",
        "",
        "| system | scenario | load | req/s | p50 ms | p90 ms | p99 ms | errors | mean batch |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for server in report["servers"]:
        for r in server["runs"]:
            load = f"c={r['level']:g}" if r["mode"] == "closed" else f"{r['level']:g}/s open"
            batch = f"{r['mean_batch']:.2f}" if r.get("mean_batch") else "-"
            lines.append(
                f"| {server['system']} | {r['scenario']} | {load} | {r['rps']:.1f} | {r['p50_ms']:.1f} | "
                f"{r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {batch} |"
            )
    lines += ["", "| offline limit | image | visualize | processes x threads | images/s | single image ms |",
              "|---|---|---|---|---:|---:|"]  # fmt: skip
    for o in report["offline"]:
        lines.append(
            f"| {o['engine']} | {o['image']} | {o['visualize']} | {o['processes']} x {o['threads']} | "
            f"{o['images_per_s']:.1f} | {o['single_image_ms']:.1f} |"
        )
    lines += ["", *targets(report)]
    return "\n".join(lines) + "\n"


def targets(report: dict) -> list[str]:
    """The issue's targets, as measured ratios."""
    top = max(r["level"] for s in report["servers"] for r in s["runs"] if r["mode"] == "closed")
    out = ["| target | measured | met |", "|---|---|---|"]

    def row(name: str, value: float | None, fmt: str, ok: bool | None) -> None:
        shown = "n/a" if value is None else format(value, fmt)
        out.append(f"| {name} | {shown} | {'-' if ok is None else ('yes' if ok else 'no')} |")

    hp = _run(report, "pxserve onnxruntime", "small JPEG", top)
    limit = _limit(report, "onnxruntime", "small")
    ratio = hp["rps"] / limit["images_per_s"] if hp and limit else None
    row(
        f"hpip throughput at c={top:g} / offline limit >= 0.9",
        ratio,
        ".2f",
        None if ratio is None else ratio >= 0.9,
    )
    one = _run(report, "pxserve onnxruntime", "small JPEG", 1)
    gap = one["p50_ms"] - limit["single_image_ms"] if one and limit else None
    row(
        "hpip p50 at c=1 minus offline single-image latency <= 3 ms",
        gap,
        ".1f",
        None if gap is None else gap <= 3,
    )
    for scenario, need in (("small JPEG", 2.0), ("12-MP photo", 4.0)):
        ours, theirs = (
            _run(report, "pxserve onnxruntime", scenario, top),
            _run(report, "PaddleX 3.4.3", scenario, top),
        )
        ratio = ours["rps"] / theirs["rps"] if ours and theirs and theirs["rps"] else None
        row(f"hpip vs PaddleX 3.4.3, {scenario}, c={top:g} >= {need:g}x", ratio, ".2f",
            None if ratio is None else ratio >= need)  # fmt: skip
        lower = ours["p99_ms"] < theirs["p99_ms"] if ours and theirs else None
        row(
            f"hpip p99 below PaddleX's, {scenario}, c={top:g}", ours["p99_ms"] if ours else None, ".1f", lower
        )
    paddle = [s for s in report["servers"] if s["system"] == "pxserve paddle"]
    if paddle and any(s["system"] == "PaddleX 3.4.3" for s in report["servers"]):
        pairs = [
            (r, _run(report, "PaddleX 3.4.3", r["scenario"], r["level"]))
            for r in paddle[0]["runs"] if r["mode"] == "closed" and r["level"] > 1
        ]  # fmt: skip
        ahead = all(theirs is None or ours["rps"] > theirs["rps"] for ours, theirs in pairs)
        row("Paddle backend ahead of PaddleX at every concurrency > 1", None, "", ahead)
    return out


if __name__ == "__main__":
    results = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results")
    data = json.loads((results / "results.json").read_text())
    plot(data, results)
    print(table(data))
