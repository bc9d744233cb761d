"""Adapters: the ports implemented for real servers and in memory."""
