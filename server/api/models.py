"""GET /v1/models and the adapter management endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from server.adapters.registry import Adapter
from server.api.deps import Caller, State, check_api_key, managing_grant
from server.api.openapi import errors
from server.errors import APIError
from server.protocol.models import AdapterInfo, AdapterList, LoadAdapterRequest, ModelCard, ModelList

router = APIRouter(dependencies=[Depends(check_api_key)], responses=errors(401, 503))


def _card(state, adapter: Adapter) -> ModelCard:
    return ModelCard(id=adapter.name, created=adapter.loaded_at, root=str(adapter.source),
                     parent=state.config.model_name, max_model_len=state.renderer.max_model_len)


def _info(state, name: str, item: Adapter | APIError) -> AdapterInfo:
    if isinstance(item, APIError):
        return AdapterInfo(name=name, kind=None, path=str(state.registry.root / name),
                           status="error", error=item.message)
    return AdapterInfo(
        name=name, kind=item.kind, path=str(item.source), status="ready", version=item.version,
        rank=item.lora.rank if item.lora else None,
        num_virtual_tokens=item.soft_prompt.num_virtual_tokens if item.soft_prompt else None,
        loaded_at=item.loaded_at, manifest=item.manifest)


@router.get("/v1/models")
async def list_models(state: State, caller: Caller) -> ModelList:
    """The models the caller's key may use."""
    name = state.config.model_name
    base = [ModelCard(id=name, created=state.started_at, root=state.config.model,
                      max_model_len=state.renderer.max_model_len)] if caller.base_model else []
    adapters = [_card(state, a) for n, a in await state.registry.list()
                if isinstance(a, Adapter) and caller.may_use(n, name)]
    return ModelList(data=[*base, *adapters])


@router.get("/v1/adapters")
async def list_adapters(state: State, caller: Caller) -> AdapterList:
    name = state.config.model_name
    return AdapterList(data=[_info(state, n, item) for n, item in await state.registry.list()
                             if caller.may_use(n, name)])


@router.post("/v1/adapters", dependencies=[Depends(managing_grant)],
             responses=errors(400, 403, 404, 409))
async def load_adapter(request: LoadAdapterRequest, state: State) -> AdapterInfo:
    if request.name == state.config.model_name:
        raise APIError(409, f"`{request.name}` is the base model's name", param="name")
    adapter = await state.registry.register(request.name, request.path)
    return _info(state, request.name, adapter)


@router.delete("/v1/adapters/{name}", dependencies=[Depends(managing_grant)],
               responses=errors(403, 404))
async def unload_adapter(name: str, state: State) -> dict:
    await state.registry.unregister(name)
    return {"id": name, "object": "adapter", "deleted": True}
