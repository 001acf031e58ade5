"""The model family: acquiring checkpoints, the vocabulary policy, and the embedded tiny suite."""
