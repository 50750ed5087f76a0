"""The application layer: what reads a config or a run directory (run modes, reports, the
Python API over trained runs). The library packages (sde_lib, models, samplers, training's
losses, evaluation's metrics) never import it."""
