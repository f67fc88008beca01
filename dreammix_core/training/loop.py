"""The host-independent LoRA training loop of method.md §4, with checkpoints that resume exactly.

The host (ComfyUI node, diffusers script, test) supplies the trainable parameters and one callable,
`predict(index, noise, timestep) -> (prediction, target)`, which noises example `index`'s latent with
its own noise schedule at its own timestep `timestep`, runs its denoiser and says what the prediction
is trained towards (epsilon, or a flow model's velocity). The loop owns everything else: which
example each micro-step draws (`MixSampler`), the noise and the timestep (uniform over the host's
`num_timesteps`), the mask-weighted loss, gradient accumulation, AdamW, checkpoints and the loss history.

Every micro-step's randomness comes from a generator seeded by (seed, micro-step index) only, and a
checkpoint holds the parameters, the optimizer state and the history, so a run resumed from a
checkpoint takes bit-for-bit the path an uninterrupted run takes on the same device.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.utils.checkpoint
from PIL import Image, ImageDraw
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import DreamMixInputError
from .data import Copy, MixSampler, step_generator
from .loss import INSIDE_WEIGHT, OUTSIDE_WEIGHT, weighted_loss

CHECKPOINT_SUFFIX = ".state"
"""Not a model extension ComfyUI lists, so checkpoints never show up in a LoRA loader."""
_STATE_KEY = "dreammix_training_state"
"""The safetensors metadata entry holding a checkpoint's non-tensor state as JSON."""
_CHECKPOINT_NAME = re.compile(r"^step_(\d+)" + re.escape(CHECKPOINT_SUFFIX) + "$")


@dataclass(frozen=True)
class LoopSettings:
    """The optimisation recipe; defaults are method.md §4's."""

    steps: int = 1000
    """Optimizer steps; each accumulates `grad_accumulation` micro-steps of batch 1."""
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    grad_accumulation: int = 4
    seed: int = 0
    num_timesteps: int = 1000
    inside_weight: float = INSIDE_WEIGHT
    outside_weight: float = OUTSIDE_WEIGHT
    checkpoint_every: int = 100
    """Optimizer steps between checkpoints (0: none on the way); the last step is always kept."""


@dataclass(frozen=True)
class Example:
    """What the loop needs of one training copy: its latent's shape and its latent-resolution loss mask."""

    latent_shape: tuple[int, ...]
    loss_mask: torch.Tensor
    """(1, h, w), 1 inside the (augmented) object mask."""


