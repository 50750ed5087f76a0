"""Samplers on a plain score_fn(x, t), chosen by name from `config.sampling`; the likelihood
by the probability-flow ODE."""
from samplers.likelihood import likelihood
from samplers.registry import get_sampler

__all__ = ['get_sampler', 'likelihood']
