"""The inference bundle: what training hands to index and service.

``bundle.format`` knows the folder on disk, ``bundle.encoders`` turns it into encoders whichever
runtime runs the towers (``bundle.runtimes``: torch, or the ONNX graphs ``bundle.onnx_export``
writes into the folder), ``bundle.images`` decodes image bytes the one way every path uses,
``bundle.fsio`` writes files durably and ``bundle.openclip_import`` imports open_clip on every
install this project meets.
"""
