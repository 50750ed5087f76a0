"""evaluation/dinov2.py: the official ViT-L/14 layout, features equal to timm's DINOv2 ViT (a
second implementation, random weights since none can be downloaded here), the official
resizing of the position embeddings against cubic convolution written out
(tests/cubic_oracle.py), and the message when the weights are missing."""
import numpy as np
import pytest
import timm
import torch

from cubic_oracle import torch_bicubic
from evaluation import dinov2 as dinov2_lib

SMALL = dict(embed_dim=384, depth=2, num_heads=6)   # ViT-S/14's widths, 2 of its 12 blocks


def official_keys(depth):
  """The state dict names of facebookresearch/dinov2's hub ViT (no registers, unchunked)."""
  block = ['norm1.weight', 'norm1.bias', 'attn.qkv.weight', 'attn.qkv.bias', 'attn.proj.weight',
           'attn.proj.bias', 'ls1.gamma', 'norm2.weight', 'norm2.bias', 'mlp.fc1.weight',
           'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias', 'ls2.gamma']
  return ({'cls_token', 'pos_embed', 'mask_token', 'patch_embed.proj.weight',
           'patch_embed.proj.bias', 'norm.weight', 'norm.bias'}
          | {f'blocks.{i}.{name}' for i in range(depth) for name in block})


def test_vitl14_has_the_official_layout():
  """ViT-L/14, built on the meta device (no memory): the official names; the shapes of timm's
  vit_large_patch14_dinov2 (518 px: 37 x 37 + 1 position embeddings), which lacks only
  mask_token; 304,368,640 numbers, the count of the official hub model's state dict."""
  with torch.device('meta'):
    ours = dinov2_lib.DINOv2(**dinov2_lib.VITL14).state_dict()
    theirs = timm.create_model('vit_large_patch14_dinov2', pretrained=False, num_classes=0).state_dict()
  assert set(ours) == official_keys(24)
  assert set(ours) - set(theirs) == {'mask_token'} and set(theirs) <= set(ours)
  assert all(ours[k].shape == theirs[k].shape for k in theirs)
  assert ours['pos_embed'].shape == (1, 1370, 1024) and ours['mask_token'].shape == (1, 1024)
  assert sum(v.numel() for v in ours.values()) == 304_368_640


def test_features_agree_with_timm(tmp_path, one_thread):
  """timm's DINOv2 ViT-S/14 (2 blocks, random weights moved off their init so that layer scale,
  biases and norms all act), saved in the official layout (timm's plus mask_token, unused at
  inference) and read back by load_dinov2 (strict, weights_only), gives the same class tokens
  of the final norm on random 224 px images. The same float32 operations: 1e-5 (measured 0).
  At 224 px both hold 16 x 16 position embeddings, so none are resized here (see below)."""
  torch.manual_seed(0)
  reference = timm.create_model('vit_small_patch14_dinov2', pretrained=False, num_classes=0,
                                img_size=224, depth=2).eval()
  with torch.no_grad():
    for p in reference.parameters():
      p.add_(0.1 * torch.randn_like(p))
  torch.save({**reference.state_dict(), 'mask_token': torch.randn(1, 384)},
             tmp_path / dinov2_lib.DINOV2_FILE)
  model = dinov2_lib.load_dinov2(str(tmp_path), architecture=dict(SMALL, pretrain_size=224))
  x = torch.randn(3, 3, 224, 224)
  with torch.no_grad():
    want, got = reference(x), model(x)
  assert got.shape == (3, 384) and torch.allclose(got, want, atol=1e-5)


def test_position_embeddings_are_resized_as_the_official_code_does():
  """37 x 37 grid -> 16 x 20 patches: the class token's embedding kept, the grid resampled
  separably with scale factors (16 + 0.1) / 37 and (20 + 0.1) / 37 (the official offset),
  rows first. Float32 against float64: 1e-5. Without the offset the grid moves by far more
  (> 1e-2), so the comparison sees it; the pretraining grid itself is returned unchanged."""
  pos_embed = torch.randn(1, 1 + 37 * 37, 3, generator=torch.Generator().manual_seed(2))
  got = dinov2_lib.interpolate_pos_embed(pos_embed, 16, 20)
  grid = pos_embed[0, 1:].double().numpy().reshape(37, 37, 3)
  rows, cols = torch_bicubic(37, 16, 16.1 / 37), torch_bicubic(37, 20, 20.1 / 37)
  want = np.einsum('ri,ijd,cj->rcd', rows, grid, cols).reshape(16 * 20, 3)
  assert got.shape == (1, 1 + 16 * 20, 3) and torch.equal(got[0, 0], pos_embed[0, 0])
  assert np.allclose(got[0, 1:].numpy(), want, atol=1e-5)
  no_offset = dinov2_lib.interpolate_pos_embed(pos_embed, 16, 20, offset=0.0)
  assert (no_offset - got).abs().max() > 1e-2
  assert dinov2_lib.interpolate_pos_embed(pos_embed, 37, 37) is pos_embed


def test_missing_or_wrong_weights_say_what_to_place_where(tmp_path):
  """No file: one DINOv2Unavailable naming the file, its URL, the directory and the option.
  A file that is not the state dict (not a tensor pickle; other keys): the same advice."""
  with pytest.raises(dinov2_lib.DINOv2Unavailable) as info:
    dinov2_lib.load_dinov2(str(tmp_path))
  message = str(info.value)
  for part in ('FD-DINOv2 skipped', dinov2_lib.DINOV2_FILE, dinov2_lib.DINOV2_URL, str(tmp_path),
               'dinov2_weights_dir'):
    assert part in message
  path = tmp_path / dinov2_lib.DINOV2_FILE
  for content in (torch.nn.Linear(2, 2), {'cls_token': torch.zeros(1, 1, 1024)}):
    torch.save(content, path)
    with pytest.raises(dinov2_lib.DINOv2Unavailable) as info:
      dinov2_lib.load_dinov2(str(tmp_path))
    message = str(info.value)
    assert 'is not the DINOv2 ViT-L/14 state dict' in message and dinov2_lib.DINOV2_URL in message
  assert 'Missing key' in message   # the second file: its keys are named
