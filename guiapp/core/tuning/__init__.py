"""The accuracy-target search (``--max-drop``): strategies, cross-layer
equalization and bias correction, layers back to float, every trial recorded."""
