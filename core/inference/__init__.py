"""Models, weights and checkpoints, devices, runtimes and the timed engine (torch lives here)."""
