"""Networks, EMA, the score wrappers and restoring a trained network."""
from models.score_fn import get_eps_fn, get_score_fn
from models.ema import ExponentialMovingAverage
from models.registry import get_model, parameterization_of
from models.restore import restore_for_inference
