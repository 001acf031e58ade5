"""Sub-commands of the `hm3` command line."""
