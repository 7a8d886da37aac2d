"""botguard.parsers."""
