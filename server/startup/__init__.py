"""Start-up, on the API process's side: where its seconds go, and the work a warm start can skip.

- `trace`: phase timings recorded by every process the server starts (API, engine core,
  workers) into one file, read back when the engine is ready. The one module here that also
  runs inside vLLM's processes (`server.in_engine.engine_phases` and the prestarted engine core
  write to it).
- `breakdown`: the phases on the start-up's critical path, logged and exported as metrics.
- `model_info`: vLLM's model-class inspection without a fresh interpreter, on CPU.
- `prestart`: the engine core's interpreter started with the server, its imports beside the
  server's, on CPU (started here; it becomes vLLM's engine core once handed over).

What the engine's own processes time and fix at their start (`engine_phases`, `compile_cache`)
is in `server.in_engine`.
"""
