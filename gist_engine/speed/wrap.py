"""What every speed wrapper shares: the original module as `base_layer`, an `enabled` switch, in-place replacement."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import nn


class SpeedWrapper(nn.Module):
    """A module that computes what its `base_layer` computes, with the same parameters, faster.

    A wrapper owns no parameters of its own: the model's parameters are the same objects before and after
    `speed.install`, and `plain_named_parameters` names them as they were. With `enabled` off (see
    `speed.disabled`) a wrapper runs `base_layer` itself: the plain model's code.
    """

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.enabled = True


def replace_modules(root: nn.Module, make: Callable[[nn.Module, str, nn.Module], nn.Module | None]) -> int:
    """Replace submodules of `root` in place: `make(parent, name, child)` returns a new module for `child`, or None
    to keep it. A module shared by several parents is replaced by one shared new module. Returns how many modules
    were replaced (each shared one once). The new modules' own children are not visited.
    """
    made: dict[int, nn.Module | None] = {}
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if id(child) not in made:
                made[id(child)] = make(parent, name, child)
            new = made[id(child)]
            if new is not None:
                setattr(parent, name, new)
    return sum(new is not None for new in made.values())


def plain_named_parameters(module: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """`module.named_parameters()` with every speed wrapper left out of the names: each parameter named as in the
    model before `speed.install` (checkpoints and optimizer groups use these names), in the same order."""
    seen_modules: set[int] = set()
    seen_params: set[int] = set()

    def walk(mod: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Parameter]]:
        mod = unwrap_speed(mod)
        if id(mod) in seen_modules:
            return
        seen_modules.add(id(mod))
        for name, param in mod.named_parameters(recurse=False):
            if id(param) not in seen_params:
                seen_params.add(id(param))
                yield prefix + name, param
        for name, child in mod.named_children():
            yield from walk(child, f"{prefix}{name}.")

    yield from walk(module, "")


def unwrap_speed(module: nn.Module) -> nn.Module:
    """The module a (possibly nested) speed wrapper stands for."""
    while isinstance(module, SpeedWrapper):
        module = module.base_layer
    return module


__all__ = ["SpeedWrapper", "plain_named_parameters", "replace_modules", "unwrap_speed"]
