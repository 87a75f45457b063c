"""Shared test set-up: offline hub, a closed default endpoint, tiny real models, shared data.

Tiny models are built from configs once per session into a temp dir (no download).
Tests that read ../shared/data skip with a reason where it is absent."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _closed_port() -> int:
    """A port nothing listens on: a test that strays onto the network fails fast."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


os.environ["OPENAI_BASE_URL"] = f"http://127.0.0.1:{_closed_port()}/v1"
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("NVIDIA_API_KEY", None)

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_file(rel: str) -> Path:
    """Path to a shared data file, or skip the test saying why."""
    path = SHARED_DATA / rel
    if not path.exists():
        pytest.skip(f"shared data {rel} not found at {path} (only present in the team's workspace)")
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny reward models and causal LMs, saved once per session: {name: path}."""
    from tiny_models import build_causal_lm, build_reward_model

    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "gpt2-rm": build_reward_model(root / "gpt2-rm", "gpt2"),
        "llama-rm": build_reward_model(root / "llama-rm", "llama"),
        "bert-rm": build_reward_model(root / "bert-rm", "bert", chat_template=False),
        "gpt2-rm-3": build_reward_model(root / "gpt2-rm-3", "gpt2", num_labels=3),
        "gpt2-lm": build_causal_lm(root / "gpt2-lm", "gpt2"),
        "llama-lm": build_causal_lm(root / "llama-lm", "llama"),
    }


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
