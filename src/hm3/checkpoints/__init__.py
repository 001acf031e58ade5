"""Hugging Face checkpoints on disk: file checks, sharded safetensors, loading and saving
causal LMs, decoder layers, an inference path's saved alignment, model cards."""
