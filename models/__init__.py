"""Networks, EMA and the score wrappers."""
from models.score_fn import get_model_fn, get_score_fn, get_x0_fn
from models.ema import ExponentialMovingAverage
from models.registry import get_model
