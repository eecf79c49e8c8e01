"""Weight rounding methods."""
