"""Checkpoints round-trip with their card; bad files give one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from twdeploy.errors import TwdeployError
from twdeploy.model.card import ModelCard
from twdeploy.model.folding import fold_batchnorm
from twdeploy.model.io import load_model, save_checkpoint


def card() -> ModelCard:
    return ModelCard("resnet_mini", ("background", "a", "b"), image_size=(64, 64))


def test_checkpoint_round_trip_through_run_folder(tmp_path: Path) -> None:
    model = card().build().eval()
    save_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", model, card(), training={"step": 3})
    loaded, loaded_card = load_model(tmp_path / "run", fold_bn=False)
    folded, _ = load_model(tmp_path / "run")
    assert loaded_card == card()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[1], model(x)[1])
        torch.testing.assert_close(folded(x)[1], fold_batchnorm(model)(x)[1])
    assert not list((tmp_path / "run" / "checkpoints").glob(".*"))


def test_card_json_round_trip_and_selection() -> None:
    topk = card().with_selection(topk=1)
    assert ModelCard.from_json(topk.to_json()) == topk
    assert topk.selection == "topk" and topk.build().output_names[-1] == "class_ids"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.mkdir(), p)[1], "has no checkpoints"),
        (lambda p: (p.write_bytes(b"garbage"), p)[1], "not a readable checkpoint"),
        (lambda p: (torch.save({"x": 1}, p), p)[1], "not a twdeploy checkpoint"),
    ],
)
def test_bad_inputs_give_one_line_errors(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(TwdeployError, match=message) as info:
        load_model(make(tmp_path / "thing"))
    assert "\n" not in str(info.value)


def test_weights_of_another_architecture(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "m.pt", card().build(), card())
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["card"]["arch"] = "vgg_mini"
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(TwdeployError, match=r"card says vgg_mini .* holds weights of resnet_mini"):
        load_model(tmp_path / "m.pt")
