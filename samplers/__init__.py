"""Samplers on a plain score_fn(x, t), chosen by name from `config.sampling`; the likelihood
by the probability-flow ODE; drawing a network's samples into data space."""
from samplers.draw import draw_samples
from samplers.likelihood import likelihood
from samplers.registry import get_sampler

__all__ = ['draw_samples', 'get_sampler', 'likelihood']
