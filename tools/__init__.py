"""Development tools that work from a checkout only (not shipped in the wheel)."""
