"""Code that runs inside vLLM's own processes: the engine core and its workers.

Nothing here is imported by vLLM unless this server started the engine: vLLM loads `plugin`
(its `vllm.general_plugins` entry point) in every process it starts, and `plugin.register()`
acts only when the server's environment flag is set. Everything else here is reached from
`plugin`, or named to vLLM by its qualified name (a punica wrapper class, a KV connector module),
which vLLM then imports in its own processes. The API process imports these modules only for
their constants (the environment flags it sets) and the few functions noted below.

Which process runs what:

    plugin              every process vLLM starts (engine core, workers). Also the API process
                        if vLLM loads its plugins there after `server.engine` has set the flag
                        (AsyncEngineArgs does).
    lifeline            engine core and workers: each kills itself once the server is gone.
    engine_phases       engine core and workers: start-up phases into the server's trace.
    compile_cache       the process that compiles the model (the worker; the engine core when
                        the worker runs inside it).
    quantized_bases     `install`: the worker (where LoRA layers are built). `warn_if_inexact`:
                        the API process, before the engine starts.
    lora_ops/           the worker: vLLM's CPU punica wrapper replaced (`punica`, `op`,
                        `grouped`, `native`). `bench` is a stand-alone micro-benchmark.
    lora_ops/install    also the API process, where the engine's config is built and the CPU
                        platform's config rule it wraps runs (`server.engine` installs it there).
    grammars/           the engine core, where xgrammar compiles a request's grammar.
                        `WHITESPACE_KEY` is also written by the API process into requests.
    soft_prompt_cache/  `plan`: the engine core (next to the scheduler); `blocks`: the worker;
                        `connector`: both (vLLM instantiates it once per role).
                        `kv_transfer_config` is called by the API process to name it to vLLM.

Every vLLM, torch or xgrammar internal this code (and the rest of the server) patches or reads
is listed in `server.vllm_patches` (docs/vllm-patches.md), with what breaks when vLLM changes it.
"""
