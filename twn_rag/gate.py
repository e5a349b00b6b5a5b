"""The gate MLP: pooled query hidden state -> p(thinking helps)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


class GateMLP(nn.Module):
    """Linear layers of sizes ``dims`` (input ... 1) with ``activation`` between them; the
    forward returns the probability (sigmoid of the last layer) with shape ``[batch]``."""

    def __init__(self, dims: Sequence[int], activation: str = "gelu"):
        super().__init__()
        if len(dims) < 2 or dims[-1] != 1:
            raise ValueError(f"gate layer sizes must go from the hidden size down to 1, got {list(dims)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"gate activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.dims = list(dims)
        self.activation_name = activation
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.activation = ACTIVATIONS[activation]()

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(pooled))

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """The pre-sigmoid score ``[batch]`` (what BCE-with-logits training needs)."""
        hidden = pooled.to(self.layers[0].weight.dtype)
        for i, layer in enumerate(self.layers):
            hidden = layer(hidden)
            if i < len(self.layers) - 1:
                hidden = self.activation(hidden)
        return hidden.squeeze(-1)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], activation: str = "gelu") -> GateMLP:
        """Build a gate whose layer sizes are read off the weight shapes of ``state``.

        Any key naming works (``0.weight``, ``net.2.weight``, ``layers.1.weight`` ...): the 2-D
        weights are taken in natural key order, each with its ``.bias`` when present.
        """
        weight_keys = sorted((k for k, v in state.items() if k.endswith("weight") and v.dim() == 2), key=_natural_key)
        if not weight_keys:
            raise ValueError("gate_mlp.pt holds no 2-D weight tensors")
        dims = [state[weight_keys[0]].shape[1]] + [state[k].shape[0] for k in weight_keys]
        gate = cls(dims, activation)
        mapped = {}
        for i, key in enumerate(weight_keys):
            mapped[f"layers.{i}.weight"] = state[key]
            bias_key = key[: -len("weight")] + "bias"
            mapped[f"layers.{i}.bias"] = state.get(bias_key, torch.zeros(state[key].shape[0]))
        gate.load_state_dict(mapped)
        return gate


def _natural_key(key: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]
