"""The embedded tiny suite: a byte-level BPE tokenizer, a small Llama base model and
one expert per task, all trained here from the synthetic task data (docs/method.md §9)."""
