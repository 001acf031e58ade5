"""Scoring a model on the suite's tasks: lm-eval tasks, the scorer, its cache, the code sandbox."""
