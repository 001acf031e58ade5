"""Hugging Face checkpoints on disk: file checks, sharded safetensors, saving, model cards."""
