"""botguard.cli."""
