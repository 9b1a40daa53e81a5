"""``twdeploy train``'s options are generated from ``TrainConfig``: one flag per field, --config files, aliases."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from twdeploy.cli import train as train_cli
from twdeploy.cli.app import app
from twdeploy.cli.options import flag
from twdeploy.training.config import FIELD_HELP, NOT_FLAGS, TrainConfig


def _command_params(command_name: str = "train") -> dict[str, Any]:
    click_app = typer.main.get_command(app)
    command = click_app.commands[command_name]  # type: ignore[attr-defined]
    return {p.name: p for p in command.params}


def _capture_app(cls: type[TrainConfig] = TrainConfig) -> tuple[typer.Typer, list[TrainConfig]]:
    """A one-command app with train's generated options that records the config instead of training."""
    seen: list[TrainConfig] = []

    def main(ctx: typer.Context, **options: Any) -> None:
        config = options.pop("config")
        seen.append(train_cli.build_config(ctx, {k: v for k, v in options.items() if k not in ("resume", "gpus")},
                                           config, cls))  # fmt: skip

    main.__signature__ = inspect.Signature(train_cli.training_options(cls))  # type: ignore[attr-defined]
    capture = typer.Typer()
    capture.command()(main)
    return capture, seen


def test_every_field_is_a_flag_with_its_default_and_help() -> None:
    params = _command_params()
    for f in dataclasses.fields(TrainConfig):
        if f.name in NOT_FLAGS:
            assert f.name not in params
            continue
        param = params[f.name]
        assert flag(f.name) in param.opts or f"--{f.name}" in param.opts, f.name
        default = param.default
        assert default == f.default or (f.name == "pixel_labels" and f.default is None), f.name
        assert param.help == FIELD_HELP[f.name]


def test_help_table_names_only_fields() -> None:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(FIELD_HELP) <= names
    assert names - NOT_FLAGS <= set(FIELD_HELP), "give every new TrainConfig field its help in FIELD_HELP"


def test_a_new_field_becomes_a_flag_without_a_cli_edit() -> None:
    extended = dataclasses.make_dataclass(
        "Extended", [("focal_gamma", float, dataclasses.field(default=2.0)), ("use_ema", bool, True)],
        bases=(TrainConfig,),
    )  # fmt: skip
    capture, seen = _capture_app(extended)
    result = CliRunner().invoke(capture, ["--focal-gamma", "0.5", "--no-use-ema", "--lr", "0.01"])
    assert result.exit_code == 0, result.output
    assert seen[0].focal_gamma == 0.5 and seen[0].use_ema is False and seen[0].lr == 0.01
    assert "--focal-gamma" in CliRunner().invoke(capture, ["--help"]).output


def test_defaults_equal_the_dataclass_defaults() -> None:
    capture, seen = _capture_app()
    assert CliRunner().invoke(capture, []).exit_code == 0
    assert seen[0] == TrainConfig()


def test_minus_one_pixel_labels_means_every_mask() -> None:
    capture, seen = _capture_app()
    assert CliRunner().invoke(capture, ["--pixel-labels", "-1"]).exit_code == 0
    assert seen[0].pixel_labels is None


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_file_then_command_line_overrides(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"base{suffix}"
    values = {"arch": "resnet_mini", "lr": "1e-4", "steps": 7, "batch_size": 4, "pixel_labels": None}
    if suffix == ".json":
        path.write_text(json.dumps(values))
    else:  # YAML reads 1e-4 as a string: the field's type converts it
        path.write_text("arch: resnet_mini\nlr: 1e-4\nsteps: 7\nbatch-size: 4\npixel_labels: null\n")
    capture, seen = _capture_app()
    result = CliRunner().invoke(capture, ["--config", str(path), "--steps", "9", "--name", "x"])
    assert result.exit_code == 0, result.output
    cfg = seen[0]
    assert (cfg.arch, cfg.lr, cfg.steps, cfg.batch_size, cfg.pixel_labels, cfg.name) == (
        "resnet_mini", 1e-4, 9, 4, None, "x"
    )  # fmt: skip


def test_a_run_config_json_is_a_config_file(tmp_path: Path) -> None:
    TrainConfig(arch="resnet_mini", steps=3, world_size=2).save(tmp_path / "config.json")
    capture, seen = _capture_app()
    assert CliRunner().invoke(capture, ["--config", str(tmp_path / "config.json")]).exit_code == 0
    assert seen[0].arch == "resnet_mini" and seen[0].steps == 3


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("{\"learning_rate\": 1}", ".json", "unknown keys"),
        ("steps: many\n", ".yaml", "steps must be int"),
        ("- a\n- b\n", ".yaml", "expected a mapping"),
        ("a: [\n", ".yaml", "not valid YAML"),
        ("{}", ".toml", "give a .json, .yaml or .yml file"),
    ],
)
def test_bad_config_files_are_one_line_errors(tmp_path: Path, text: str, suffix: str, message: str) -> None:
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    capture, _ = _capture_app()
    result = CliRunner().invoke(capture, ["--config", str(path)])
    assert result.exit_code != 0 and message in str(result.exception)
    assert "\n" not in str(result.exception)


def test_deprecated_batch_size_still_works_with_a_notice() -> None:
    capture, seen = _capture_app()
    result = CliRunner().invoke(capture, ["--batch-size", "3"])
    assert result.exit_code == 0, result.output
    assert seen[0].batch_size == 3 and "--batch-size is now --batch" in result.output
    assert CliRunner().invoke(capture, ["--batch", "5"]).exit_code == 0
    assert seen[1].batch_size == 5
    assert "--batch-size" not in CliRunner().invoke(capture, ["--help"]).output


def test_shared_vocabulary_across_commands() -> None:
    """--batch, --device and --classes mean the same in every command that has them."""
    for command in ("train", "eval", "segment", "export"):
        params = _command_params(command)
        opts = {o for p in params.values() for o in p.opts}
        assert "--device" in opts and "--batch" in opts, command
    for command in ("train", "eval"):
        hidden = [p for p in _command_params(command).values() if "--batch-size" in p.opts]
        assert hidden and hidden[0].hidden, command
