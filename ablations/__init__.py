"""The study's axes as named config patches and variants, grid expansion, and the Optuna search (the only package
that imports Optuna)."""
