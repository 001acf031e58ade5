"""HM3's lower level: inference paths over layer pools, the RL actor-critic, the path search."""
