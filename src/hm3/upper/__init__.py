"""HM3's upper level: preference vectors, objectives, and the parameter-space merge search per λ."""
