"""botguard.simulate."""
