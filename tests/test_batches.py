"""training/batches.py: a step's global batch is the same items, with the same augmentations,
however it is split over processes, and loading resumes at any step."""
import torch

from configs.vp_digits import get_config as digits_config
from data import get_dataset
from training.batches import StepBatches, step_loader


def digits_train():
  """The digits training split with both random augmentations on (flip, dequantization)."""
  config = digits_config()
  config.data.update(random_flip=True, uniform_dequantization=True)
  return get_dataset(config, 'train')


def test_shares_of_two_processes_make_up_the_single_process_batch():
  """Items and augmentations of a 2-process split, put at their positions, equal the batch one
  process loads, at steps in the first and second epoch (checked against the single process)."""
  dataset = digits_train()
  whole = StepBatches(dataset, 32, 1, 0, seed=7)
  shares = [StepBatches(dataset, 32, 2, rank, seed=7) for rank in range(2)]
  assert whole.per_epoch == shares[0].per_epoch
  for index in (0, 3, whole.per_epoch + 1):
    images, labels, positions = whole[index]
    assert torch.equal(positions, torch.arange(32))
    for share in shares:
      part_images, part_labels, part_positions = share[index]
      assert torch.equal(part_images, images[part_positions])
      assert torch.equal(part_labels, labels[part_positions])
    assert sorted(torch.cat([s[index][2] for s in shares]).tolist()) == list(range(32))


def test_an_epoch_visits_distinct_items_and_the_next_reshuffles():
  dataset = digits_train()
  batches = StepBatches(dataset, 50, 1, 0, seed=0)
  epoch = lambda e: [batches._epoch_order(e)[i] for i in range(batches.per_epoch * 50)]
  assert len(set(epoch(0))) == batches.per_epoch * 50
  assert epoch(0) != epoch(1)


def test_loading_resumes_at_any_step_with_or_without_workers():
  """Steps 5.. of a loader started at step 4 with two worker processes equal those of one that
  started at 0 in the calling process (the order and augmentation depend on the step alone)."""
  batches = StepBatches(digits_train(), 16, 1, 0, seed=3)
  straight = list(step_loader(batches, 0, 9))
  resumed = list(step_loader(batches, 4, 9, num_workers=2))
  assert len(resumed) == 5
  for (a, la, _), (b, lb, _) in zip(straight[4:], resumed):
    assert torch.equal(a, b) and torch.equal(la, lb)
  assert not torch.equal(straight[4][0], straight[5][0])