Predict = Callable[[int, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]
"""(example index, noise, timestep) -> (the model's prediction, its training target)."""


@dataclass
class TrainingResult:
    step: int
    losses: list[float]
    """Mean loss of each optimizer step, from step 1."""
    resumed_from: int
    """The step the run started from (0: fresh)."""


def fingerprint(settings: LoopSettings, **extra: object) -> str:
    """A hash of everything that decides the result, to refuse resuming a different run's checkpoints.

    The checkpoint interval is left out: changing it does not change the trajectory.
    """
    payload = {k: v for k, v in asdict(settings).items() if k != "checkpoint_every"} | extra
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tensor_digest(*groups: Iterable[torch.Tensor]) -> str:
    """A hash of tensors' shapes and values, for `fingerprint`'s training data and for caching encodes by content."""
    digest = hashlib.sha256()
    for group in groups:
        for tensor in group:
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def run_fingerprint(
    settings: LoopSettings,
    copies: Sequence[Copy],
    prompts: Sequence[str],
    side: int,
    *,
    rank: int,
    alpha: float,
    targets: str,
    copy_counts: tuple[int, int],
    regular_probability: float,
) -> str:
    """The identity of a subject-LoRA run, whichever host trains it: the loop settings, the LoRA, the training
    copies' content and the prompts (`fingerprint` of all of them)."""
    return fingerprint(
        settings,
        rank=rank,
        alpha=alpha,
        targets=targets,
        side=side,
        copies=copy_counts,
        regular_probability=regular_probability,
        prompts=list(prompts),
        data=tensor_digest([c.image for c in copies], [c.mask for c in copies]),
    )


def checkpoint_path(folder: str, step: int) -> str:
    return os.path.join(folder, f"step_{step:06d}{CHECKPOINT_SUFFIX}")


def latest_checkpoint(folder: str) -> str | None:
    if not os.path.isdir(folder):
        return None
    steps = [int(m.group(1)) for name in os.listdir(folder) if (m := _CHECKPOINT_NAME.match(name))]
    return checkpoint_path(folder, max(steps)) if steps else None


def save_checkpoint(folder: str, state: dict) -> str:
    """Write `state` (step, losses, run_id, params, optimizer) as safetensors plus JSON metadata.

    No pickle: tensors go into the safetensors body, everything else into its metadata. Written
    atomically (temp file + rename), so an interrupted write never leaves a broken latest checkpoint.
    """
    os.makedirs(folder, exist_ok=True)
    path = checkpoint_path(folder, state["step"])
    tensors = {f"params/{name}": value.contiguous() for name, value in state["params"].items()}
    scalars = {}
    for index, entry in state["optimizer"]["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars[f"{index}/{key}"] = value
    header = {
        "step": state["step"],
        "losses": state["losses"],
        "run_id": state["run_id"],
        "param_groups": state["optimizer"]["param_groups"],
        "optimizer_scalars": scalars,
    }
    save_file(tensors, path + ".tmp", metadata={_STATE_KEY: json.dumps(header)})
    os.replace(path + ".tmp", path)
    return path


def load_checkpoint(path: str) -> dict:
    """The `state` given to `save_checkpoint`; DreamMixInputError for a file it did not write."""
    try:
        with safe_open(path, framework="pt") as handle:
            header = json.loads((handle.metadata() or {})[_STATE_KEY])
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, KeyError, json.JSONDecodeError, OSError) as error:
        raise DreamMixInputError(
            f"{path} is not a training checkpoint this version can read (an older version's, or damaged): "
            "delete its folder to start the run over, or train under another LoRA name."
        ) from error
    optimizer_state: dict[int, dict] = {}
    for key, value in tensors.items():
        kind, _, rest = key.partition("/")
        if kind == "optimizer":
            index, _, name = rest.partition("/")
            optimizer_state.setdefault(int(index), {})[name] = value
    for key, value in header["optimizer_scalars"].items():
        index, _, name = key.partition("/")
        optimizer_state.setdefault(int(index), {})[name] = value
    params = {key.partition("/")[2]: value for key, value in tensors.items() if key.startswith("params/")}
    optimizer = {"state": optimizer_state, "param_groups": header["param_groups"]}
    return {
        "step": header["step"],
        "losses": header["losses"],
        "run_id": header["run_id"],
        "params": params,
        "optimizer": optimizer,
    }


def train(
    params: dict[str, torch.nn.Parameter],
    examples: list[Example],
    sampler: MixSampler,
    predict: Predict,
    settings: LoopSettings,
    run_id: str = "",
    checkpoint_folder: str | None = None,
    check_interrupt: Callable[[], None] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainingResult:
    """Optimise `params` in place; resume from the latest checkpoint in `checkpoint_folder` if it has one.

    `run_id` (see `fingerprint`) must match the checkpoint's, else DreamMixInputError: a folder never mixes runs.
    `check_interrupt` is called before every micro-step and may raise to stop; nothing is lost but the
    steps since the last checkpoint.
    """
    optimizer = torch.optim.AdamW(list(params.values()), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    step, losses = 0, []
    latest = latest_checkpoint(checkpoint_folder) if checkpoint_folder else None
    if latest:
        state = load_checkpoint(latest)
        if state.get("run_id") != run_id:
            raise DreamMixInputError(
                f"{checkpoint_folder} holds checkpoints of a different training run (other images, prompts or "
                "settings): use another LoRA name, or delete that folder to start over."
            )
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(state["params"][name])
        optimizer.load_state_dict(state["optimizer"])
        step, losses = state["step"], list(state["losses"])
    resumed_from = saved = step

    def checkpoint() -> None:
        nonlocal saved
        params_cpu = {name: p.detach().to("cpu", copy=True) for name, p in params.items()}
        state = {"step": step, "losses": losses, "params": params_cpu, "optimizer": optimizer.state_dict()}
        save_checkpoint(checkpoint_folder, state | {"run_id": run_id})
        saved = step

    optimizer.zero_grad(set_to_none=True)
    while step < settings.steps:
        total = 0.0
        for micro in range(settings.grad_accumulation):
            if check_interrupt:
                check_interrupt()
            generator = step_generator(settings.seed, step * settings.grad_accumulation + micro)
            index = sampler.draw(generator)
            example = examples[index]
            noise = torch.randn((1, *example.latent_shape), generator=generator)
            timestep = int(torch.randint(settings.num_timesteps, (), generator=generator))
            prediction, target = predict(index, noise, timestep)
            mask = example.loss_mask[None].to(prediction.device)
            loss = weighted_loss(prediction, target, mask, settings.inside_weight, settings.outside_weight)
            (loss / settings.grad_accumulation).backward()
            total += float(loss.detach())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        losses.append(total / settings.grad_accumulation)
        if on_step:
            on_step(step, settings.steps, losses[-1])
        if checkpoint_folder and settings.checkpoint_every and step % settings.checkpoint_every == 0:
            checkpoint()
    if checkpoint_folder and step > saved:
        checkpoint()  # the finished state, so a failure to save the result loses nothing
    return TrainingResult(step, losses, resumed_from)


@contextlib.contextmanager
def training_blocks(modules: Iterable[torch.nn.Module], recompute: bool = False) -> Iterator[None]:
    """Runs each transformer block so that its backward pass is right and, with `recompute`, light on memory
    (activations recomputed in the backward pass: much less memory, ~30% more time).

    ComfyUI's FLUX blocks add into their input in place (`x += ...`) after a norm saved that input for the
    backward pass: autograd refuses that, and torch's non-reentrant checkpoint would silently differentiate the
    changed values. So a block's saved tensors that share storage with its inputs are copied as they are saved
    (`_protected`), and recomputation is torch's reentrant checkpoint, which runs the forward without autograd
    on copies of the inputs and reruns it, protected, in the backward pass (`_recomputed`).

    Sets an instance-level `forward` on each module for the duration and removes it after, so the
    class and any other user of the module are untouched once the block exits.
    """
    patched = []
    run = _recomputed if recompute else _protected
    try:
        for module in modules:
            if "forward" in vars(module):
                continue

            def forward(*args, _original=module.forward, **kwargs):
                if not torch.is_grad_enabled():
                    return _original(*args, **kwargs)
                return run(_original, *args, **kwargs)

            module.forward = forward
            patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward


def _protected(forward: Callable, *args, **kwargs):
    """`forward` with every tensor it saves for backward that shares storage with its inputs copied when saved."""
    inputs = {tensor.untyped_storage().data_ptr() for tensor in (*args, *kwargs.values()) if torch.is_tensor(tensor)}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.clone() if tensor.untyped_storage().data_ptr() in inputs else tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        return forward(*args, **kwargs)


def _recomputed(forward: Callable, *args, **kwargs):
    """`forward` under torch's reentrant checkpoint, which takes positional arguments only and gives gradients only
    when an input requires one: a first block's input (from frozen layers) is made to, so its LoRA layers train."""
    names = list(kwargs)
    flat = [*args, *(kwargs[name] for name in names)]
    tensors = [i for i, value in enumerate(flat) if torch.is_tensor(value)]
    if tensors and not any(flat[i].requires_grad for i in tensors):
        flat[tensors[0]] = flat[tensors[0]].detach().requires_grad_()

    def run(*flat):
        flat = [value.clone() if torch.is_tensor(value) else value for value in flat]
        return _protected(forward, *flat[: len(args)], **dict(zip(names, flat[len(args) :])))

    return torch.utils.checkpoint.checkpoint(run, *flat, use_reentrant=True)


TRANSFORMER_BLOCKS = {
    "BasicTransformerBlock",
    "DoubleStreamBlock",
    "SingleStreamBlock",
    "QwenImageTransformerBlock",
    "JointTransformerBlock",
}
"""The class names of a UNet's transformer blocks (ComfyUI and diffusers alike) and of the FLUX, Qwen-Image and
Z-Image DiTs' (ComfyUI's; Z-Image's refiners are blocks of the same class)."""


def transformer_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The denoiser's transformer blocks, what `training_blocks` runs."""
    return [module for module in model.modules() if type(module).__name__ in TRANSFORMER_BLOCKS]


def moving_average(values: list[float], smooth: int = 20) -> list[float]:
    """Trailing mean over min(`smooth`, a fifth of the run) values, shorter at the start: the curve's dark line."""
    window = max(1, min(smooth, len(values) // 5 or 1))
    return [sum(values[max(0, i - window + 1) : i + 1]) / (i + 1 - max(0, i - window + 1)) for i in range(len(values))]


def loss_curve_image(losses: list[float], width: int = 512, height: int = 256, smooth: int = 20) -> Image.Image:
    """The per-step loss (light) and its moving average (dark) on a white canvas, with min/max labels."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    if not losses:
        draw.text((10, height // 2), "no steps trained", fill="black")
        return image
    margin = 20
    low, high = min(losses), max(losses)
    span = (high - low) or 1.0

    def point(i: int, value: float) -> tuple[float, float]:
        x = margin + (width - 2 * margin) * (i / max(len(losses) - 1, 1))
        return x, height - margin - (height - 2 * margin) * (value - low) / span

    averaged = moving_average(losses, smooth)
    for values, colour in ((losses, (160, 190, 240)), (averaged, (20, 60, 160))):
        points = [point(i, v) for i, v in enumerate(values)]
        if len(points) == 1:
            draw.ellipse([points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2], fill=colour)
        else:
            draw.line(points, fill=colour, width=2)
    draw.text((4, 2), f"max {high:.4f}", fill="black")
    draw.text((4, height - 14), f"min {low:.4f}   steps {len(losses)}   last {averaged[-1]:.4f}", fill="black")
    return image
