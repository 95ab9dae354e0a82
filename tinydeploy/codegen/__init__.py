"""The codegen layer: model + board -> files, pure (render, the engine and framework registries, the C engine)."""
