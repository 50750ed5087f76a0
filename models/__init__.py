"""Networks, EMA, the score wrappers and restoring a trained network."""
from models.score_fn import get_model_fn, get_score_fn, get_x0_fn
from models.ema import ExponentialMovingAverage
from models.registry import get_model
from models.restore import restore_for_inference
