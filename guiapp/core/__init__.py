"""The engine of Quantization Studio.

Plain functions and frozen dataclasses; no Qt, ever (a test proves it). Long
operations take a progress callback and a cancel token, and raise
:class:`~guiapp.core.errors.UserError` subclasses with messages a user can act on.
"""
