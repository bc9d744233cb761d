"""Participant SDK."""
