import pytest
import torch

from twn_rag.gate import GateMLP


@pytest.mark.parametrize("prefix", ["", "net.", "mlp.layers."])
def test_layer_sizes_are_inferred_from_any_key_naming(prefix):
    torch.manual_seed(0)
    reference = torch.nn.Sequential(
        torch.nn.Linear(64, 32),
        torch.nn.GELU(),
        torch.nn.Linear(32, 8),
        torch.nn.GELU(),
        torch.nn.Linear(8, 1),
    )
    state = {prefix + k: v for k, v in reference.state_dict().items()}
    gate = GateMLP.from_state_dict(state)
    assert gate.dims == [64, 32, 8, 1]
    x = torch.randn(5, 64)
    assert torch.allclose(gate(x), torch.sigmoid(reference(x).squeeze(-1)), atol=1e-6)


def test_layers_ordered_numerically_not_lexically():
    sizes = [16, 12, 10, 8, 6, 5, 4, 3, 2, 2, 2, 1]  # 11 layers: "10" must come after "9"
    state = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layer = torch.nn.Linear(a, b)
        state[f"{i * 2}.weight"], state[f"{i * 2}.bias"] = layer.weight, layer.bias
    assert GateMLP.from_state_dict(state).dims == sizes


def test_round_trip_through_its_own_state_dict():
    gate = GateMLP([8, 4, 1], "relu")
    again = GateMLP.from_state_dict(gate.state_dict(), "relu")
    x = torch.randn(3, 8)
    assert torch.equal(gate(x), again(x))


def test_bad_state_dicts_are_refused():
    with pytest.raises(ValueError, match="no 2-D weight"):
        GateMLP.from_state_dict({"bias": torch.zeros(3)})
    with pytest.raises(ValueError, match="down to 1"):
        GateMLP.from_state_dict({"0.weight": torch.zeros(3, 8)})
