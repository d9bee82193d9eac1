"""Towers, heads and the MMV task model."""
