"""Errors hm3 reports to the user without a traceback."""


class HM3Error(Exception):
    """Bad input or an unmet precondition; the message names the offending thing."""


class ConfigError(HM3Error):
    """The configuration is invalid; the message names the key."""
