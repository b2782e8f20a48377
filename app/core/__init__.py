"""Kernel shared by the API, billing and the worker: settings, database, errors, queue, clock."""
