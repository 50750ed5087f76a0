"""The toy-data MLP: shapes, a parameter count from its description, and behaviour."""
import torch

from configs.default import get_default_config
from models import get_model
from models.mlp import MLP


def test_mlp_maps_points_to_points_with_the_described_parameter_count():
  """The parameter count of the described network, counted by hand from its layer sizes
  (weights + biases of each dense layer, h = hidden):
    time embedding, 2 dense h -> h      2 (h^2 + h)
    input 2 -> h                        2h + h
    each block: fc1, temb_proj, fc2     3 (h^2 + h)
    output h -> 2                       2h + 2
  h = 64, 3 blocks: 8,320 + 192 + 37,440 + 130 = 46,082; h = 32, 1 block: 2,112 + 96 + 3,168
  + 66 = 5,442."""
  for hidden, num_layers, count in [(64, 3, 46_082), (32, 1, 5_442)]:
    config = get_default_config()
    config.model.update(name='mlp', hidden=hidden, num_layers=num_layers)
    model = get_model(config)
    assert isinstance(model, MLP)
    assert sum(p.numel() for p in model.parameters()) == count, (hidden, num_layers)
  out = model(torch.randn(5, 2), torch.rand(5) * 999)
  assert out.shape == (5, 2) and out.dtype == torch.float32


def test_mlp_depends_on_labels_and_not_on_other_samples():
  torch.manual_seed(0)
  model = MLP(hidden=32, num_layers=2)
  x = torch.randn(7, 2)
  labels = torch.linspace(0, 999, 7)
  with torch.no_grad():
    out = model(x, labels)
    shifted = model(x, labels + 50.0)
    one_by_one = torch.cat([model(x[i:i + 1], labels[i:i + 1]) for i in range(7)])
  # A shift of 50 steps moves every output by a visible amount compared with fp32 noise.
  assert ((out - shifted).norm(dim=1) > 1e-3 * out.norm(dim=1)).all()
  assert torch.allclose(out, one_by_one, atol=1e-6)   # fp32, rows computed independently


def test_mlp_trains_every_parameter():
  model = MLP(hidden=16, num_layers=2)
  model(torch.randn(4, 2), torch.rand(4) * 999).square().mean().backward()
  assert all(p.grad is not None and p.grad.abs().max() > 0 for p in model.parameters())
