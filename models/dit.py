"""DiT, the Diffusion Transformer of Peebles & Xie 2023 (their facebookresearch/DiT `models.py`).

The image (or latent) is cut into p x p patches, each a token (patchify); a fixed 2-D sin-cos
position embedding is added; `depth` transformer blocks follow, each conditioned through
adaLN-Zero: the conditioning c = e(t) + e(y) (time features through an MLP, plus a class
embedding whose extra row is the null class of classifier-free guidance) regresses, per block,
the shift, scale and gate of both sub-layers,
    x <- x + gate_msa * Attn(LN(x) (1 + scale_msa) + shift_msa)
    x <- x + gate_mlp * MLP(LN(x) (1 + scale_mlp) + shift_mlp),
with the regressing layer initialised to zero, so every block is the identity at initialisation
(their sec. 3.2). A final adaLN layer and a zero-initialised linear map give each token its
p * p * C_out outputs, which unpatchify puts back as an image.

The paper's sizes (Table 1) are `DIT_CONFIGS` ('DiT-S/2' ... 'DiT-XL/8'); `dit(name)` builds one
at the paper's latent input (32 x 32 x 4, 1000 classes, learned variance), e.g. DiT-XL/2 with
674,834,720 trainable parameters (the paper's 675M; the official code counts its frozen
position-embedding Parameter too: 675,129,632).

Training in this project: the class dropout of DiT (`class_dropout_prob`, 0.1 in the paper) is
`config.model.label_dropout` (training/losses.py replaces a label by the null class K with that
probability); the network itself never drops labels. DiT's learned variance ("learn_sigma":
output 2C channels, eps then Nichol & Dhariwal's v) is `config.model.learn_variance`, trained on
the DDPM chain with L_hybrid (training.loss='ddpm', training.continuous=False): their diffusion is
our DDPM chain.
"""
import torch
from torch import nn

from models.layers import add_class_embedding, check_labels, class_embedding
from models.transformer_layers import (Attention, Mlp, PatchEmbed, check_grid,
                                       sincos_2d_position_embedding, timestep_embedding,
                                       unpatchify)
from utils.errors import ConfigError

# Table 1 of Peebles & Xie: depth, hidden size, heads per model size, at patch sizes 2, 4, 8.
DIT_SIZES = {'S': dict(depth=12, hidden_size=384, num_heads=6),
             'B': dict(depth=12, hidden_size=768, num_heads=12),
             'L': dict(depth=24, hidden_size=1024, num_heads=16),
             'XL': dict(depth=28, hidden_size=1152, num_heads=16)}
DIT_CONFIGS = {f'DiT-{size}/{p}': dict(sizes, patch_size=p)
               for size, sizes in DIT_SIZES.items() for p in (2, 4, 8)}
# The paper's ImageNet 256 x 256 models see the Stable Diffusion VAE's 32 x 32 x 4 latents.
LATENT_INPUT = dict(input_size=32, in_channels=4, num_classes=1000)

# 'paper': Peebles & Xie's code. 'diffusers': what diffusers' DiTTransformer2DModel computes from
# the same weights (its port of the paper's checkpoints): timestep frequencies
# 10000^(-i / (half - 1)) instead of 10000^(-i / half), and eps 1e-5 instead of 1e-6 in the
# LayerNorm before each MLP (its default norm_eps).
CONVENTIONS = {'paper': dict(freq_shift=0, mlp_norm_eps=1e-6),
               'diffusers': dict(freq_shift=1, mlp_norm_eps=1e-5)}


def dit(name, learn_sigma=True, **kwargs):
  """The paper's DiT `name` ('DiT-XL/2', ...) at the latent input, with out_channels 2C when
  learn_sigma (as all of the paper's models); kwargs override."""
  if name not in DIT_CONFIGS:
    raise ConfigError(f"unknown DiT {name!r}; choose one of {sorted(DIT_CONFIGS)}")
  args = {**LATENT_INPUT, **DIT_CONFIGS[name], **kwargs}
  args.setdefault('out_channels', 2 * args['in_channels'] if learn_sigma else None)
  return DiT(**args)


def modulate(x, shift, scale):
  """x (1 + scale) + shift, per sample: adaLN's affine map after a LayerNorm without its own."""
  return x * (1 + scale[:, None]) + shift[:, None]


class TimestepEmbedder(nn.Module):
  """e(t) = Linear(SiLU(Linear(timestep features of dimension 256)))."""

  def __init__(self, hidden_size, frequency_embedding_size=256, freq_shift=0):
    super().__init__()
    self.frequency_embedding_size = frequency_embedding_size
    self.freq_shift = freq_shift
    self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(),
                             nn.Linear(hidden_size, hidden_size))

  def forward(self, labels):
    return self.mlp(timestep_embedding(labels, self.frequency_embedding_size,
                                       freq_shift=self.freq_shift))


