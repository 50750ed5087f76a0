"""utils/seeding.py: the one derivation of seeds from (run seed, index, stream ...), which
training's steps and sampling's batches share; the numbers they drew before it are kept."""
import numpy as np

from utils.seeding import batch_generator
from training.batches import DATA, LOSS, PROCESS, step_seed
from utils.seeding import derived_seed

KEYS = [(seed, index, *stream) for seed in (0, 42, 2 ** 31 + 7) for index in (0, 1, 999)
        for stream in ((), (DATA,), (LOSS,), (PROCESS, 3))]


def test_step_seeds_are_the_ones_training_drew_before():
  for key in KEYS:
    before = int(np.random.SeedSequence(list(key)).generate_state(2, np.uint64)[0] >> 1)
    assert step_seed(*key) == before < 2 ** 63, key
  assert step_seed(0, 1, DATA) == 2918264622725855778   # pinned


def test_batch_generators_are_the_ones_sampling_drew_before():
  for seed, index, *stream in KEYS:
    before = int(np.random.SeedSequence([seed, index, *stream]).generate_state(1)[0])
    assert batch_generator(seed, index, 'cpu', *stream).initial_seed() == before
  assert batch_generator(0, 0, 'cpu').initial_seed() == derived_seed(0, 0) == 2968811710   # pinned
