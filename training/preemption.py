"""Stop requests from a scheduler: SIGTERM (a cluster's preemption, `kill`, torchrun passing
on its own SIGTERM) and SIGUSR1 (what SLURM sends ahead of a time limit with
`#SBATCH --signal=USR1@<seconds>`). While a StopRequest is entered it only remembers the
signal; the trainer checks at every step boundary, checkpoints the last completed step and
returns, so the process exits 0 and the same command resumes. SIGINT keeps Python's
KeyboardInterrupt (the trainer saves the last completed step, the process exits 130)."""
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopRequest:
  """Context manager: `.signal` is the first preemption signal received inside it, else None.
  Handlers can be installed only from the main thread; elsewhere the signals keep theirs."""

  def __init__(self):
    self.signal, self.previous = None, {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self.previous = {s: signal.signal(s, self._remember) for s in SIGNALS}
    return self

  def _remember(self, signum, frame):
    if self.signal is None:
      self.signal = signum

  def __exit__(self, *exc):
    for s, handler in self.previous.items():
      signal.signal(s, handler)
    self.previous = {}
    return False

  @property
  def name(self):
    return signal.Signals(self.signal).name if self.signal is not None else None
