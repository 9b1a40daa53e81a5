"""The export report: ``export_report.json`` beside the model and a rich pass/fail table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from twdeploy import atomic
from twdeploy.export.verify import Verification


@dataclass
class Artifact:
    """One written file (ONNX model or engine) with its build time and verification."""

    path: Path
    kind: str
    size_bytes: int
    build_seconds: float
    verification: Verification | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return {
            "path": self.path.name,
            "kind": self.kind,
            "size_bytes": self.size_bytes,
            "build_seconds": round(self.build_seconds, 3),
            "verification": self.verification.to_dict() if self.verification else None,
        }


@dataclass
class ExportReport:
    """Everything ``twdeploy export`` did: source, settings, inputs used, artefacts and checks."""

    source: str
    card: dict[str, Any]
    settings: dict[str, Any]
    inputs: str
    lint: list[dict[str, str]] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)
    capability: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per ONNX file: TensorRT's parser verdict (export/capability.py), or why it was skipped."""

    @property
    def passed(self) -> bool:
        """True when every verification of every artefact passed."""
        return all(a.verification.passed for a in self.artifacts if a.verification)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return {
            "source": self.source,
            "passed": self.passed,
            "card": self.card,
            "settings": self.settings,
            "inputs": self.inputs,
            "lint": self.lint,
            "capability": self.capability,
            "artifacts": [a.to_dict() for a in self.artifacts],
        }

    def write(self, path: Path) -> None:
        """Write ``to_dict`` as JSON, atomically."""
        atomic.write_text(path, json.dumps(self.to_dict(), indent=2))


def lint_dicts(findings: list[Any]) -> list[dict[str, str]]:
    """Lint findings as JSON-compatible dicts."""
    return [asdict(f) for f in findings]


def _fmt(value: float) -> str:
    return f"{value:.2f}" if value >= 10 else f"{value:.3g}"


def table(report: ExportReport) -> Table:
    """One section per artefact: size, build time, each check (✅/❌) against its reference, timings."""
    out = Table(title=f"twdeploy export: {report.source}", caption="rules and limits: export_report.json")
    for column in ("artefact", "check", "measured", "limit", ""):
        out.add_column(column)
    for art in report.artifacts:
        size = f"{art.size_bytes / 2**20:.1f} MiB, {art.build_seconds:.1f} s"
        out.add_row(f"{art.path.name}", art.kind, size, "", "")
        ver = art.verification
        if ver is None:
            continue
        for c in ver.checks:
            out.add_row("", f"{c.name} vs {ver.reference}", _fmt(c.value), _fmt(c.limit), "✅" if c.passed else "❌")
        for backend, ms in ver.ms_per_image.items():
            out.add_row("", f"{backend} ms/img", f"{ms:.1f}", "", "")
        out.rows[-1].end_section = True
    return out
