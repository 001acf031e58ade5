"""HM3's lower level: inference paths over layer pools, the RL actor-critic, the path search.

`inference_path` (paths, their assembly and export), `rl` (the MDP and the agent),
`align` (optional layer alignment), `settings` (config `rl`, a λ given as text),
`pool` (the pools and their evaluators), `policy` (the trained policy on disk, its
amortised answer), and the pipeline stages `training` and `online`.
"""
