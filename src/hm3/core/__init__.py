"""Infrastructure every level uses: errors, atomic outputs, seeds, fault points, locks, config."""
