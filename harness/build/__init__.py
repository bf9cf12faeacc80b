"""The build side: kernel source and series, config, kernel and initramfs builds, images.

Nothing here knows how a machine is booted or driven (harness.target).
"""
