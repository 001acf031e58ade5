"""The Pareto fronts, paper-style tables and plots, the cost table, the explorer, suggestions."""
