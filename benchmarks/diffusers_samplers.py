"""diffusers' DDIMScheduler and DPMSolverMultistepScheduler on our SDE and a score_fn.

diffusers' schedulers step a discrete DDPM chain (steps k = 0..N-1, alphas_cumprod) with a
noise prediction eps(x, k). We make that model of the score: eps(x, k) = -s(t_k) score(x, t_k)
(samplers/predictions.py), with t_k = sde.chain_time(k), the SDE's own map from chain step to
time ((k + 1) / N: step 0 lies at t = 1 / N = sampling.eps, as our samplers end). The scheduler
is given the chain whose alphas_cumprod are the SDE's marginal m(t_k)^2:
  beta_k = 1 - m(t_k)^2 / m(t_{k-1})^2,   t_{-1} = sde.chain_time(-1) = 0 (m = 1),
whose cumulative product telescopes to m(t_k)^2. The SDE's own discrete chain
(sde.discrete_betas, DDPM's 1e-4..0.02, the Euler steps of beta(t)) misses m(t_k)^2 by up to
6.5% near T, where the eps model would then be read at the wrong noise level. diffusers keeps
betas in float32, so its alphas_cumprod match m(t_k)^2 to ~1e-6 (relative; float32 rounding of
1000 factors) and its 1 - alphas_cumprod match s(t_k)^2 to ~2e-4 near t = 0 (float32's
1 - alphabar cancels there), tests/test_diffusers_samplers.py.

A diffusers chain is variance-preserving (m^2 + s^2 = 1): the VP-SDE has one, sub-VP and VE
do not. Sampling starts from our x_T (diffusers' init_noise_sigma is 1), loops over the
scheduler's timesteps as its pipelines do, one evaluation per timestep (DPM-Solver multistep's
last step to sigma = 0 is a first-order step that reuses the last evaluation), and returns the
scheduler's final sample. Known quirks of diffusers 0.42.1 that the results show as they are:
DPM-Solver multistep's 'linspace' at 1000 steps of the 1000-step chain rounds two timesteps to
one, a zero step, and returns NaN; on Karras sigmas it evaluates the model at the rounded
timestep of each sigma but steps with the sigma itself; DDIM's 'trailing' ends at step 0
(t = 1e-3, noise 0.01 left) rather than at the data unless the steps divide 1000 (ours do).
"""
import torch

from samplers.predictions import Predictions

# Settings each scheduler runs at (name: scheduler keyword arguments); DEFAULT_SETTINGS the
# few the default benchmark run takes, the rest under --sweep. 'leading' and 'linspace' are
# the two schedulers' own defaults; 'trailing' starts at k = N - 1 (Lin et al. 2024, Table 2).
SETTINGS = {
    'ddim': {
        'leading': dict(timestep_spacing='leading'),
        'trailing': dict(timestep_spacing='trailing'),
        'linspace': dict(timestep_spacing='linspace'),
    },
    'dpm_solver_multistep': {
        'linspace 2M': dict(timestep_spacing='linspace', solver_order=2),
        'karras 2M': dict(use_karras_sigmas=True, solver_order=2),
        'trailing 2M': dict(timestep_spacing='trailing', solver_order=2),
        'linspace 3M': dict(timestep_spacing='linspace', solver_order=3),
        'karras 3M': dict(use_karras_sigmas=True, solver_order=3),
        'lu 2M': dict(use_lu_lambdas=True, solver_order=2),
    },
}
DEFAULT_SETTINGS = {'ddim': ('leading', 'trailing'),
                    'dpm_solver_multistep': ('linspace 2M', 'karras 2M')}
# Arguments every run shares: our data are not images in [-1, 1], so no clipping.
FIXED = {'ddim': dict(clip_sample=False, set_alpha_to_one=True),
         'dpm_solver_multistep': dict(algorithm_type='dpmsolver++', thresholding=False)}


def marginal_betas(sde):
  """beta_k = 1 - m(t_k)^2 / m(t_{k-1})^2 (float64) at t_k = sde.chain_time(k), k = 0..N-1:
  the chain whose alphas_cumprod are the SDE's m(t_k)^2. ValueError for a non-VP SDE."""
  steps = torch.arange(-1, sde.N)
  mean_coeff, std = sde.marginal_coeffs(sde.chain_time(steps).double())
  if not torch.allclose(mean_coeff ** 2 + std ** 2, torch.ones_like(std), atol=1e-12):
    raise ValueError(f"diffusers' chains are variance-preserving; {type(sde).__name__} is not")
  log_abar = 2 * torch.log(mean_coeff)
  return -torch.expm1(log_abar[1:] - log_abar[:-1])


def scheduler_classes():
  """{name: diffusers' class}, imported here: diffusers is a test requirement, not a core one
  (and its first import takes seconds, which a timed run should not include)."""
  import diffusers
  return {'ddim': diffusers.DDIMScheduler,
          'dpm_solver_multistep': diffusers.DPMSolverMultistepScheduler}


def scheduler(name, sde, setting):
  """A fresh diffusers scheduler `name` at `setting` (SETTINGS) on the chain of `sde`."""
  return scheduler_classes()[name](num_train_timesteps=sde.N,
                                   trained_betas=marginal_betas(sde).numpy(),
                                   **FIXED[name], **SETTINGS[name][setting])


class EpsModel:
  """eps(x, k) = -s(t_k) score(x, t_k), t_k = sde.chain_time(k): a discrete-time noise
  prediction made of a score_fn; `nfe` counts its evaluations."""

  def __init__(self, sde, score_fn):
    self.sde, self.predictions = sde, Predictions(sde, score_fn)

  @property
  def nfe(self):
    return self.predictions.nfe

  def __call__(self, x, step):
    return self.predictions.eps(x, self.sde.chain_time(int(step)))


def sample(name, setting, sde, score_fn, x_T, steps, generator=None):
  """(x_0, nfe): diffusers' scheduler `name` at `setting` with `steps` inference steps from x_T
  on our score, looped as diffusers' pipelines loop (scale_model_input, model, step)."""
  sched = scheduler(name, sde, setting)
  sched.set_timesteps(steps)
  model = EpsModel(sde, score_fn)
  x = x_T * sched.init_noise_sigma
  for step in sched.timesteps:
    x = sched.step(model(sched.scale_model_input(x, step), step), step, x,
                   generator=generator).prev_sample
  return x, model.nfe
