"""Saga coordinator."""
