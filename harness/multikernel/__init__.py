"""Multikernel in the guest: the sysfs driver (mk.py), device trees, boot phases, mkcon."""
