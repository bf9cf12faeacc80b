"""mkh: build, boot and script multikernel Linux guests."""

__version__ = "0.1.0"
