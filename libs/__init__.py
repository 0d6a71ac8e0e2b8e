"""Shared libraries of the kmono monorepo (serving kit, encoders, media)."""
