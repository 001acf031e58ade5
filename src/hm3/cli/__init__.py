"""The `hm3` command line and the glue the workflow's scripts run under."""
