"""Reading a model: inspection, graph fixes for the quantizer, what it is fed."""
