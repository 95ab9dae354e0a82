"""The device layer: talking to a board or its stand-ins over serial, and judging what it said."""
