"""A model's architecture as a `torch.export` program, kept without pickle.

`save_program` exports a module (batch size dynamic) and writes its graph as JSON plus its
parameters, buffers and tensor constants as safetensors under ``<home>/programs/<sha256>``;
`load_program` reads them back into a module with the original layer names (so hooks,
Grad-CAM and feature taps work). PyTorch's own `torch.export.load` may unpickle; this module
never does: it hands tensors straight to the graph deserialiser. The graph is recorded in eval
mode, so a program serves inspection, not training (use a factory for a student to distil).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

MAX_PROGRAM_BYTES = 64 * 1024**2


class ProgramError(ValueError):
    """A module that cannot be exported, or a stored program that cannot be read."""


def programs_dir(home: str | os.PathLike[str] | None = None) -> Path:
    from kdviz.paths import default_home

    return Path(home if home is not None else default_home()) / "programs"


def export_module(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """`module` exported for a batch of any size (eval mode; the module's own flags are restored)."""
    training = {m: m.training for m in module.modules()}
    module.eval()
    batch = torch.export.Dim("batch", min=1)
    try:
        return torch.export.export(module, (example,), dynamic_shapes=({0: batch},), strict=False)
    except Exception as error:
        raise ProgramError(
            f"torch.export could not trace {type(module).__name__} on a batch of shape {tuple(example.shape)} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); save it with a factory "
            "instead (factory='package.module:function')"
        ) from error
    finally:
        for m, flag in training.items():
            m.training = flag


def save_program(module: nn.Module, example: torch.Tensor, home: str | os.PathLike[str] | None = None) -> str:
    """Export `module` and store it; returns the program's id (sha256 of its graph and tensors)."""
    from torch._export.serde.serialize import serialize

    program = export_module(module, example)
    if any(not isinstance(v, torch.Tensor) for v in program.constants.values()):
        raise ProgramError(f"{type(module).__name__} holds non-tensor constants; save it with a factory instead")
    graph = serialize(program).exported_program
    tensors = {f"state/{k}": v.detach().contiguous().clone() for k, v in program.state_dict.items()}
    tensors.update({f"const/{k}": v.detach().contiguous().clone() for k, v in program.constants.items()})
    params = sorted(k for k, v in program.state_dict.items() if isinstance(v, nn.Parameter))
    digest = hashlib.sha256(graph)
    for key in sorted(tensors):
        digest.update(key.encode())
        digest.update(tensors[key].cpu().numpy().tobytes())
    program_id = digest.hexdigest()
    folder = programs_dir(home) / program_id
    if not (folder / "graph.json").is_file():
        tmp = folder.with_name(f".tmp-{program_id}-{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "graph.json").write_bytes(graph)
        save_file({k: v.cpu() for k, v in tensors.items()}, str(tmp / "tensors.safetensors"))
        (tmp / "meta.json").write_text(json.dumps({"parameters": params, "example_shape": list(example.shape[1:])}))
        try:
            os.replace(tmp, folder)
        except OSError:  # another writer stored the same program first
            for path in tmp.iterdir():
                path.unlink()
            tmp.rmdir()
    return program_id


def load_program(program_id: str, home: str | os.PathLike[str] | None = None) -> nn.Module:
    """The module of a stored program (layer names as in the exported module)."""
    from torch._export.serde.serialize import SerializedArtifact, deserialize

    if not isinstance(program_id, str) or len(program_id) != 64 or not all(c in "0123456789abcdef" for c in program_id):
        raise ProgramError(f"not a program id: {program_id!r}")
    folder = programs_dir(home) / program_id
    if not (folder / "graph.json").is_file():
        raise ProgramError(f"program {program_id[:12]} is not stored under {folder.parent}; save the pair again")
    graph = (folder / "graph.json").read_bytes()
    if len(graph) > MAX_PROGRAM_BYTES:
        raise ProgramError(f"program {program_id[:12]} is larger than {MAX_PROGRAM_BYTES // 1024**2} MB")
    meta: dict[str, Any] = json.loads((folder / "meta.json").read_text())
    tensors = load_file(str(folder / "tensors.safetensors"))
    params = set(meta.get("parameters", []))
    state = {
        key[len("state/") :]: nn.Parameter(value, requires_grad=False) if key[len("state/") :] in params else value
        for key, value in tensors.items()
        if key.startswith("state/")
    }
    constants = {key[len("const/") :]: value for key, value in tensors.items() if key.startswith("const/")}
    example = torch.zeros((1, *meta.get("example_shape", [])))
    try:
        with warnings.catch_warnings():  # torch's own deprecation notices from inside its deserialiser
            warnings.simplefilter("ignore", FutureWarning)
            program = deserialize(SerializedArtifact(graph, state, constants, ((example,), {})))
            return torch.export.unflatten(program)
    except Exception as error:
        raise ProgramError(f"program {program_id[:12]} could not be read: {type(error).__name__}: {error}") from error
