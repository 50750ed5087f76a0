"""A progress bar for solvers that only report the times they evaluate (torchdiffeq, torchsde)."""
from tqdm.auto import tqdm


class TimeProgress:
  """Shows how much of [eps, T] a reverse-time solver has covered, in thousandths."""

  def __init__(self, T, eps, desc, enabled=True):
    self.T, self.span = T, abs(T - eps)
    self.bar = tqdm(total=1000, desc=desc, disable=not enabled, leave=False)

  def reached(self, t):
    done = min(1000, int(1000 * abs(self.T - float(t)) / self.span))
    if done > self.bar.n:
      self.bar.update(done - self.bar.n)

  def close(self):
    self.bar.close()
