"""Shared defaults; every named config starts from `get_default_config()` and overrides."""
import ml_collections


def get_config():
  """What `run.py --config` stands for when it is not given (`--mode sample|eval --workdir
  DIR`): the run's config.json supplies every value, these defaults only type the overrides."""
  return get_default_config()


def get_default_config():
  config = ml_collections.ConfigDict()
  config.seed = 42
  config.device = 'auto'              # 'auto' picks cuda when available, else cpu

  config.sde = sde = ml_collections.ConfigDict()
  sde.name = 'vpsde'                  # 'vpsde' | 'subvpsde' | 'vesde' | 'rectified_flow' |
                                      # 'cosine_flow' (sde_lib/flows.py; data at t = 0) | 'edm'
                                      # (sigma(t) = t on [0, sigma_max]; sde_lib/edm.py)
  sde.flow_T = 1 - 1e-3               # the flows' noise end T < 1 (m(1) = 0), where N(0, I) sits
  sde.schedule = 'linear'             # VP/sub-VP beta schedule: 'linear' | 'cosine'
  sde.beta_min = 0.1                  # beta(0)
  sde.beta_max = 20.0                 # beta(1)
  sde.sigma_min = 0.01                # VE sigma(0); edm: its chain's lowest sigma (EDM's 0.002)
  sde.sigma_max = 50.0                # VE sigma(1); edm: sigma(T) = T (EDM's 80)
  sde.num_scales = 1000               # N: discretization steps of the training chain

  config.training = training = ml_collections.ConfigDict()
  training.batch_size = 128           # the global batch: over all processes and micro-batches
  training.grad_accum = 1             # micro-batches per step and process (gradient accumulation)
  training.num_workers = -1           # DataLoader workers per process; -1: 0 on the CPU, 4 on CUDA
  training.precision = 'fp32'         # 'fp32' | 'bf16' | 'fp16' (CUDA; with a gradient scaler):
                                      # autocast of the forward pass and the loss
  training.compile = False            # torch.compile the network for training
  training.channels_last = False      # channels-last memory format for the network and batches
  training.tf32 = False               # CUDA: TF32 matmuls and convolutions
  training.n_iters = 1_300_001
  training.loss = 'dsm'               # 'dsm' (continuous or discrete t) | 'ddpm' (L_simple;
                                      # L_hybrid with model.learn_variance) | 'vlb' (L_vlb alone,
                                      # for a learned variance) | 'flow_matching' (velocity
                                      # regression, Lipman et al. 2023; any SDE) | 'edm' (EDM's
                                      # lambda(sigma) ||D - y||^2; training/edm_loss.py)
  training.continuous = True          # continuous t in [eps, T]; False: integer chain steps
  training.reduce_mean = False        # mean (True) or sum (False) over dimensions
  training.likelihood_weighting = False  # weight DSM by g(t)^2 (Song et al. 2021b)
  training.loss_weighting = 'none'    # 'dsm' weight of ||eps_hat - eps||^2: 'none' | 'v' (1 +
                                      # s^2/m^2: ||v_hat - v||^2, Salimans & Ho 2022) | 'min_snr'
  training.min_snr_gamma = 5.0        # min(SNR, gamma) / SNR, SNR = m^2 / s^2 (Hang et al. 2023)
  training.p_mean = -1.2              # loss 'edm': ln sigma ~ N(P_mean, P_std^2) (Karras et al.
  training.p_std = 1.2                # 2022, Table 1)
  training.importance_sampling = False  # likelihood weighting with t ~ g^2 / s^2 and a constant
                                      # weight (Song et al. 2021b, sec. 5; sde_lib/likelihood_time.py)
  training.eps = 1e-5                 # smallest training time
  training.vlb_weight = 0.001         # lambda of L_hybrid = L_simple + lambda L_vlb (loss 'ddpm'
                                      # with model.learn_variance; Nichol & Dhariwal 2021)
  training.vlb_importance = True      # loss 'vlb': timesteps by importance, p_t ~ sqrt(E[L_t^2])
                                      # over the last 10 values per step (N & D 2021, sec. 3.3)
  training.log_freq = 50
  training.bound_images = 64          # test images the score-matching bound (bits/dim) is logged
  training.bound_times = 4            # on every log_freq steps (0: off), with this many (t, z)
                                      # draws each (Song et al. 2021b; evaluation/score_bound.py)
  training.snapshot_freq = 10_000     # checkpoint + sample grid every this many steps
  training.snapshot_sampling = True
  training.snapshot_samples = 64      # samples drawn for each snapshot picture
  training.keep_checkpoints = 3
  training.posthoc_snapshot_freq = 1000   # with model.posthoc_ema_sigma_rels: the tracked averages
                                      # are written to <workdir>/posthoc_ema/ every this many steps
  training.checkpoint_every_minutes = 0.0   # also checkpoint when this much wall-clock time has
                                      # passed since the last one (0: off); bounds what SIGKILL loses
  training.skip_nonfinite = False     # a nan / inf loss: False stops the run with one line (the
                                      # checkpoints stay the last good ones); True skips the
                                      # step, counted as skipped_steps in metrics.jsonl

  config.sampling = sampling = ml_collections.ConfigDict()
  sampling.method = 'pc'              # 'pc' | 'ode' | 'sde' | 'ancestral' (the paper's), or a fast
                                      # sampler: 'ddim' | 'heun' | 'ipndm' | 'dpm_solver' | 'unipc' | 'dpm_solver_v3'
  sampling.predictor = 'reverse_diffusion'  # 'euler_maruyama' | 'reverse_diffusion' | 'ancestral' | 'none'
  sampling.corrector = 'langevin'     # 'langevin' | 'ald' | 'none'
  sampling.steps = 1000               # what it counts depends on the method: 'pc' / 'ancestral':
                                      # predictor steps (one evaluation each, plus n_steps_each
                                      # per corrector step); fast samplers: the budget of score
                                      # evaluations; 'sde' with a torchsde solver: its steps;
                                      # 'ode' with a fixed-step ode_method: its steps (adaptive
                                      # ODE and 'sde_solver=adaptive' ignore it: tolerances)
  sampling.snr = 0.16                 # Langevin signal-to-noise ratio r (Alg. 4/5)
  sampling.n_steps_each = 1           # corrector steps per predictor step
  sampling.noise_removal = True       # final step returns its mean (no noise)
  sampling.eps = 1e-3                 # smallest sampling time
  sampling.variance = 'beta_tilde'    # ancestral reverse variance: 'beta_tilde' | 'beta' (Ho et
                                      # al.) | 'learned' (model.learn_variance) | 'analytic' (Bao
                                      # et al. 2022; sde_lib/reverse_variance.py)
  sampling.analytic_samples = 100     # 'analytic' (sampling and the VLB): training points per
                                      # chain step for Gamma_n, cached beside the checkpoint
  sampling.ode_method = 'dopri5'
  sampling.rtol = 1e-5
  sampling.atol = 1e-5
  sampling.sde_solver = 'euler'       # torchsde method for method='sde', or 'adaptive'
  sampling.sde_atol = 0.0078          # adaptive: eps_abs, data range / 256 (0.0039 for [0, 1] data)
  sampling.sde_rtol = 0.01            # adaptive: eps_rel (Jolicoeur-Martineau et al. 2021)
  # Fast samplers: 'default' (or order 0) is each method's best measured setting for the budget
  # (samplers/registry.py).
  sampling.time_schedule = 'default'  # 'uniform' | 'quadratic' | 'logsnr' | 'karras' (t_end = sampling.eps);
                                     # 'ddim' on a discrete-time model's chain: 'uniform' | 'quadratic'
  sampling.variant = 'default'        # dpm_solver: 'singlestep' | 'multistep'; unipc: 'bh1' | 'bh2'
  sampling.order = 0                  # solver order (ipndm 1-4, dpm_solver / unipc 1-3)
  sampling.lower_order_final = True   # multistep dpm_solver, unipc, dpm_solver_v3: below 15
                                      # steps the last ones at orders ..., 2, 1 (samplers/fast.py)
  sampling.eta = 0.0                  # ddim: 0 deterministic, 1 ancestral (beta-tilde)
  sampling.s_churn = 0.0              # heun: EDM's stochasticity S_churn, S_tmin, S_tmax, S_noise
  sampling.s_tmin = 0.0
  sampling.s_tmax = float('inf')
  sampling.s_noise = 1.0
  sampling.consistency_sigmas = ()    # 'consistency': the steps - 1 intermediate levels tau (CM
                                      # Alg. 1); () = iCT's (0.821,) at 2 steps, else rho-7 grid
  sampling.thresholding = False       # dynamic thresholding of x0_hat (data-prediction solvers)
  sampling.ems_samples = 4096         # dpm_solver_v3: training points its EMS are estimated from
  sampling.ems_grid = 1200            # dpm_solver_v3: EMS grid intervals, uniform in lambda on [eps, T]
  sampling.class_label = 'all'        # class-conditional sampling: 'all' (sample i has class
                                      # i mod K), a label 'K' or a list 'a,b,...' (cycled), or
                                      # 'null' (a conditional model's unconditional branch)
  sampling.guidance_scale = 0.0       # classifier-free guidance w: (1 + w) s(x, y) - w s(x, null)
                                      # (Ho & Salimans 2021; diffusers' scale is 1 + w)
  sampling.classifier_scale = 0.0     # classifier guidance c: s(x) + c grad log p(y | x_t, t), with
                                      # the run's classifier (--mode train_classifier)
  sampling.num_samples = 64
  sampling.batch_size = 64

  # The time-dependent classifier of classifier guidance (models/classifier.py; Dhariwal &
  # Nichol 2021), trained by --mode train_classifier into <workdir>/classifier/.
  config.classifier = classifier = ml_collections.ConfigDict()
  classifier.nf = 32                  # channels of the first level
  classifier.ch_mult = (1, 2)
  classifier.num_res_blocks = 1
  classifier.n_iters = 2000
  classifier.batch_size = 128
  classifier.lr = 1e-3
  classifier.checkpoint_freq = 500
  classifier.eval_times = (0.0, 0.25, 0.5, 0.75, 1.0)   # test accuracy reported at these t

  # --mode inpaint | colorize (pipeline/complete.py; Song et al. 2021 app. I.2).
  config.inpaint = inpaint = ml_collections.ConfigDict()
  inpaint.image = '0'                 # a test-split index or an image file
  inpaint.mask = 'center'             # box:x0,y0,x1,y1 | left | right | top | bottom | center |
                                      # an image file (nonzero = missing); data/masks.py
  inpaint.num_completions = 8
  inpaint.resample = 1                # RePaint (Lugmayr et al. 2022): walks of each segment of
  inpaint.jump_length = 1             # jump_length steps ('pc', 'ancestral'); 1: replacement only

  # --mode restore (pipeline/restore.py; restoration/: DPS, PiGDM, DDRM, DDNM).
  config.restore = restore = ml_collections.ConfigDict()
  restore.operator = 'blur'           # mask | blur | sr2 | sr4 | gray | identity
  restore.noise = 0.05                # sigma_y of y = A x + sigma_y n, images in [0, 1]
  restore.method = 'ddrm'             # dps | pigdm | ddrm | ddnm | replacement | repaint
                                      # (the last two: noise 0, config.sampling, inpaint.resample)
  restore.input = ''                  # '' (the test split) | a .npz with images (N, C, H, W) in
                                      # [0, 1] (and labels) | a folder of images
  restore.num_images = 100            # the first ones of the input
  restore.batch_size = 100
  restore.steps = 100                 # score evaluations (restoration/diffusion.py time_grid)
  restore.mask = 'center'             # operator 'mask': a data.masks spec, as inpaint.mask
  restore.kernel = 'gaussian'         # operator 'blur': 'gaussian' | 'uniform'
  restore.kernel_size = 5             # taps (odd)
  restore.kernel_std = 1.0            # the Gaussian's std in pixels

  config.data = data = ml_collections.ConfigDict()
  data.dataset = 'cifar10'
  data.root = 'data_cache'
  data.image_size = 32
  data.num_channels = 3
  data.centered = True                # scale to [-1, 1]; False keeps [0, 1]
  data.random_flip = True
  data.uniform_dequantization = False
  data.num_bins = 256                 # quantization levels (bits/dim offset)
  data.toy_name = 'ring'              # toy2d: 'ring' | 'checkerboard'
  data.toy_size = 20_000              # toy2d: points per split
  data.toy_radius = 4.0               # toy2d ring: radius of the circle of means
  data.toy_std = 0.2                  # toy2d ring: std of each mode
  data.toy_modes = 8                  # toy2d ring: number of modes
  data.num_classes = 0                # K for model.class_conditional: digits and CIFAR-10 have 10,
                                      # a folder its class subfolders, the toy2d ring its modes

  config.model = model = ml_collections.ConfigDict()
  model.name = 'ddpm'
  model.parameterization = 'eps'      # network output: 'eps' (score = -out/std), 'std_score'
                                      # (out = std * score) or 'score' (out = score: NCSN++ with
                                      # scale_by_sigma), 'x0' or 'velocity' (out = the flow's
                                      # v = m' x_0 + s' z; sde_lib/flows.py), 'v' (v-prediction,
                                      # Salimans & Ho 2022), 'edm' | 'vp_precond' | 've_precond'
                                      # (EDM's preconditionings, Karras et al. 2022 Table 1)
  model.sigma_data = 0.5              # 'edm' and loss 'edm': sigma_data, the data's std
  model.learn_variance = False       # also output the reverse variance of the DDPM chain (2C
                                      # channels; Nichol & Dhariwal 2021): sampling.variance and
                                      # eval.vlb_variance 'learned'
  model.ema_rate = 0.9999
  model.ema_warmup = True             # decay min(ema_rate, (1+n)/(10+n)) after n updates
  model.posthoc_ema_sigma_rels = ()   # post-hoc EMA (EDM2; models/posthoc_ema.py): sigma_rel of the
                                      # power-function EMAs tracked and snapshotted every
                                      # training.posthoc_snapshot_freq steps (EDM2: (0.05, 0.1));
                                      # () off. --mode posthoc_ema reconstructs any other sigma_rel
  model.nf = 128
  model.ch_mult = (1, 2, 2, 2)
  model.num_res_blocks = 2
  model.attn_resolutions = (16,)
  model.dropout = 0.1
  model.num_groups = 32               # GroupNorm groups (at most the channel count)
  # ncsnpp (DDPM++ / NCSN++, Song et al. 2021); nf, ch_mult, num_res_blocks, attn_resolutions
  # and dropout above are shared with ddpm. Its sigmas buffer comes from sde.sigma_min/max/num_scales.
  model.resblock_type = 'biggan'      # 'biggan' (resampling residual blocks) | 'ddpm'
  model.skip_rescale = True           # residual sums divided by sqrt(2)
  model.embedding_type = 'positional' # time embedding: 'positional' | 'fourier' (of log sigma)
  model.fourier_scale = 16.0          # std of the Gaussian Fourier frequencies
  model.fir = False                   # FIR-filtered resampling (StyleGAN2) instead of naive
  model.fir_kernel = (1, 3, 3, 1)
  model.progressive = 'none'          # output pyramid: 'none' | 'output_skip' | 'residual'
  model.progressive_input = 'none'    # input pyramid: 'none' | 'input_skip' | 'residual'
  model.progressive_combine = 'sum'   # input_skip combine: 'sum' | 'cat'
  model.resamp_with_conv = True       # 'ddpm' blocks: convolve when resampling
  model.init_scale = 0.0              # scale of the last layers' init (0 -> 1e-10)
  model.conditional = True            # time-conditioned
  model.scale_by_sigma = False        # divide the output by sigma (VE: the network outputs the score)
  model.nonlinearity = 'swish'
  model.hidden = 256                  # mlp width
  model.num_layers = 4                # mlp residual blocks
  # dit (Peebles & Xie 2023; models/dit.py) and uvit (Bao et al. 2023; models/uvit.py):
  # transformers on (image_size / patch_size)^2 patch tokens; DiT's class_dropout_prob is
  # model.label_dropout below, its learn_sigma model.learn_variance
  model.patch_size = 2                # p: a token per p x p patch
  model.hidden_size = 384             # token width (U-ViT's embed_dim); the defaults are DiT-S/2
  model.depth = 12                    # dit: blocks; uvit: depth // 2 in, a middle, depth // 2 out
  model.num_heads = 6                 # attention heads (hidden_size / num_heads channels each)
  model.mlp_ratio = 4.0               # MLP width / hidden_size
  model.qkv_bias = True               # biases of the attention's q, k, v maps (DiT: True; U-ViT:
                                      # False on CIFAR-10)
  model.mlp_time_embed = False        # uvit: the time token's sinusoid through an MLP (U-ViT's
                                      # ImageNet models) or not (CIFAR-10)
  model.dit_convention = 'paper'      # dit: 'paper' (facebookresearch/DiT) | 'diffusers' (what its
                                      # DiTTransformer2DModel computes from the same weights:
                                      # time frequencies 10000^(-i/127), not /128; MLP LayerNorm
                                      # eps 1e-5, not 1e-6)
  model.class_conditional = False     # also take a class label (data.num_classes) or the null
                                      # label, for classifier-free guidance (Ho & Salimans 2021)
  model.label_dropout = 0.1           # training: probability a label is replaced by the null
                                      # label (Ho & Salimans use 0.1-0.2)

  # training.loss 'cd' | 'ict' | 'ect': consistency models (training/consistency_loss.py,
  # pipeline/consistency.py; model.parameterization='consistency', sde.name='edm')
  config.distill = distill = ml_collections.ConfigDict()
  distill.teacher = ''                # 'cd' / 'ect': the trained run directory (its config.json)
  distill.teacher_ckpt = ''           # its checkpoint: '' the latest, a step or a path
  distill.init_from_teacher = True    # start the student from the teacher's weights (same network)
  distill.solver = 'heun'             # 'cd': the teacher's ODE step, a fast sampler of ours
  distill.solver_budget = 2           # ... its evaluations per step (Heun: 2, CM's)
  distill.num_scales = 18             # 'cd': N of the Karras grid (CM: 18 on CIFAR-10)
  distill.target_ema = 0.95           # 'cd': mu of the target network theta-
  distill.distance = 'l2'             # 'l2' | 'l1' | 'pseudo_huber' | 'lpips' (user-placed weights)
  distill.huber_c = 0.0               # pseudo-Huber c; 0: iCT's 0.00054 sqrt(d)
  distill.lpips_weights = ''          # 'lpips': a folder holding torchvision's ImageNet backbone
                                      # and the lpips wheel's v0.1 layers (docs/consistency.md)
  distill.lpips_net = 'vgg'           # 'lpips': 'vgg' (VGG16, CM's) | 'alex' (AlexNet, cheaper)
  distill.s0 = 10                     # 'ict': N - 1 doubles from s0 ...
  distill.s1 = 1280                   # ... to s1 (Song & Dhariwal 2023)
  distill.p_mean = -1.1               # 'ict' / 'ect': ln sigma ~ N(P_mean, P_std^2)
  distill.p_std = 2.0
  distill.ect_q = 2.0                 # 'ect': r = t (1 - n(t) / q^(stage+1)), n = 1 + k sigmoid(-b t)
  distill.ect_k = 8.0
  distill.ect_b = 1.0
  distill.ect_stages = 8              # 'ect': stages over training.n_iters

  # training.loss 'reflow' | 'reflow_distill' (pipeline/reflow.py; Liu et al. 2023, sec. 2.3): the
  # (k+1)-rectified flow, or the one-step distillation, of the run in distill.teacher, trained on
  # pairs (z, x) its ODE draws once into <workdir>/couplings.npz (distill.teacher_ckpt and
  # distill.init_from_teacher as above)
  config.reflow = reflow = ml_collections.ConfigDict()
  reflow.num_pairs = 4096             # pairs drawn (Liu et al.: 4M on CIFAR-10)
  reflow.batch_size = 512             # pairs per sampler call
  reflow.sampling = sampling.copy_and_resolve_references()   # the teacher's ODE solver: 'ode'
  reflow.sampling.method = 'ode'      # (a torchdiffeq method; RK45 as Liu et al.) or any
  reflow.sampling.ode_method = 'dopri5'   # deterministic fast sampler, with its steps

  config.optim = optim = ml_collections.ConfigDict()
  optim.optimizer = 'adam'            # 'adam' (weight_decay: an L2 term in the gradient) | 'adamw'
                                      # (decoupled weight decay; Loshchilov & Hutter 2019)
  optim.lr = 2e-4
  optim.beta1 = 0.9
  optim.eps = 1e-8
  optim.weight_decay = 0.0
  optim.warmup = 5000
  optim.grad_clip = 1.0

  config.eval = evaluate = ml_collections.ConfigDict()
  evaluate.ckpt = ''                  # '' = latest checkpoint in the workdir
  evaluate.posthoc_sigma_rel = 0.0    # --mode posthoc_ema: the sigma_rel to reconstruct (required)
  evaluate.samplers = ()              # extra sampler overrides compared in one call
  evaluate.enable_fid = True
  evaluate.enable_bpd = True
  evaluate.enable_vlb = True
  evaluate.enable_score_bound = True  # the score-matching bound on bits/dim (Song et al. 2021b;
  evaluate.score_bound_times = 100    # evaluation/score_bound.py), (t, z) draws per image
  evaluate.num_samples = 50_000
  evaluate.batch_size = 500
  evaluate.bpd_num_images = 0         # 0 = the whole test split
  evaluate.inception_weights = ''     # local copy of clean-fid's Inception file
  evaluate.fid_mode = 'clean'         # clean-fid mode for Inception features: 'clean' (Parmar et al.
                                      # 2022) | 'legacy_tensorflow' (comparable with the papers' FID)
  evaluate.inception_score_splits = 10  # Inception Score (and the digits classifier's): mean and
                                      # std over this many splits of the samples (Salimans et al.)
  evaluate.enable_fd_dinov2 = True    # FD-DINOv2 (Stein et al. 2023) on natural images (cifar10,
                                      # folder), with KID and precision / recall in its features
  evaluate.dinov2_weights_dir = ''    # directory holding dinov2_vitl14_pretrain.pth (the official
                                      # DINOv2 release); '' = torch.hub's <hub dir>/checkpoints
  evaluate.vlb_num_images = 0         # test images for the DDPM bound; 0 = the whole split
  evaluate.vlb_variance = 'beta'      # the bound's reverse variance: 'beta' | 'beta_tilde'
                                      # (Ho et al.'s fixedlarge | fixedsmall) | 'learned' |
                                      # 'analytic' (as sampling.variance), independent of the
                                      # sampler's. On digits 'beta' is the tighter of Ho et al.'s:
                                      # 3.07 vs 3.27 bits/dim; 'analytic' 2.99 (it costs a Gamma
                                      # estimate per checkpoint; benchmarks/reverse_variance.py)
  evaluate.vlb_steps = 0              # the bound's chain: 0 = all N steps; K < N = the chain
                                      # respaced to K steps (Nichol & Dhariwal 2021, sec. 4)
  evaluate.bpd_eps = 1e-5             # probability-flow likelihood: start time eps
  evaluate.bpd_rtol = 1e-5            # ... and the ODE solver's tolerances
  evaluate.bpd_atol = 1e-5
  evaluate.hutchinson = 'rademacher'  # divergence estimator: 'gaussian' | 'rademacher' | 'exact'
  evaluate.n_probes = 1               # Hutchinson probes averaged per ODE solve
  evaluate.dequantization = 'uniform'  # bits/dim of images: 'uniform' | 'truncated_normal'
                                      # (i-DODE, Zheng et al. 2023) | 'variational' (a flow
                                      # q(u | x) fitted to the checkpoint, cached beside it, and
                                      # reported with the uniform bound); evaluation/dequantization.py
  evaluate.dequantizer_steps = 1000   # 'variational': Adam steps fitting q to the score-matching
  evaluate.dequantizer_batch_size = 64  # bound (pipeline/dequantizer.py), images per step,
  evaluate.dequantizer_lr = 1e-3      # learning rate,
  evaluate.dequantizer_hidden = 32    # conditioner channels
  evaluate.dequantizer_layers = 4     # and coupling layers (models/dequantizer.py)
  evaluate.dequantization_draws = 1   # K draws per image, importance-weighted (Burda et al. 2016);
                                      # K > 1 turns Hutchinson noise into a downward bias of
                                      # bits/dim: use hutchinson='exact' or more n_probes
  return config
