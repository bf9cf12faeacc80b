"""The target side: protocols, the drivers that reach a machine, the QEMU and lab targets."""
