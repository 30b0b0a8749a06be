"""The Redis speed layer."""
