"""The FAISS + SQLite folder store: its layout, manifest, commit protocol, snapshots, publishing,
loading, rebuilds and GPU copies. ``index.store`` is its stable import path."""
