"""The LLM backend registry (llm/registry.py): in-process and entry-point backends reach
``make_client``, unknown names are one clear error, and the registry imports no engine."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import types
from importlib.metadata import EntryPoint
from typing import Any

import pytest
from pydantic import ValidationError

from autointerp.errors import FatalLLMError
from autointerp.llm import ChatResponse, LLMClient, LLMConfig, Message, make_client, registry
from autointerp.llm.registry import ENTRY_POINT_GROUP, register_backend, unregister_backend

BUILTIN_MESSAGE = "unknown llm backend 'nope'; use llamacpp, transformers, openai or litellm"


class ToyClient(LLMClient):
    """Answers every chat with the model name."""

    backend = "toy"

    def __init__(self, cfg: LLMConfig | None = None, **kw: Any):
        super().__init__(cfg, **kw)
        self.model = self.cfg.model

    async def _chat(self, messages: list[Message], **params: Any) -> ChatResponse:
        return ChatResponse(text=f"{self.model}: {messages[-1]['content']}")


@pytest.fixture
def toy():
    register_backend("toy", ToyClient)
    yield "toy"
    unregister_backend("toy")


def test_an_in_process_backend_reaches_make_client(toy):
    cfg = LLMConfig(backend=toy, model="m1")
    client = make_client(cfg)
    assert isinstance(client, ToyClient) and client.cfg is cfg
    assert asyncio.run(client.chat([{"role": "user", "content": "hi"}])).text == "m1: hi"
    assert toy in registry.backend_names()


def test_the_decorator_registers_a_class_and_a_taken_name_needs_replace(toy):
    with pytest.raises(ValueError, match="already registered"):
        register_backend(toy, lambda cfg, **kw: ToyClient(cfg, **kw))

    @register_backend(toy, replace=True)
    class Other(ToyClient):
        pass

    assert type(make_client(LLMConfig(backend=toy))) is Other


def test_a_backend_from_an_entry_point(monkeypatch):
    plugin = types.ModuleType("autointerp_toy_llm_plugin")

    def make(cfg: LLMConfig, *, cache: Any = None, ledger: Any = None) -> LLMClient:
        return ToyClient(cfg, cache=cache, ledger=ledger)

    plugin.make = make  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, plugin.__name__, plugin)
    ep = EntryPoint(name="toy-ep", value=f"{plugin.__name__}:make", group=ENTRY_POINT_GROUP)
    seen: list[str] = []

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        seen.append(group)
        return [ep]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    try:
        assert "toy-ep" in registry.backend_names()
        client = make_client(LLMConfig(backend="toy-ep", model="m2"))
        assert isinstance(client, ToyClient) and client.model == "m2"
        assert seen and set(seen) == {ENTRY_POINT_GROUP}
    finally:
        unregister_backend("toy-ep")


def test_a_broken_entry_point_is_a_fatal_error_naming_it(monkeypatch):
    ep = EntryPoint(name="broken", value="no_such_module_xyz:make", group=ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda *, group: [ep])
    with pytest.raises(FatalLLMError, match="cannot import llm backend 'broken'.*no_such_module"):
        make_client(LLMConfig(backend="broken"))


def test_an_unknown_backend_is_one_error_naming_the_allowed_ones():
    with pytest.raises(ValidationError, match=BUILTIN_MESSAGE):
        LLMConfig(backend="nope")
    with pytest.raises(FatalLLMError, match=BUILTIN_MESSAGE):
        make_client(LLMConfig.model_construct(backend="nope"))


def test_builtin_backends_register_themselves_on_first_use():
    from autointerp.llm.openai_backend import OpenAIClient

    assert registry.get_backend("openai") is OpenAIClient
    assert list(registry.BUILTIN) == registry.backend_names()[: len(registry.BUILTIN)]


def test_importing_the_registry_imports_no_engine():
    code = (
        "import sys, autointerp.llm, autointerp.llm.registry as r; "
        "r.backend_names(); r.is_known('transformers'); "
        "print([m for m in ('torch', 'llama_cpp', 'litellm', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
