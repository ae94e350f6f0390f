"""Unstructured L1 magnitude pruning, as in the paper (section III-C): pure functions.

Model in, report out, built on `torch.nn.utils.prune` (masks as forward pre-hooks):

    from uda_seg_core.pruning import prune_global, remove_masks, sparsity_report
    prune_global(model, 0.4)           # 40 % of all conv/linear weights, smallest |w| first
    remove_masks(model)                # make the zeros permanent, drop the hooks
    print(sparsity_report(model)["sparsity"])
    prune_permanently(model, 0.3)      # both at once: the paper's post-training pruning

Two granularities: `prune_modules` prunes every layer of the given modules to the same
fraction (the paper's "PTP on modules"), `prune_global` ranks all their weights together
(the paper's "global" pruning, used both after training and on the discriminator during
training). `prune_discriminator` is the per-epoch hook of the adapt loop (fixed 0.2, or
incremental 0.005 x epoch).

What is prunable: the `weight` of every convolution and linear layer (never biases or
norms). For tensorly-torch factorised layers (TFD's Tucker convolutions) the dense kernel
is never materialised, so the pruned tensors are the factorisation's own parameters: the
Tucker core (or CP weights) and every factor matrix. Their sparsity is that of the
factors, not of the reconstructed kernel, which stays dense.

Pruning keeps parameter identity: `weight` is re-registered as `weight_orig` (the same
Parameter object) and making a mask permanent writes the zeros into that object, so an
optimiser built before pruning keeps its parameters and state (Adam moments) throughout.

Unstructured zeros do not make dense kernels faster; see
benchmarks/unstructured_pruning_speed.py for the measurement.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

PRUNE_MODES = ("none", "fixed", "incremental")  # adapt.prune (config.PruneMode)
MAX_SPARSITY = 0.99  # incremental schedules never prune a layer away entirely

# Layers whose `weight` is pruned.
DENSE_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                nn.ConvTranspose3d, nn.Linear)

Target = tuple[nn.Module, str]  # (module that owns the tensor, attribute name)


def _factorized_tensor_type() -> type | None:
    try:
        from tltorch.factorized_tensors.core import FactorizedTensor  # optional (TFD/CPD)
    except ImportError:  # tensorly-torch absent: no factorised layers to find
        return None
    return FactorizedTensor


def _as_module_list(modules: nn.Module | Iterable[nn.Module]) -> list[nn.Module]:
    if isinstance(modules, nn.Module):
        return [modules]
    out = list(modules)
    for m in out:
        if not isinstance(m, nn.Module):
            raise TypeError(f"expected nn.Module objects to prune, got {type(m).__name__}")
    return out


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def _has_tensor(module: nn.Module, name: str) -> bool:
    return name in module._parameters or f"{name}_orig" in module._parameters


def _refresh_factor_masks(tensor: nn.Module, _inputs: Any) -> None:
    """Forward pre-hook on a factorised tensor: re-apply the masks of its factor list.

    A factorised convolution calls its tensor module (firing this hook) but never calls
    the tensor's FactorList, so the list's own pruning hooks would never run.
    """
    factors = tensor.factors
    for hook in factors._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod):
            hook(factors, None)


def _factorized_targets(tensor: nn.Module) -> list[Target]:
    targets = [(tensor, name) for name in _param_names(tensor)]
    factors = getattr(tensor, "factors", None)
    if isinstance(factors, nn.Module):
        targets += [(factors, name) for name in _param_names(factors)]
    return targets


def _param_names(module: nn.Module) -> list[str]:
    """Own tensors of `module` (not of its children), by their unpruned name."""
    names = []
    for key, value in module._parameters.items():
        if value is None:
            continue
        names.append(key.removesuffix("_orig"))
    return names


def prunable_parameters(modules: nn.Module | Iterable[nn.Module]) -> list[Target]:
    """(module, tensor name) pairs to prune in `modules`: conv/linear weights and the
    parameters of tensorly-torch factorised tensors. Each tensor appears once, even when
    the given modules nest."""
    factorized = _factorized_tensor_type()
    seen: set[tuple[int, str]] = set()
    targets: list[Target] = []
    for root in _as_module_list(modules):
        for module in _unwrap(root).modules():
            if isinstance(module, DENSE_LAYERS) and _has_tensor(module, "weight"):
                found = [(module, "weight")]
            elif factorized is not None and isinstance(module, factorized):
                found = _factorized_targets(module)
            else:
                continue
            for owner, name in found:
                if (id(owner), name) not in seen:
                    seen.add((id(owner), name))
                    targets.append((owner, name))
    return targets


def _check_amount(amount: float) -> float:
    if not 0.0 <= float(amount) <= 1.0:
        raise ValueError(f"pruning amount must be a fraction in [0, 1], got {amount}")
    return float(amount)


def _install_factor_hooks(targets: list[Target]) -> None:
    for owner, _ in targets:
        for parent in owner.__dict__.get("_uda_seg_factor_owners", ()):
            if _refresh_factor_masks not in parent._forward_pre_hooks.values():
                parent.register_forward_pre_hook(_refresh_factor_masks)


def _remember_factor_owners(modules: list[nn.Module]) -> None:
    """Tag each FactorList with the factorised tensor(s) that own it, for the hooks."""
    factorized = _factorized_tensor_type()
    if factorized is None:
        return
    for root in modules:
        for module in _unwrap(root).modules():
            factors = getattr(module, "factors", None) if isinstance(module, factorized) else None
            if isinstance(factors, nn.Module):
                owners = factors.__dict__.setdefault("_uda_seg_factor_owners", [])
                if not any(o is module for o in owners):
                    owners.append(module)


def l1_mask(scores: torch.Tensor, amount: float) -> torch.Tensor:
    """Mask (1 keep, 0 prune) zeroing the round(amount x n) smallest |scores|; ties at the
    threshold are pruned in index order, so exactly that many entries go.

    The same selection as torch's L1Unstructured, found with a k-th value instead of a
    top-k, which is several times faster on the tens of millions of weights of a
    global pruning of BiSeNet.
    """
    flat = scores.detach().abs().flatten()
    k = round(amount * flat.numel())
    mask = torch.ones_like(flat)
    if k == 0:
        return mask.view_as(scores)
    if k >= flat.numel():
        return torch.zeros_like(scores)
    threshold = flat.kthvalue(k).values
    below = flat < threshold
    mask[below] = 0
    ties = (flat == threshold).nonzero().flatten()[: k - int(below.sum())]
    mask[ties] = 0
    return mask.view_as(scores)


def _apply_masks(targets: list[Target], masks: list[torch.Tensor]) -> None:
    for (module, name), mask in zip(targets, masks):
        prune.custom_from_mask(module, name, mask=mask)
    _install_factor_hooks(targets)


def prune_modules(modules: nn.Module | Iterable[nn.Module], amount: float) -> dict:
    """L1-prune each prunable tensor in `modules` to `amount` on its own (per layer).

    Masks stay attached (forward pre-hooks); call `remove_masks` to make them permanent.
    Returns the sparsity report of the pruned tensors.
    """
    amount = _check_amount(amount)
    modules = _as_module_list(modules)
    targets = prunable_parameters(modules)
    _remember_factor_owners(modules)
    _apply_masks(targets, [l1_mask(effective_tensor(m, n), amount) for m, n in targets])
    return sparsity_report(modules)


def prune_global(modules: nn.Module | Iterable[nn.Module], amount: float) -> dict:
    """L1-prune `amount` of all prunable weights in `modules` ranked together: the
    globally smallest magnitudes go first, so layers end with different sparsities.

    Masks stay attached; call `remove_masks` to make them permanent.
    """
    amount = _check_amount(amount)
    modules = _as_module_list(modules)
    targets = prunable_parameters(modules)
    if not targets:
        raise ValueError("nothing to prune: no convolution, linear or factorised layer found")
    _remember_factor_owners(modules)
    tensors = [effective_tensor(m, n) for m, n in targets]
    mask = l1_mask(torch.cat([t.flatten() for t in tensors]), amount)
    parts = mask.split([t.numel() for t in tensors])
    _apply_masks(targets, [part.view_as(t) for part, t in zip(parts, tensors)])
    return sparsity_report(modules)


def remove_masks(model: nn.Module | Iterable[nn.Module]) -> int:
    """Make every pruning mask in `model` permanent (zeros written into the parameter,
    same Parameter object) and drop the hooks; returns how many masks were removed."""
    removed = 0
    for root in _as_module_list(model):
        for module in _unwrap(root).modules():
            for key, hook in list(module._forward_pre_hooks.items()):
                if isinstance(hook, prune.BasePruningMethod):
                    hook.remove(module)
                    del module._forward_pre_hooks[key]
                    removed += 1
                elif hook is _refresh_factor_masks:
                    del module._forward_pre_hooks[key]
    return removed


def prune_permanently(model: nn.Module, amount: float) -> dict:
    """Global L1 pruning of `amount` of the weights with the zeros made permanent (no masks
    left): the paper's post-training pruning of a model that is then saved, served or
    measured. Returns the sparsity report."""
    prune_global(model, amount)
    remove_masks(model)
    return sparsity_report(model)


def is_pruned(model: nn.Module) -> bool:
    """True while any pruning mask (forward pre-hook) is attached."""
    return prune.is_pruned(_unwrap(model))


def effective_tensor(module: nn.Module, name: str) -> torch.Tensor:
    """The tensor the forward pass uses: orig x mask while a mask is attached."""
    mask = module._buffers.get(f"{name}_mask")
    if mask is not None:
        return module._parameters[f"{name}_orig"].detach() * mask
    return getattr(module, name).detach()


def _names_in(roots: list[nn.Module], root: nn.Module | None) -> dict[int, str]:
    names: dict[int, str] = {}
    if root is not None:
        names.update({id(m): n for n, m in _unwrap(root).named_modules()})
    for i, r in enumerate(roots):
        prefix = "" if len(roots) == 1 and root is None else f"{i}."
        for n, m in _unwrap(r).named_modules():
            names.setdefault(id(m), (prefix + n).rstrip("."))
    return names


def sparsity_report(modules: nn.Module | Iterable[nn.Module],
                    root: nn.Module | None = None) -> dict:
    """Fraction of exactly-zero entries per prunable tensor and in total.

    `root` names layers by their path in it (e.g. the whole model when reporting one
    module group). Returns {"layers": {name: {shape, numel, zeros, sparsity}},
    "numel", "zeros", "sparsity"}.
    """
    roots = _as_module_list(modules)
    names = _names_in(roots, root)
    layers: dict[str, dict] = {}
    total = zeros = 0
    for module, name in prunable_parameters(roots):
        tensor = effective_tensor(module, name)
        n, z = tensor.numel(), int((tensor == 0).sum())
        key = f"{names.get(id(module), type(module).__name__)}.{name}".lstrip(".")
        layers[key] = {"shape": list(tensor.shape), "numel": n, "zeros": z,
                       "sparsity": z / n if n else 0.0}
        total += n
        zeros += z
    return {"layers": layers, "numel": total, "zeros": zeros,
            "sparsity": zeros / total if total else 0.0}


def target_sparsity(epoch: int, adapt_cfg: Any) -> float:
    """The discriminator's global sparsity for `epoch` under the adapt config: fixed
    `prune_amount`, or `prune_rate * epoch` (incremental, capped at 0.99), or 0."""
    mode = adapt_cfg.prune
    if mode not in PRUNE_MODES:
        raise ValueError(f"adapt.prune must be one of {', '.join(PRUNE_MODES)}, got '{mode}'")
    if mode == "fixed":
        return _check_amount(adapt_cfg.prune_amount)
    if mode == "incremental":
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0 for incremental pruning, got {epoch}")
        return min(MAX_SPARSITY, float(adapt_cfg.prune_rate) * epoch)
    return 0.0


def prune_discriminator(discriminator: nn.Module, epoch: int, adapt_cfg: Any) -> dict:
    """During-training pruning of D, called by the adapt loop at each epoch boundary.

    `epoch` is the number of the epoch about to start, counting from 1 (incremental:
    sparsity 0.005 x epoch). Prunes all of D's weights globally by L1 to the schedule's
    target. With `adapt_cfg.prune_keep_masks` False (the paper's behaviour) the mask is
    made permanent at once, so the zeroed weights can regrow during the epoch; with True
    the mask stays attached (zeros stay zero) and each call re-prunes to the cumulative
    target: the old zeros have the smallest magnitude, so they stay pruned.

    Parameter objects never change, so the optimiser and its state carry over. Returns
    the sparsity report plus epoch, target, mode and keep_masks.
    """
    target = target_sparsity(epoch, adapt_cfg)
    keep = bool(adapt_cfg.prune_keep_masks)
    d = _unwrap(discriminator)
    if adapt_cfg.prune != "none":
        remove_masks(d)  # writes any kept mask into the weights first: old zeros stay zero
        if target > 0:
            prune_global(d, target)
            if not keep:
                remove_masks(d)
    report = sparsity_report(d)
    report.update(epoch=epoch, target=target, mode=adapt_cfg.prune, keep_masks=keep)
    return report


def dense_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """`model.state_dict()` with kept masks folded in: `weight` = orig x mask, and no
    `_orig` / `_mask` keys, so it loads into a freshly built, unpruned model.

    With keep_masks, a resume from this state re-creates the masks at the next epoch
    boundary (the zeros are in the weights, so the same weights are pruned again).
    """
    state = _unwrap(model).state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("_mask") and key[: -len("_mask")] + "_orig" in state:
            continue
        if key.endswith("_orig") and key[: -len("_orig")] + "_mask" in state:
            base = key[: -len("_orig")]
            out[base] = value * state[base + "_mask"]
        else:
            out[key] = value
    return out
