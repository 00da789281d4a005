"""Start-up: where its seconds go, and the work a warm start can skip.

- `trace`: phase timings recorded by every process the server starts (API, engine core,
  workers) into one file, read back when the engine is ready.
- `engine_phases`: what `server.vllm_plugin` times inside the engine's processes.
- `breakdown`: the phases on the start-up's critical path, logged and exported as metrics.
- `compile_cache`: vLLM's compile cache, loadable on CPU.
- `model_info`: vLLM's model-class inspection without a fresh interpreter, on CPU.
- `prestart`: the engine core's interpreter started with the server, its imports beside the
  server's, on CPU.
"""
