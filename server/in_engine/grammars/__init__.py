"""Changes to the engine's grammar backends (run inside vLLM's engine process)."""
