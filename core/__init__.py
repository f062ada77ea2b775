"""mentalsim's library: data, models, losses, metrics, training, evaluation and checkpoints. Knows nothing of Optuna or
the command line. W&B stays at its edge: :mod:`core.tracking` is the one module that imports wandb (inside the
functions that need it) and writes a run's local record beside it, :mod:`core.wandb_log` reads W&B's offline log
without importing wandb, and the trainer reports only to a tracker; the data, models, losses and metrics know nothing
of W&B."""
