"""lm-eval task definitions shipped with hm3 (use as an lm-eval `include_path`)."""
