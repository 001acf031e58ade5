"""The comparison methods run beside HM3 on the same budget."""
