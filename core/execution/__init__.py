"""Who runs a run: settings resolved once, the runner, the job queue and worker, the Ray path, live video."""