class DiTBlock(nn.Module):
  """A transformer block with adaLN-Zero conditioning (the module docstring's two lines)."""

  def __init__(self, hidden_size, num_heads, mlp_ratio=4.0, qkv_bias=True, mlp_norm_eps=1e-6):
    super().__init__()
    self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
    self.attn = Attention(hidden_size, num_heads, qkv_bias)
    self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=mlp_norm_eps)
    self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), approximate='tanh')
    self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

  def forward(self, x, c):
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
        self.adaLN_modulation(c).chunk(6, dim=1))
    x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
    x = x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
    return x


class FinalLayer(nn.Module):
  """Linear(LN(x) (1 + scale) + shift) -> p * p * C_out numbers per token, all zero at first."""

  def __init__(self, hidden_size, patch_size, out_channels):
    super().__init__()
    self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
    self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
    self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

  def forward(self, x, c):
    shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
    return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
  """eps_theta(x, labels[, classes]): (B, C, H, W) x [B] floats -> (B, C_out, H, W), H = W =
  input_size; labels are the time labels the SDE gives its networks (t (N - 1) for the VP-SDE,
  the chain step 0..N-1: DiT's t). With num_classes = K > 0 it takes classes in 0..K-1 or the
  null class K (None: K), the unconditional model of classifier-free guidance. C_out = C, or 2C
  with a learned variance (eps, then v)."""

  def __init__(self,
               input_size=32,          # H = W of the input
               patch_size=2,           # p: one token per p x p patch
               in_channels=4,          # C
               out_channels=None,      # C_out (None: C); 2C for a learned variance
               hidden_size=1152,       # token width D
               depth=28,               # transformer blocks
               num_heads=16,           # attention heads (D / num_heads channels each)
               mlp_ratio=4.0,          # MLP width / D
               qkv_bias=True,          # biases in the attention's q, k, v maps
               num_classes=1000,       # K classes and a null class; 0: unconditional
               frequency_embedding_size=256,  # timestep features fed to e(t)'s MLP
               convention='paper'):    # 'paper' | 'diffusers' (CONVENTIONS)
    super().__init__()
    if convention not in CONVENTIONS:
      raise ConfigError(f"unknown DiT convention {convention!r}; choose one of "
                        f"{sorted(CONVENTIONS)}")
    grid = check_grid(input_size, patch_size)
    self.input_size, self.patch_size, self.convention = input_size, patch_size, convention
    self.in_channels = in_channels
    self.out_channels = out_channels or in_channels
    self.num_heads, self.num_classes = num_heads, num_classes
    constants = CONVENTIONS[convention]

    self.x_embedder = PatchEmbed(in_channels, hidden_size, patch_size)
    self.t_embedder = TimestepEmbedder(hidden_size, frequency_embedding_size,
                                       constants['freq_shift'])
    self.y_embedder = class_embedding(num_classes, hidden_size)
    # Fixed, so computed rather than stored: checkpoints hold only what is learned.
    self.register_buffer('pos_embed', sincos_2d_position_embedding(hidden_size, grid)[None],
                         persistent=False)
    self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio, qkv_bias,
                                         constants['mlp_norm_eps']) for _ in range(depth))
    self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
    self._init_weights()

  def _init_weights(self):
    """The paper's initialisation: Xavier-uniform linear maps with zero biases (the patch
    embedding's kernel too, seen as a linear map), N(0, 0.02^2) for the time MLP and the class
    rows, then adaLN-Zero: every adaLN regressor and the output layer zero."""
    for module in self.modules():
      if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
          nn.init.zeros_(module.bias)
    kernel = self.x_embedder.proj.weight
    nn.init.xavier_uniform_(kernel.view(kernel.shape[0], -1))
    for layer in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
      nn.init.normal_(layer.weight, std=0.02)
    if self.y_embedder is not None:
      nn.init.normal_(self.y_embedder.weight, std=0.02)
    for layer in [block.adaLN_modulation[1] for block in self.blocks] + [
        self.final_layer.adaLN_modulation[1], self.final_layer.linear]:
      nn.init.zeros_(layer.weight)
      nn.init.zeros_(layer.bias)

  def forward(self, x, labels, classes=None):
    check_labels(x, labels)
    if x.shape[-2:] != (self.input_size, self.input_size):
      raise ValueError(f"this DiT takes {self.input_size}x{self.input_size} inputs (its fixed "
                       f"position embedding), got {tuple(x.shape[-2:])}")
    c = add_class_embedding(self.y_embedder, self.t_embedder(labels), classes)
    h = self.x_embedder(x) + self.pos_embed.to(x.dtype)
    for block in self.blocks:
      h = block(h, c)
    return unpatchify(self.final_layer(h, c), self.patch_size, self.out_channels)
