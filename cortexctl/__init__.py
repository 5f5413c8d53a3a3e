"""cortexctl: the operator toolkit for a Cortex AI-agent mesh."""

__version__ = "0.1.0"
