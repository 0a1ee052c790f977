"""The arrows point down: the sans-I/O modules (the core, the REST API's policy, signing) import
no I/O library, so they can be driven and tested without a socket. Checked in a fresh
interpreter, since this test process has imported everything already."""
from __future__ import annotations

import pytest

from helpers import modules_imported_by

SANS_IO = [
    "obengine", "obengine._core", "obengine._restapi", "obengine.auth", "obengine.errors", "obengine.protocol",
    "obengine.record",   # the file layer: blocking file I/O, no network, no asyncio
    "obengine.replay",   # files and a reading thread; processes and Dask live in obengine._parallel
]
IO_MODULES = ["asyncio", "socket", "ssl", "httpx", "h11", "websockets", "picows", "selectors"]


@pytest.mark.parametrize("module", SANS_IO)
def test_sans_io_module_imports_no_io_library(module: str) -> None:
    pulled = modules_imported_by(module, IO_MODULES)
    assert pulled == [], f"{module} pulls in {','.join(pulled)}"


def test_the_io_layer_does_import_its_libraries() -> None:
    """The check above can fail: the REST client's module does import httpx, the feed's
    picows."""
    assert modules_imported_by("obengine.rest", ["httpx"]) == ["httpx"]
    assert modules_imported_by("obengine.feed", ["picows", "asyncio"]) == ["picows", "asyncio"]
