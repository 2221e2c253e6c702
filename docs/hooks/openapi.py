"""MkDocs hook: the site carries the OpenAPI document of a default-configured server.

The document is generated from the app itself at build time (no model or index is loaded), so
the copy the API page links to can never drift from the routes and models. A running server's
own ``/openapi.json`` differs only where its settings do (limits, whether reads need a key).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

DOCUMENT = "openapi.json"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, DOCUMENT, content=_document(config)))
    return files


def _document(config: MkDocsConfig) -> str:
    # The checkout being documented, not whichever copy of the packages the environment has.
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from service.app import create_app
    from service.settings import Settings

    # The defaults, not this shell's TPS_* variables: the same document on every machine.
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("TPS_")}
    try:
        settings = Settings(bundle="BUNDLE", index_dir="INDEX")
    finally:
        os.environ.update(saved)
    return json.dumps(create_app(settings).openapi(), indent=2) + "\n"
