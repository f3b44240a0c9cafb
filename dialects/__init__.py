"""MLIR dialects defined in Python (imported as ``bertc.dialects``)."""
