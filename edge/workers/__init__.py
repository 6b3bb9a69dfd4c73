"""Clients for the worker backends the edge can call, behind one interface (``base``)."""
