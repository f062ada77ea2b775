"""mentalsim's library: data, models, metrics, training. Knows nothing of W&B, Optuna or the command line."""
